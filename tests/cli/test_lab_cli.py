"""The lab commands as a user runs them: JSON that is JSON, explicit mode changes, a status that
reports every lab on its own and fails on drift, one change at a time (issues 6.3, 7.5, 7.7,
7.12-7.14)."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from peerwall.cli.main import app
from peerwall.lab import build as labs
from peerwall.lab.state import OWNERS
from peerwall.settings import LabSettings
from support import REFERENCE

pytestmark = pytest.mark.lab
SEED = str(REFERENCE / "seed-topology.yaml")
SEG = "networking.securityMode=IntraClusterTrafficSegregation"


# Random per process: other test runs on the machine (xdist workers, other checkouts) build
# labs too, and a lab's name and lock are machine-wide.
LAB = f"tc{secrets.token_hex(3)}"
LAB2 = f"{LAB}2"
ORPHAN = f"to{secrets.token_hex(3)}"


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PEERWALL_STATE_DIR", str(tmp_path))
    yield tmp_path
    for entry in os.listdir(tmp_path):
        if (tmp_path / entry).is_dir():
            labs.down(entry, LabSettings())
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in left.splitlines():
        ns = line.split()[0]
        if ns.startswith((f"pw-{LAB}", f"pw-{ORPHAN}")):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def break_c1(name: str) -> None:
    """Stop C1's agent and delete its table: wrong cells until repaired."""
    from peerwall.lab import agents
    from peerwall.lab.state import load_state

    settings = LabSettings()
    plan = load_state(name, settings).plan(settings)
    agents.stop(plan, settings, ["C1"])
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            plan.gateway_ns("C1"),
            "nft",
            "delete",
            "table",
            "inet",
            "peerwall",
        ],
        check=True,
    )


def test_probe_json_and_html_are_documents_only_even_with_wrong_cells(state_dir: Path) -> None:
    assert run("lab", "up", "-f", SEED, "--set", SEG, "-n", LAB).exit_code == 0
    ok = run("lab", "probe", "-n", LAB, "-o", "json", "--timeout", "0.5")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["securityMode"] == "IntraClusterTrafficSegregation"
    break_c1(LAB)
    bad = run("lab", "probe", "-n", LAB, "-o", "json", "--timeout", "0.5")
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)  # nothing but the contract document on stdout
    assert set(doc) == {"securityMode", "sources", "destinations", "matrix"}
    assert "wrong: " in bad.stderr and "reproduce: ip netns exec" in bad.stderr
    page = run("lab", "probe", "-n", LAB, "-o", "html", "--timeout", "0.5")
    assert page.exit_code == 1
    assert page.stdout.lstrip().startswith("<!DOCTYPE html>") and page.stdout.rstrip().endswith(
        "</html>"
    )
    assert "reproduce" in page.stdout or "ip netns exec" in page.stdout


