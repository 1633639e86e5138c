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
    via_file = run("-f", SEED, "--after", str(changed), "-o", "json")
    assert via_file.exit_code == 1
    assert cells(json.loads(via_file.stdout)) == HIGHLIGHTED


def test_bad_input_exits_2_with_one_line() -> None:
    for args, message in (
        (("--peering", "C1-C2=FullPodToPod"), "expected A:B=MODE"),
        (("--peering", "C1:C3=FullPodToPod"), "C1 and C3 are not peered"),
        (("--peering", "C1:C2=Bogus"), "unknown security mode 'Bogus'"),
        (("--after", "/nonexistent.yaml"), "no such file"),
    ):
        result = run("-f", SEED, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output


# --- the gate that accepts intended losses (issue 20.3) --------------------------------------


def test_accept_passes_exactly_the_accepted_losses(tmp_path: Path) -> None:
    """The cells written by `diff -o json` are accepted as they are: exit 0. One more lost cell
    (another change) or one accepted cell no longer lost: exit 1, naming the cells."""
    written = run("-f", SEED, "--set", SEG, "-o", "json")
    accepted = tmp_path / "accepted.json"
    accepted.write_text(written.stdout)
    same = run("-f", SEED, "--set", SEG, "--accept", str(accepted))
    assert same.exit_code == 0, same.output
    assert f"the 7 cell(s) lost are exactly those of {accepted}" in same.stdout
    # Two blocks: P1, P2, P3 -> P5 and P4, P5 -> P1, P3 (P4 and P5 run in C2 and are decided alike)
    assert same.stdout.count("LOST (accepted)") == 2

    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(
        "- P1 -> P5\n- {source: P2, destination: P5}\n- {sources: [P3, P4], destinations: [P5, P1, P3]}\n"
    )
    # P3->P1 and P4->P5 are not lost, P3->P5 P4->P1 P4->P3 are; P5->P1, P5->P3 are lost and
    # not accepted.
    partly = run("-f", SEED, "--set", SEG, "--accept", str(fewer), "-o", "json")
    assert partly.exit_code == 1
    gate = json.loads(partly.stdout)["accept"]
    assert gate["passes"] is False
    assert {tuple(c) for c in gate["lostNotAccepted"]} == {("P5", "P1"), ("P5", "P3")}
    assert {tuple(c) for c in gate["acceptedNotLost"]} == {("P3", "P1"), ("P4", "P5")}
    text = run("-f", SEED, "--set", SEG, "--accept", str(fewer))
    assert "NOT ACCEPTED: 2 lost cell(s)" in text.stdout and "P5 -> P1, P5 -> P3" in text.stdout
    assert "NOT LOST: 2 cell(s)" in text.stdout and "P3 -> P1, P4 -> P5" in text.stdout

    # A change that loses nothing, against the seed's accepted losses: they are not lost.
    nothing = run("-f", SEED, "--accept", str(accepted))
    assert nothing.exit_code == 1
    assert "NOT LOST: 7 cell(s)" in nothing.stdout
    empty = tmp_path / "empty.yaml"
    empty.write_text("[]\n")
    assert run("-f", SEED, "--accept", str(empty)).exit_code == 0


def test_accept_file_errors_name_the_file_and_the_item(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- P1 => P5\n")
    result = run("-f", SEED, "--set", SEG, "--accept", str(bad))
    assert result.exit_code == 2
    assert f"{bad}: [0]: expected 'SRC -> DST'" in result.output
    other = tmp_path / "other.yaml"
    other.write_text("cells: 3\n")
    result = run("-f", SEED, "--accept", str(other))
    assert result.exit_code == 2 and "a list of cells" in result.output


def test_markdown_is_a_pull_request_comment() -> None:
    result = run("-f", SEED, "--set", SEG, "-o", "markdown")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "### peerwall diff: ❌ access lost"
    rows = [line for line in lines if line.startswith("| ") and "**LOST**" in line]
    assert len(rows) == 2  # the two blocks of the 7 cells (P1, P2, P3 -> P5; P4, P5 -> P1, P3)
    assert rows[0].startswith("| P1, P2, P3 | P5 | 3 | YES | NO | **LOST** | segregation-denied")
    header = lines.index("| sources | destinations | cells | before | after | lost | why, after |")
    assert lines[header + 1] == "|---|---|--:|---|---|---|---|"
    calm = run("-f", SEED, "-o", "markdown")
    assert calm.exit_code == 0
    assert calm.stdout.startswith("### peerwall diff: ✅ no access lost")


def test_filters_keep_only_the_cells_asked_for(tmp_path: Path) -> None:
    only = run("-f", SEED, "--set", SEG, "-o", "json", "--from", "P[45]", "--to", "P1")
    assert cells(json.loads(only.stdout)) == {("P4", "P1"), ("P5", "P1")}
    c1 = run("-f", SEED, "--set", SEG, "-o", "json", "--cluster", "C1", "--namespace", "default")
    # P1 is C1's only pod of namespace default; P5 (C2) is out: nothing of C1's default is lost.
    assert c1.exit_code == 0 and cells(json.loads(c1.stdout)) == set()
    assert json.loads(c1.stdout)["after"].endswith("; only cluster C1; namespace default")
    # A filter that names nothing is an error, not an empty answer.
    typo = run("-f", SEED, "--set", SEG, "--from", "P9")
    assert typo.exit_code == 2 and "unknown source pod (--from) 'P9'" in typo.output
    # --to is a filter; the topology after the change is --after.
    moved = run("-f", SEED, "--to", SEED)
    assert moved.exit_code == 2 and "is --after FILE2" in moved.output


def test_yaml_is_the_json_document() -> None:
    import yaml

    as_json = json.loads(run("-f", SEED, "--set", SEG, "-o", "json").stdout)
    as_yaml = yaml.safe_load(run("-f", SEED, "--set", SEG, "-o", "yaml").stdout)
    assert as_yaml == as_json
