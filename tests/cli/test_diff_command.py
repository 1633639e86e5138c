"""peerwall diff: exactly the cells a change alters, explained on both sides, as a CI gate."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from peerwall.cli.main import app
from support import REFERENCE

SEED = str(REFERENCE / "seed-topology.yaml")
SEG = "networking.securityMode=IntraClusterTrafficSegregation"
# The yellow cells of the seed's segregation figure.
HIGHLIGHTED = {
    ("P1", "P5"), ("P2", "P5"), ("P3", "P5"), ("P4", "P1"), ("P4", "P3"), ("P5", "P1"), ("P5", "P3"),
}  # fmt: skip


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["diff", *args], env={"NO_COLOR": "1"})


def cells(doc: dict) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {
        (s, d) for c in doc["changes"] for s in c["sources"] for d in c["destinations"] if s != d
    }


def test_the_seed_switch_to_segregation_changes_exactly_the_highlighted_cells() -> None:
    result = run("-f", SEED, "--set", SEG, "-o", "json")
    assert result.exit_code == 1  # access is lost
    doc = json.loads(result.stdout)
    assert cells(doc) == HIGHLIGHTED
    assert doc["cells"] == doc["lost"] == 7
    for c in doc["changes"]:
        assert (c["before"], c["after"], c["losesAccess"]) == ("YES", "NO", True)
        assert c["explanation"]["before"]["rule"] == "full-pod-to-pod"
        assert c["explanation"]["after"]["rule"] == "segregation-denied"
    text = run("-f", SEED, "--set", SEG)
    assert text.exit_code == 1
    assert "7 cell(s) change, 7 of them lose access" in text.stdout
    assert "P1, P2, P3 -> P5 (3 cells): YES -> NO  LOST" in text.stdout


def test_nothing_lost_exits_0() -> None:
    same = run("-f", SEED)
    assert same.exit_code == 0 and "no cell changes" in same.stdout
    opened = run("-f", SEED, "--values", "/dev/null", "--peering", "C1:C2=FullPodToPod")
    assert opened.exit_code == 0, opened.output


def test_a_peering_override_and_a_second_file(tmp_path: Path) -> None:
    relaxed = run("-f", SEED, "--set", SEG, "--peering", "C2:C1=FullPodToPod", "-o", "json")
    assert relaxed.exit_code == 0
    assert json.loads(relaxed.stdout)["cells"] == 0  # the peering's own mode wins over --set
    changed = tmp_path / "after.yaml"
    changed.write_text(
        Path(SEED)
        .read_text()
        .replace("provider: C2", "provider: C2\n    securityMode: IntraClusterTrafficSegregation")
    )
    via_file = run("-f", SEED, "--to", str(changed), "-o", "json")
    assert via_file.exit_code == 1
    assert cells(json.loads(via_file.stdout)) == HIGHLIGHTED


def test_bad_input_exits_2_with_one_line() -> None:
    for args, message in (
        (("--peering", "C1-C2=FullPodToPod"), "expected A:B=MODE"),
        (("--peering", "C1:C3=FullPodToPod"), "C1 and C3 are not peered"),
        (("--peering", "C1:C2=Bogus"), "unknown security mode 'Bogus'"),
        (("--to", "/nonexistent.yaml"), "no such file"),
    ):
        result = run("-f", SEED, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output
