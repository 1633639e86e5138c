"""A lab on a shared machine (issue 20.1): two demos at once both pass, a lab name in use is
refused unless replaced, every lab command without root says so in one line, an agent without a
cluster says so in one line."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerwall.lab import build as labs
from peerwall.lab.netns import list_namespaces
from peerwall.settings import LabSettings
from support import REFERENCE

SEED = str(REFERENCE / "seed-topology.yaml")
SEG = "networking.securityMode=IntraClusterTrafficSegregation"


def peerwall(
    *args: str, state: Path | None = None, user: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``peerwall ARGS`` in a process of its own, as ``user`` if given (dropped with setpriv)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PEERWALL_", "KUBE"))}
    environ.update({"NO_COLOR": "1", "COLUMNS": "200", "HOME": "/tmp", **env})
    if state is not None:
        environ["PEERWALL_STATE_DIR"] = str(state)
    command = [sys.executable, "-m", "peerwall.cli", *args]
    if user is not None:
        ids = pwd.getpwnam(user)
        command = [
            *("setpriv", f"--reuid={ids.pw_uid}", f"--regid={ids.pw_gid}", "--clear-groups"),
            *command,
        ]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The only line of stderr, after checking there is nothing else (no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state folder of the test's own; every lab recorded there is removed afterwards."""
    folder = tmp_path / "labs"
    folder.mkdir()
    folder.chmod(0o755)
    yield folder
    for entry in os.listdir(folder):
        if (folder / entry).is_dir():
            labs.down(entry, LabSettings(state_dir=str(folder)))


@pytest.mark.lab
def test_two_demos_at_once_both_pass(state: Path) -> None:
    """Each demo builds a lab of its own name and holds its lock from up to down: neither tears
    the other's lab down mid-probe. Both start at once, and one run has both its modes."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "peerwall.cli", "demo", "--timeout", "0.5"],
            env={**os.environ, "NO_COLOR": "1", "PEERWALL_STATE_DIR": str(state)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    # The demos' labs are the ones recorded in this test's state folder while they run (other
    # demos may run on the machine meanwhile, other tests' included: their labs are not ours).
    labs_seen: set[str] = set()
    while any(p.poll() is None for p in runs):
        labs_seen |= {e.name for e in state.iterdir() if e.is_dir()}
        time.sleep(0.02)
    outputs = [p.communicate(timeout=300)[0] for p in runs]
    for p, out in zip(runs, outputs, strict=True):
        assert p.returncode == 0, out
        assert "every observed cell equals the computed one" in out
        assert "FullPodToPod: equal to the computed table" in out
        assert "IntraClusterTrafficSegregation: equal to the computed table" in out
    assert len(labs_seen) == 2 and all(n.startswith("demo") for n in labs_seen), labs_seen
    for name in labs_seen:  # both removed their labs
        assert list_namespaces(f"pw-{name}-") == [], name


@pytest.mark.lab
def test_a_demo_refuses_a_lab_name_in_use_and_leaves_that_lab_alone(state: Path) -> None:
    name = f"t{secrets.token_hex(3)}"
    assert peerwall("lab", "up", "-f", SEED, "-n", name, state=state).returncode == 0
    namespaces = list_namespaces(f"pw-{name}-")
    demo = peerwall("demo", "-n", name, "--timeout", "0.5", state=state)
    assert demo.returncode == 2
    assert f"lab {name} already exists" in one_line(demo)
    assert list_namespaces(f"pw-{name}-") == namespaces
    probe = peerwall("lab", "probe", "-n", name, "--timeout", "0.5", state=state)
    assert probe.returncode == 0, probe.stdout + probe.stderr


@pytest.mark.lab
def test_lab_up_refuses_an_existing_lab_unless_replace(state: Path, tmp_path: Path) -> None:
    name = f"t{secrets.token_hex(3)}"
    assert peerwall("lab", "up", "-f", SEED, "-n", name, state=state).returncode == 0
    pids = sorted((state / name / "agents").glob("*.pid"))
    assert pids
    first = {p.name: p.read_text() for p in pids}

    again = peerwall("lab", "up", "-f", SEED, "--set", SEG, "-n", name, state=state)
    assert again.returncode == 2
    line = one_line(again)
    assert f"lab {name} already exists" in line and "--replace" in line
    # Another state folder does not make the name free: the lab is machine-wide.
    other = tmp_path / "other"
    elsewhere = peerwall("lab", "up", "-f", SEED, "-n", name, state=other)
    assert elsewhere.returncode == 2
    assert f"its state is in {state}" in one_line(elsewhere)
    # Untouched: same agents, same mode, and it probes right.
    assert {p.name: p.read_text() for p in sorted((state / name / "agents").glob("*.pid"))} == first
    status = peerwall("lab", "status", "-n", name, state=state)
    assert status.returncode == 0 and "mode FullPodToPod" in status.stdout, status.stdout

    replaced = peerwall("lab", "up", "-f", SEED, "--set", SEG, "-n", name, "--replace", state=state)
    assert replaced.returncode == 0, replaced.stderr
    status = peerwall("lab", "status", "-n", name, state=state)
    assert status.returncode == 0, status.stdout
    assert "mode IntraClusterTrafficSegregation" in status.stdout


LAB_COMMANDS = [
    ("lab", "up", "-f", SEED),
    ("lab", "apply", "-f", SEED),
    ("lab", "probe"),
    ("lab", "status"),
    ("lab", "set-mode", "--set", SEG),
    ("lab", "repair"),
    ("lab", "down"),
    ("demo",),
]


@pytest.mark.lab  # root, to drop to nobody; and a healthy lab to point the commands at
def test_every_lab_command_without_root_says_so_in_one_line(state: Path) -> None:
    name = f"t{secrets.token_hex(3)}"
    assert peerwall("lab", "up", "-f", SEED, "-n", name, state=state).returncode == 0
    for command in LAB_COMMANDS:
        proc = peerwall(*command, "-n", name, state=state, user="nobody")
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        line = one_line(proc)
        assert line.startswith(f"peerwall {' '.join(command[:2]).split(' -')[0]} needs root"), line
        assert "broken" not in proc.stdout + proc.stderr
    # Nothing was changed by any of them: the lab is still up and healthy.
    status = peerwall("lab", "status", "-n", name, state=state)
    assert status.returncode == 0, status.stdout
    # Help needs no root.
    assert peerwall("lab", "probe", "--help", user="nobody").returncode == 0


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:%d", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc}
contexts:
- name: here
  context: {cluster: c, user: u}
current-context: here
"""


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, never listened, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_agent_without_a_kubeconfig_says_so_in_one_line(tmp_path: Path) -> None:
    proc = peerwall("agent", "--source", "kubernetes", "--metrics-address", "", HOME=str(tmp_path))
    assert proc.returncode == 2
    line = one_line(proc)
    assert "no usable Kubernetes configuration" in line and "--kubeconfig" in line
    missing = peerwall("agent", "--source", "kubernetes", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert str(tmp_path / "nope") in one_line(missing)


def test_agent_with_an_unknown_context_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG % closed_port())
    proc = peerwall(
        "agent", "--source", "kubernetes", "--kubeconfig", str(config), "--context", "there"
    )
    assert proc.returncode == 2
    assert "'there' not found" in one_line(proc)


def test_agent_without_a_reachable_cluster_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(KUBECONFIG % closed_port())
    proc = peerwall(
        "agent", "--source", "kubernetes", "--kubeconfig", str(config), "--context", "here"
    )
    assert proc.returncode == 2
    assert "cannot reach the Kubernetes API server" in one_line(proc)
