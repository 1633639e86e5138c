"""What lab probe and the demo show and write (issue 20.2-20.4): filters, yaml, JUnit XML with one
test case per cell, the 60-destination guard, progress bars that leave the tables whole."""

from __future__ import annotations

import os
import pty
import re
import secrets
import select
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from peerwall.cli.main import app
from peerwall.lab import build as labs
from peerwall.settings import LabSettings
from support import REFERENCE

pytestmark = pytest.mark.lab
SEED = str(REFERENCE / "seed-topology.yaml")
SEG = "networking.securityMode=IntraClusterTrafficSegregation"


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "labs"
    monkeypatch.setenv("PEERWALL_STATE_DIR", str(folder))
    yield folder
    if folder.is_dir():
        for entry in os.listdir(folder):
            if (folder / entry).is_dir():
                labs.down(entry, LabSettings(state_dir=str(folder)))


def cases(path: Path) -> dict[str, list[ET.Element]]:
    """The test cases of a JUnit file, by suite name."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {s.get("name", ""): s.findall("testcase") for s in root.findall("testsuite")}


def test_probe_filters_yaml_and_junit_one_case_per_cell(state: Path, tmp_path: Path) -> None:
    name = f"t{secrets.token_hex(3)}"
    assert run("lab", "up", "-f", SEED, "--set", SEG, "-n", name).exit_code == 0
    report = tmp_path / "probe.xml"
    ok = run("lab", "probe", "-n", name, "--timeout", "0.5", "--junit", str(report))
    assert ok.exit_code == 0, ok.output
    suites = cases(report)
    assert list(suites) == [f"lab probe {name} (IntraClusterTrafficSegregation)"]
    (testcases,) = suites.values()
    assert len(testcases) == 5 * 10 - 5  # every cell, the diagonal aside
    assert {c.get("name") for c in testcases} >= {"P1 -> P5", "P4 -> P1", "P5 -> I2"}
    assert not any(c.find("failure") is not None for c in testcases)

    only = run("lab", "probe", "-n", name, "--timeout", "0.5", "-o", "yaml", "--from", "P4")
    assert only.exit_code == 0
    doc = yaml.safe_load(only.stdout)
    assert doc["sources"] == ["P4"]
    assert doc["matrix"]["P4"]["P1"] == "NO" and doc["matrix"]["P4"]["P5"] == "YES"
    # Only the cells kept are probed: P4's row takes a few probes, the whole table 40.
    row = run("lab", "probe", "-n", name, "--timeout", "0.5", "--from", "P4")
    assert row.exit_code == 0, row.output
    probes = re.search(r"observed: (\d+) probes", row.stdout)
    assert probes and 0 < int(probes[1]) < 10, row.stdout
    assert "9 correct, 0 wrong" in row.stdout
    c2 = run("lab", "probe", "-n", name, "--timeout", "0.5", "--cluster", "C2", "-o", "json")
    assert c2.exit_code == 0
    assert yaml.safe_load(c2.stdout)["destinations"] == ["P4", "P5", "S3", "I2"]

    # A wrong cell is a failure that says what was computed, what was observed and how to
    # repeat it; the filters keep the report to the cells asked for.
    from test_lab_cli import break_c1

    break_c1(name)
    bad_report = tmp_path / "bad.xml"
    bad = run(
        "lab", "probe", "-n", name, "--timeout", "0.5", "--to", "P2", "--junit", str(bad_report)
    )
    assert bad.exit_code == 1
    (testcases,) = cases(bad_report).values()
    assert len(testcases) == 4  # P1, P3, P4, P5 -> P2
    failures = {
        c.get("name"): c.find("failure") for c in testcases if c.find("failure") is not None
    }
    # C1 without its table (and its agent) drops what comes from C2.
    assert set(failures) == {"P4 -> P2", "P5 -> P2"}
    failure = failures["P4 -> P2"]
    assert failure is not None
    assert failure.get("message", "").startswith("computed YES, observed NO")
    assert "reproduce: ip netns exec" in (failure.text or "")


def wide_topology(pods: int) -> str:
    return yaml.safe_dump(
        {
            "clusters": [
                {"name": "C1", "podCIDR": "10.71.0.0/16"},
                {"name": "C2", "podCIDR": "10.72.0.0/16"},
            ],
            "peerings": [{"consumer": "C1", "provider": "C2"}],
            "pods": [{"name": f"p{i:02}", "cluster": f"C{1 + i % 2}"} for i in range(pods)],
        }
    )


def test_the_60_destination_guard_of_probe_and_demo(state: Path, tmp_path: Path) -> None:
    wide = tmp_path / "wide.yaml"
    wide.write_text(wide_topology(60))  # 60 pods and 2 Internets: 62 destinations
    demo = run("demo", "-f", str(wide), "--timeout", "0.2")
    assert demo.exit_code == 1
    assert "60 sources x 62 destinations is too large for a readable table" in demo.output
    assert "probes" not in demo.output  # refused before any lab was built
    assert not list(state.glob("*/state.json")) if state.is_dir() else True

    name = f"t{secrets.token_hex(3)}"
    assert run("lab", "up", "-f", str(wide), "-n", name).exit_code == 0
    probe = run("lab", "probe", "-n", name, "--timeout", "0.2")
    assert probe.exit_code == 1
    assert "60 sources x 62 destinations is too large" in probe.output
    assert max(len(line) for line in probe.output.splitlines()) < 400
    narrowed = run("lab", "probe", "-n", name, "--timeout", "1", "--to", "p0*", "--from", "p1*")
    assert narrowed.exit_code == 0, narrowed.output
    assert "100 correct, 0 wrong" in narrowed.output  # 10 x 10 cells, no diagonal among them
    # --force-table prints it anyway (whether every one of its 3,660 cells is right within a
    # short timeout on a busy machine is not what this checks).
    forced = run("lab", "probe", "-n", name, "--timeout", "0.2", "--force-table")
    assert "too large" not in forced.output
    assert max(len(line) for line in forced.output.splitlines()) > 400
    summary = re.search(r"^(\d+) correct, (\d+) wrong$", forced.output, re.M)
    assert summary and int(summary[1]) + int(summary[2]) == 60 * 62 - 60


# --- the demo on a terminal ------------------------------------------------------------------

CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: bytes) -> list[str]:
    """What a terminal shows after ``raw``: enough of one to follow rich's live display
    (carriage return, newline, erase line, cursor up; colours and cursor visibility ignored)."""
    lines: list[list[str]] = [[]]
    row = col = 0
    text = raw.decode("utf-8", "replace")
    i = 0
    while i < len(text):
        if text[i] == "\x1b":
            m = CSI.match(text, i)
            if m:
                arg, op = m.group(1), m.group(2)
                if op == "K":
                    lines[row] = [] if arg in ("2",) else lines[row][:col]
                elif op == "A":
                    row = max(0, row - int(arg or 1))
                i = m.end()
                continue
        ch = text[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append([])
        else:
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return ["".join(line).rstrip() for line in lines]


def on_terminal(args: list[str], env: dict[str, str]) -> bytes:
    """Run a command with stdout and stderr on one pseudo-terminal; everything it wrote."""
    parent, child = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env)
    os.close(child)
    out = bytearray()
    while True:
        ready, _, _ = select.select([parent], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(parent)
    assert proc.returncode == 0, out.decode(errors="replace")
    return bytes(out)


def test_demo_progress_bars_leave_every_table_whole(state: Path, tmp_path: Path) -> None:
    """On a terminal, each table's title is on the screen, right above its table, and no bar is
    left anywhere; and the JUnit file has one suite per mode, one case per cell."""
    report = tmp_path / "demo.xml"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")},
        "TERM": "xterm-256color",
        "COLUMNS": "120",
        "PEERWALL_STATE_DIR": str(state),
    }
    raw = on_terminal(
        [sys.executable, "-m", "peerwall.cli", "demo", "--timeout", "0.5", "--junit", str(report)],
        env,
    )
    assert b"probing under" in raw  # the bars were drawn
    shown = screen(raw)
    for mode in ("FullPodToPod", "IntraClusterTrafficSegregation"):
        titles = [
            i
            for i, line in enumerate(shown)
            if line.strip() == f"{mode}: observed by 40 TCP probes"
        ]
        assert len(titles) == 1, "\n".join(shown)
        assert shown[titles[0] + 1].startswith("┌"), "\n".join(shown)
    assert not any("probing under" in line for line in shown), "\n".join(shown)
    suites = cases(report)
    assert list(suites) == ["demo FullPodToPod", "demo IntraClusterTrafficSegregation"]
    assert [len(c) for c in suites.values()] == [45, 45]
