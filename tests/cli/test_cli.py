"""The command line: the json contract on the seed, the human formats, and every error's message."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from peerwall.cli.main import app
from peerwall.compile.names import peer_chain
from peerwall.errors import TopologyInvalid
from peerwall.model import load_topology
from support import REFERENCE

SEED = REFERENCE / "seed-topology.yaml"
SEG = "IntraClusterTrafficSegregation"
FULL = "FullPodToPod"
MODES = [FULL, SEG]
VALID = f"(valid: {FULL}, {SEG})"

# The yellow cells of the seed's segregation figure.
SEED_DIFFERING = {
    ("P1", "P5"),
    ("P2", "P5"),
    ("P3", "P5"),
    ("P4", "P1"),
    ("P4", "P3"),
    ("P5", "P1"),
    ("P5", "P3"),
}


@pytest.fixture(scope="module")
def seed_path() -> str:
    if not SEED.is_file():
        pytest.fail(f"acceptance data missing: {SEED}")
    return str(SEED)


@pytest.fixture(scope="module")
def seed_matrices() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REFERENCE / "seed-matrices.json").read_text())
    return data


def run(*args: str, env: dict[str, str | None] | None = None, stdin: str | None = None) -> Any:
    """Invoke the app; colours off unless ``env`` asks (rich reads the environment)."""
    base: dict[str, str | None] = {
        "NO_COLOR": "1",
        "FORCE_COLOR": None,
        "COLUMNS": "100",
        "TERM": "dumb",
    }
    return CliRunner().invoke(app, list(args), env={**base, **(env or {})}, input=stdin)


def mode_arg(mode: str) -> list[str]:
    return ["--set", f"networking.securityMode={mode}"]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------------
# matrix --output json: the contract


@pytest.mark.parametrize("mode", MODES)
def test_json_reproduces_the_seed_tables(
    seed_path: str, seed_matrices: dict[str, Any], mode: str
) -> None:
    result = run("matrix", "-f", seed_path, *mode_arg(mode), "--output", "json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = json.loads(result.stdout)  # nothing but the document on stdout
    assert set(doc) == {"securityMode", "sources", "destinations", "matrix"}
    assert doc["securityMode"] == mode
    assert doc["sources"] == ["P1", "P2", "P3", "P4", "P5"]
    assert doc["destinations"] == ["P1", "P2", "P3", "P4", "P5", "S1", "S2", "S3", "I1", "I2"]
    assert doc["matrix"] == seed_matrices[mode]


def test_json_default_mode_is_full_pod_to_pod(
    seed_path: str, seed_matrices: dict[str, Any]
) -> None:
    doc = json.loads(run("matrix", "-f", seed_path, "-o", "json").stdout)
    assert doc["securityMode"] == FULL
    assert doc["matrix"] == seed_matrices[FULL]


def test_values_file_selects_the_mode_and_set_wins(tmp_path: Path, seed_path: str) -> None:
    # Unknown keys are errors now (a misspelt key silently meant the default): no "unrelated".
    values = write(tmp_path, "values.yaml", f"networking:\n  securityMode: {SEG}\n")
    doc = json.loads(run("matrix", "-f", seed_path, "--values", values, "-o", "json").stdout)
    assert doc["securityMode"] == SEG
    both = run("matrix", "-f", seed_path, "--values", values, *mode_arg(FULL), "-o", "json")
    assert json.loads(both.stdout)["securityMode"] == FULL


def test_topology_from_stdin(seed_path: str) -> None:
    result = run("matrix", "-f", "-", "-o", "json", stdin=Path(seed_path).read_text())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sources"] == ["P1", "P2", "P3", "P4", "P5"]


# ---------------------------------------------------------------------------------------------
# csv, markdown, table


def test_csv_shape(seed_path: str, seed_matrices: dict[str, Any]) -> None:
    result = run("matrix", "-f", seed_path, *mode_arg(SEG), "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    header, body = rows[0], rows[1:]
    assert header == ["source", "P1", "P2", "P3", "P4", "P5", "S1", "S2", "S3", "I1", "I2"]
    assert [r[0] for r in body] == ["P1", "P2", "P3", "P4", "P5"]
    for row in body:
        cells = dict(zip(header[1:], row[1:], strict=True))
        assert cells.pop(row[0]) == ""  # the diagonal
        assert cells == seed_matrices[SEG][row[0]]


def test_markdown_shape_and_bold_differences(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, *mode_arg(SEG), "-o", "markdown")
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("|")]
    assert lines[0] == "| source | P1 | P2 | P3 | P4 | P5 | S1 | S2 | S3 | I1 | I2 |"
    assert lines[1] == "|---|" + ":---:|" * 10
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    bold = set()
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header)
        source = cells[0]
        assert cells[header.index(source)] == ""
        bold |= {(source, d) for d, c in zip(header, cells, strict=True) if c.startswith("**")}
    assert bold == SEED_DIFFERING
    assert "| P1 |  | YES | YES | YES | **NO** | YES | YES | NO | YES | NO |" in lines


def test_markdown_full_pod_to_pod_has_no_bold(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, "-o", "markdown")
    table = [ln for ln in result.stdout.splitlines() if ln.startswith("|")]
    assert not any("**" in ln for ln in table)


def _cells(output: str) -> dict[tuple[str, str], str]:
    """Parse the boxed table printed without colours."""
    rows = [
        [c.strip() for c in ln.strip("│").split("│")]
        for ln in output.splitlines()
        if ln.startswith("│")
    ]
    header, body = rows[0], rows[1:]
    return {(r[0], d): c for r in body for d, c in zip(header[1:], r[1:], strict=True)}


def test_table_marks_differing_cells_without_colours(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, *mode_arg(SEG))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b[" not in out
    assert SEG in out.splitlines()[0]  # the title names the mode
    cells = _cells(out)
    assert {k for k, v in cells.items() if v.endswith("*")} == SEED_DIFFERING
    assert cells[("P5", "S2")] == "YES"
    assert cells[("P1", "P1")] == ""
    assert "* differs from FullPodToPod" in out.splitlines()[-1]  # the legend


def test_table_full_pod_to_pod_marks_nothing(seed_path: str) -> None:
    out = run("matrix", "-f", seed_path).stdout
    assert "*" not in out
    assert "FullPodToPod (from built-in default)" in out


def test_table_highlights_in_yellow_with_colours(seed_path: str) -> None:
    env: dict[str, str | None] = {
        "NO_COLOR": None,
        "FORCE_COLOR": "1",
        "COLORTERM": "truecolor",
        "TERM": "xterm",
    }
    out = run("matrix", "-f", seed_path, *mode_arg(SEG), env=env).stdout
    yellow = "48;2;255;242;204m"  # #fff2cc, the figures' yellow
    green, red = "\x1b[1;32m", "\x1b[1;31m"
    assert out.count(yellow) == len(SEED_DIFFERING) + 1  # the cells and the legend's sample
    assert out.count(f"\x1b[1;31;{yellow}") == len(SEED_DIFFERING)  # red NO on yellow
    assert green in out and red in out
    assert "*" not in out


def test_table_shows_partial_and_mode_overrides(tmp_path: Path) -> None:
    topo = write(
        tmp_path,
        "t.yaml",
        """