def _status(*args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """``lab status -o json``: its exit status and its labs by name, from one run."""
    done = run("lab", "status", "-o", "json", *args)
    return done.exit_code, {lab["name"]: lab for lab in json.loads(done.stdout)["labs"]}


def test_status_fails_on_drift_and_reports_each_lab(state_dir: Path) -> None:
    # Whatever else runs on the machine meanwhile (another test's namespaces, a lab being built
    # elsewhere) is listed too, as an orphan: this test looks at its own two labs, and checks the
    # exit status against the failures of the very run that printed it.
    assert run("lab", "up", "-f", SEED, "-n", LAB).exit_code == 0
    assert run("lab", "up", "-f", SEED, "-n", LAB2).exit_code == 0
    fine = run("lab", "status")
    assert f"{LAB}:" in fine.stdout and f"{LAB2}:" in fine.stdout
    assert "gateway C1: in sync, agent up" in fine.stdout
    for name in (LAB, LAB2):
        alone = run("lab", "status", "-n", name)
        assert alone.exit_code == 0, alone.output
    status, labs = _status()
    assert status == int(any(lab["failed"] for lab in labs.values()))
    assert [name for name in labs if name in (LAB, LAB2)] == [LAB, LAB2]
    assert not labs[LAB]["failed"] and not labs[LAB2]["failed"]
    assert labs[LAB]["agents"]["C1"]["transactions"]["full"] == 1
    break_c1(LAB)
    drifted = run("lab", "status")
    assert drifted.exit_code == 1
    assert run("lab", "status", "-n", LAB).exit_code == 1
    assert run("lab", "status", "-n", LAB2).exit_code == 0
    status, labs = _status()
    assert status == 1 and labs[LAB]["failed"] and not labs[LAB2]["failed"]
    assert "gateway C1: 1 difference(s)" in drifted.stdout and "table-missing" in drifted.stdout
    # A namespace deleted by hand: that lab is broken, the other one is still reported.
    subprocess.run(["ip", "netns", "del", f"pw-{LAB}-pod-P3"], check=True)
    broken = run("lab", "status")
    assert broken.exit_code == 1
    assert f"broken: missing pw-{LAB}-pod-P3" in broken.stdout
    assert f"{LAB2}: " in broken.stdout and "gateway C2: in sync" in broken.stdout
    assert run("lab", "status", "-n", LAB2).exit_code == 0


def test_an_orphaned_lab_shows_as_broken(state_dir: Path) -> None:
    # What a SIGKILL during `lab up` leaves: namespaces, no state.
    subprocess.run(["ip", "netns", "add", f"pw-{ORPHAN}-gw-C1"], check=True)
    out = run("lab", "status")
    assert out.exit_code == 1
    assert f"{ORPHAN}: broken: namespaces pw-{ORPHAN}-… without a state in" in out.stdout
    assert f"peerwall lab down --name {ORPHAN}" in out.stdout
    assert run("lab", "down", "-n", ORPHAN).exit_code == 0
    assert (
        f"pw-{ORPHAN}-gw-C1"
        not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    )


def test_a_lab_being_changed_names_the_process_that_changes_it(state_dir: Path) -> None:
    os.makedirs(OWNERS, exist_ok=True)
    fd = os.open(os.path.join(OWNERS, f"{LAB}.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242")
        up = run("lab", "up", "-f", SEED, "-n", LAB)
        assert up.exit_code == 2
        assert f"lab {LAB} is being changed by PID 4242" in up.stderr
        assert "Traceback" not in up.output
    finally:
        os.close(fd)


def test_set_mode_is_explicit_and_names_the_resulting_modes(
    state_dir: Path, tmp_path: Path
) -> None:
    assert run("lab", "up", "-f", SEED, "--set", SEG, "-n", LAB).exit_code == 0
    silent = run("lab", "set-mode", "-n", LAB)
    assert silent.exit_code == 2 and "say which mode" in silent.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("networking:\n  securitymode: FullPodToPod\n")
    wrong = run("lab", "set-mode", "-n", LAB, "--values", str(typo))
    assert wrong.exit_code == 2
    assert "securitymode" in wrong.stderr
    # Nothing changed: the lab still segregates.
    assert (
        '"securityMode": "IntraClusterTrafficSegregation"'
        not in run("matrix", "-f", SEED, "-o", "json").stdout
    )
    switched = run("lab", "set-mode", "-n", LAB, "--set", "networking.securityMode=FullPodToPod")
    assert switched.exit_code == 0, switched.output
    assert "global default mode FullPodToPod (from --set)" in switched.stdout
    assert (
        "C1: traffic from C2: FullPodToPod (global default, networking.securityMode)"
        in switched.stdout
    )
    assert "C2: traffic from C1: FullPodToPod" in switched.stdout


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "61"])
def test_probe_and_demo_refuse_a_bad_timeout(state_dir: Path, timeout: str) -> None:
    for args in (("lab", "probe", "-n", LAB), ("demo",)):
        result = run(*args, "--timeout", timeout)
        assert result.exit_code == 2, (args, result.output)
        assert "--timeout" in result.stderr and "Traceback" not in result.output


def test_repair_has_the_agents_repair_now_and_needs_them_running(state_dir: Path) -> None:
    assert run("lab", "up", "-f", SEED, "-n", LAB, "--set", SEG).exit_code == 0
    gw = f"pw-{LAB}-gw-C2"
    subprocess.run(
        ["ip", "netns", "exec", gw, "nft", "delete", "table", "inet", "peerwall"], check=True
    )
    repaired = run("lab", "repair", "-n", LAB)
    assert repaired.exit_code == 0, repaired.output
    assert "gateway C1: in sync" in repaired.stdout
    # "in sync" only if C2's agent's own periodic check came first; either way the table is back.
    assert any(f"gateway C2: {s}" in repaired.stdout for s in ("drift repaired", "in sync"))
    listed = subprocess.run(["ip", "netns", "exec", gw, "nft", "list", "table", "inet", "peerwall"])
    assert listed.returncode == 0
    probed = run("lab", "probe", "-n", LAB, "--timeout", "0.5")
    assert probed.exit_code == 0 and "45 correct, 0 wrong" in probed.stdout, probed.output
    break_c1(LAB)  # its agent stopped: nothing can repair C1 now, and the command says so
    refused = run("lab", "repair", "-n", LAB)
    assert refused.exit_code == 2
    assert "the agent of C1 is not running" in refused.output
    assert "Traceback" not in refused.output
