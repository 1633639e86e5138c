"""The lab's bookkeeping cannot lie (issue 18.6).

An agent whose PID file was deleted is still found (status says up, apply starts no duplicate,
down stops it); SIGTERM during ``lab up`` rolls back as SIGINT does; a corrupt lab copy of the
topology is reported under its own name. (A stopped agent: ``test_supervised.py``.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from faultkit import GATEWAY, FaultRecord, agent_status, three_clusters, until

from labkit import LabUp
from peerwall.errors import PeerwallError
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.lab.netns import list_namespaces
from peerwall.lab.state import load_state
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab


def test_an_agent_whose_pid_file_is_gone_is_neither_lost_nor_duplicated(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """an agent's PID file deleted (status, apply, down)"""
    fault.tried()
    settings = LabSettings()
    plan = three_clusters(lab_up)
    folder = str(Path(settings.state_dir, plan.name))
    pid_file = Path(folder, "agents", f"{GATEWAY}.pid")
    supervisor = int(pid_file.read_text())
    agent = agent_status(plan)["pid"]
    pid_file.unlink()
    assert agents.running(plan, settings, GATEWAY), "a running agent reported down"
    assert int(pid_file.read_text()) == supervisor, "recorded again"
    pid_file.unlink()
    # lab apply of the same topology starts what is not running: nothing here.
    state = load_state(plan.name, settings)
    labs.apply(plan.name, plan.topology, state.topology_text(settings), "same", settings)
    assert agents.scan(folder, GATEWAY) == [supervisor], "a second agent was started"
    assert agent_status(plan)["pid"] == agent
    # lab down stops it, PID file or not.
    pid_file.unlink(missing_ok=True)
    labs.down(plan.name, settings)
    assert agents.scan(folder, supervisors=False) == []
    until(lambda: not alive(int(agent)))  # type: ignore[call-overload]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_during_lab_up_rolls_back(tmp_path: Path, fault: FaultRecord) -> None:
    """SIGTERM during `lab up`"""
    fault.tried()
    name = f"t{os.urandom(3).hex()}"
    text = (Path(__file__).parents[1] / "reference" / "seed-topology.yaml").read_text()
    topology = tmp_path / "seed.yaml"
    topology.write_text(text)
    env = {**os.environ, "PEERWALL_STATE_DIR": str(tmp_path / "labs")}
    up = subprocess.Popen(
        [sys.executable, "-m", "peerwall.cli", "lab", "up", "-f", str(topology), "-n", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # Signalled once its gateways exist: the agents are still to start and converge.
        until(lambda: bool(list_namespaces(f"pw-{name}-gw-")) or up.poll() is not None)
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
        assert code == 128 + signal.SIGTERM, up.stderr.read() if up.stderr else ""
        assert list_namespaces(f"pw-{name}-") == []
        assert not (tmp_path / "labs" / name).exists()
        assert agents.scan(str(tmp_path / "labs" / name), supervisors=False) == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        subprocess.run(
            [sys.executable, "-m", "peerwall.cli", "lab", "down", "-n", name],
            env=env,
            capture_output=True,
            check=False,
        )


def test_a_corrupt_lab_copy_of_the_topology_is_named(lab_up: LabUp, fault: FaultRecord) -> None:
    """a corrupt lab copy of the topology"""
    fault.tried()
    settings = LabSettings()
    plan = three_clusters(lab_up)
    copy = Path(settings.state_dir, plan.name, "topology.yaml")
    copy.write_text("clusters: [\n")
    state = load_state(plan.name, settings)
    with pytest.raises(PeerwallError) as e:
        state.topology(settings)
    assert str(copy) in str(e.value)