clusters:
  - {name: C1, podCIDR: 10.1.0.0/16}
  - {name: C2, podCIDR: 10.2.0.0/16}
  - {name: C3, podCIDR: 10.3.0.0/16}
peerings:
  - {consumer: C1, provider: C2}
  - {consumer: C1, provider: C3, securityMode: FullPodToPod}
namespaces:
  - {name: shop, cluster: C1, offloadedTo: [C2, C3]}
pods:
  - {name: web1, cluster: C1, namespace: shop, labels: {app: web}}
  - {name: web2, cluster: C1, namespace: shop, runsOn: C2, labels: {app: web}}
  - {name: cache, cluster: C3, namespace: default}
services:
  - {name: web, cluster: C1, namespace: shop, selector: {app: web}}
""",
    )
    out = run("matrix", "-f", topo).stdout
    assert _cells(out)[("cache", "web")] == "PARTIAL"
    title = " ".join(out.split("┌")[0].split())  # the title, unwrapped
    assert title.endswith("; 1 cluster/peering setting in the topology overrides it")
    assert "PARTIAL some backends only" in out


def test_too_many_destinations_suggests_json(tmp_path: Path) -> None:
    pods = "\n".join(f"  - {{name: p{i}, cluster: C1}}" for i in range(70))
    topo = write(
        tmp_path, "big.yaml", f"clusters:\n  - {{name: C1, podCIDR: 10.1.0.0/16}}\npods:\n{pods}\n"
    )
    for fmt in ("table", "markdown"):
        # Nothing printable: a failed check (1) that says why, never a silent success.
        result = run("matrix", "-f", topo, "--output", fmt)
        assert result.exit_code == 1
        assert result.stdout == ""
        assert "71 destinations is too large" in result.stderr
        assert "--output csv" in result.stderr
    forced = run("matrix", "-f", topo, "--force-table")
    assert "p69" in forced.stdout


# ---------------------------------------------------------------------------------------------
# explain, rules, modes, help


def test_explain_names_rule_and_mode_origin(seed_path: str) -> None:
    result = run("explain", "-f", seed_path, "P5", "P1", *mode_arg(SEG))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("P5 -> P1: NO\n")
    assert "rule:     segregation-denied" in out
    assert "enforced: by C1" in out
    assert f"mode:     {SEG} (global default, networking.securityMode)" in out
    assert f"global default (networking.securityMode): {SEG} (from --set)" in out


def test_explain_service_lists_backends(seed_path: str) -> None:
    out = run("explain", "-f", seed_path, "P5", "S2", *mode_arg(SEG)).stdout
    assert out.startswith("P5 -> S2: YES\n")
    assert "service-backends" in out
    assert "segregation-reflected-backend" in out


def test_explain_mode_set_on_the_peering(tmp_path: Path) -> None:
    text = SEED.read_text().replace("provider: C2", f"provider: C2\n    securityMode: {SEG}")
    topo = write(tmp_path, "peering.yaml", text)
    out = run("explain", "-f", topo, "P1", "P5").stdout
    assert out.startswith("P1 -> P5: NO\n")
    assert f"mode:     {SEG} (set on the peering C1–C2)" in out
    assert "global default" not in out


def test_rules_prints_the_gateway_table(seed_path: str) -> None:
    result = run("rules", "-f", seed_path, "--cluster", "C1", *mode_arg(SEG))
    assert result.exit_code == 0, result.output
    out = result.stdout
    # A script that replaces the table whether or not it exists (re-applicable).
    assert out.startswith(
        "add table inet peerwall\ndelete table inet peerwall\ntable inet peerwall {"
    )
    assert f"chain {peer_chain('C2')} {{" in out
    assert f"jump {peer_chain('C2')}" in out
    assert 'comment "local backends of services reflected to C2"' in out
    assert (
        "ct state established ct mark & 0xffff0000 == {" in out
    )  # replies, of the tunnel's own connections


def test_modes_lists_both_and_marks_the_default() -> None:
    out = run("modes").stdout.splitlines()
    assert out[0].startswith(f"* {FULL} ")
    assert out[1].startswith(f"  {SEG} ")
    assert "networking.securityMode" in out[-1]


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("matrix", "explain", "modes", "rules"):
        assert command in result.stdout


# ---------------------------------------------------------------------------------------------
# Errors: the message on stderr, nothing else, exit status 2


def _error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    text: str = result.stderr
    return text


def test_bad_mode_lists_the_valid_ones(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, "--set", "networking.securityMode=Foo")
    assert _error(result) == (
        f"--set networking.securityMode: unknown security mode 'Foo' {VALID}\n"
    )


def test_unknown_set_key(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, "--set", "networking.mode=FullPodToPod")
    assert _error(result) == (
        "--set networking.mode=FullPodToPod: unknown key 'networking.mode' "
        "(known keys: networking.securityMode, networking.securityAudit)\n"
    )


def test_malformed_set(seed_path: str) -> None:
    result = run("matrix", "-f", seed_path, "--set", "FullPodToPod")
    assert _error(result) == (
        "--set 'FullPodToPod': expected KEY=VALUE, e.g. networking.securityMode=FullPodToPod\n"
    )


def test_missing_topology_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert _error(run("matrix", "-f", str(missing))) == f"{missing}: no such file\n"


def test_bad_mode_in_values_file(tmp_path: Path, seed_path: str) -> None:
    values = write(tmp_path, "v.yaml", "networking:\n  securityMode: Strict\n")
    result = run("matrix", "-f", seed_path, "--values", values)
    assert _error(result) == (
        f"{values}: networking.securityMode: unknown security mode 'Strict' {VALID}\n"
    )


def test_invalid_topology_one_line_per_problem(tmp_path: Path) -> None:
    text = """
clusters:
  - {name: C1, podCIDR: 10.1.0.0/16}
pods:
  - {name: P1, cluster: C9}
  - {name: P2, cluster: C1, runsOn: C7}
"""
    topo = write(tmp_path, "bad.yaml", text)
    with pytest.raises(TopologyInvalid) as caught:
        load_topology(text, topo)
    message = _error(run("matrix", "-f", topo))
    assert message == str(caught.value) + "\n"
    lines = message.splitlines()
    assert len(lines) == len(caught.value.problems) >= 2
    assert f"{topo}: pods[0].cluster: unknown cluster 'C9'" in lines
    assert f"{topo}: pods[1].runsOn: unknown cluster 'C7'" in lines


def test_explain_unknown_names_suggest(seed_path: str) -> None:
    assert _error(run("explain", "-f", seed_path, "p1", "P2")) == (
        "unknown source pod 'p1' (did you mean P1?)\n"
    )
    assert _error(run("explain", "-f", seed_path, "S1", "P2")) == (
        "'S1' is not a pod; sources are pods (valid: P1, P2, P3, P4, P5)\n"
    )
    assert _error(run("explain", "-f", seed_path, "P1", "Z9")) == (
        "unknown destination 'Z9' (valid: P1, P2, P3, P4, P5, S1, S2, S3, I1, I2)\n"
    )


def test_rules_unknown_cluster(seed_path: str) -> None:
    assert _error(run("rules", "-f", seed_path, "--cluster", "C3")) == (
        "unknown cluster 'C3' (valid: C1, C2)\n"
    )


def test_console_script_exit_status(seed_path: str) -> None:
    """The installed entry point (``main``) behaves as the app: message, status 2."""
    script = Path(sys.executable).with_name("peerwall")
    # The README's set-up installs the package (and its script) into the virtualenv: a missing
    # script is a broken install, not a reason to skip.
    assert script.exists(), f"{script} is missing: pip install -e . in this environment"
    proc = subprocess.run(
        [str(script), "matrix", "-f", seed_path, "--set", "networking.securityMode=Foo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"--set networking.securityMode: unknown security mode 'Foo' {VALID}\n"
    ok = subprocess.run(
        [str(script), "matrix", "-f", seed_path, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["securityMode"] == FULL


def test_trace_walks_the_packet_through_both_gateways(seed_path: str) -> None:
    result = run("trace", "-f", seed_path, "P4", "P1", *mode_arg(SEG))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("P4 -> P1: NO (dropped by C1's gateway at forward)")
    assert "snat ip prefix to" in out and "dnat ip prefix to" in out
    assert "counter drop" in out
    ok = run("trace", "-f", seed_path, "P1", "P4", *mode_arg(SEG))
    assert ok.stdout.startswith("P1 -> P4: YES") and "reply returned" in ok.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("matrix", "-f", str(SEED), "-o", "json"),
        ("explain", "-f", str(SEED), "P4", "P1", "-o", "json"),
        ("modes", "-o", "json"),
        ("diff", "-f", str(SEED), "--set", f"networking.securityMode={SEG}", "-o", "json"),
    ],
)
def test_every_json_output_is_json_and_nothing_else(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.exit_code in (0, 1), result.output
    json.loads(result.stdout)


def test_every_command_teaches_itself_with_an_example() -> None:
    commands = ["matrix", "explain", "trace", "modes", "rules", "topology", "diff", "agent", "demo"]
    lab = ["up", "down", "status", "set-mode", "probe", "apply"]
    for argv in [[c] for c in commands] + [["lab", c] for c in lab]:
        out = run(*argv, "--help", env={"COLUMNS": "400"}).stdout
        assert "Example: peerwall " in out, argv
