"""A dead agent is back without anyone (issue 18.1), and a stopped one too (18.6).

Each lab agent runs under a supervisor (``lab.supervise``) that restarts it with backoff and kills
it when it stops answering its liveness probe. Killed in the middle of a narrowing change, the
gateway enforces the change once the agent is back (restart plus one step), with nobody running
``lab apply``; stopped (SIGSTOP) during one, the change is enforced and ``set-mode`` converges.
The window is measured in the bench (``bench/supervised.py``), not asserted here.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from faultkit import (
    GATEWAY,
    FaultRecord,
    Watch,
    agent_pid,
    agent_status,
    allowed_flow,
    by_mode_passes,
    denied_passes,
    echoes,
    three_clusters,
    until,
)

from labkit import LabUp
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.model import SecurityMode
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab
KILLS = int(os.environ.get("PEERWALL_FAULT_KILLS", "3"))
"""Kills per run: 3 in ``make test``; ``make faults`` sets 20, for p50/p99 over 20 kills."""
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD


def supervisor_pid(plan: object, settings: LabSettings) -> int:
    path = Path(settings.state_dir, plan.name, "agents", f"{GATEWAY}.pid")  # type: ignore[attr-defined]
    return int(path.read_text())


def test_an_agent_killed_during_a_narrowing_change_is_back_and_enforces_it(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """SIGKILL of the agent right after a narrowing input"""
    settings = LabSettings()
    plan = three_clusters(lab_up, FULL)
    text = Path(settings.state_dir, plan.name, "topology.yaml").read_text()
    supervisor = supervisor_pid(plan, settings)
    with Watch(plan, FULL) as watch:
        flow = allowed_flow(plan)
        with flow:
            for i in range(KILLS):
                assert by_mode_passes(plan), "FullPodToPod lets cache reach tool"
                killed = agent_pid(plan)
                # The window: until the restarted agent reports the narrowing change enforced.
                with watch.changing(SEG):
                    digests = agents.write_inputs(plan, settings, SEG, text)  # narrowing
                    os.kill(killed, signal.SIGKILL)
                    # Nobody acts: the supervisor restarts the agent, which enforces the change.
                    fault.recovered(until(lambda: not by_mode_passes(plan), timeout=30))
                    agents.wait(plan, settings, digests)
                # The killed agent may have enforced the change and written its status just
                # before the signal landed: wait for the restarted one's own status.
                until(lambda k=killed: agent_status(plan).get("pid") not in (None, k), timeout=60)  # type: ignore[misc]
                assert supervisor_pid(plan, settings) == supervisor
                assert not denied_passes(plan)
                assert echoes(flow, b"%d" % i), "the allowed established flow was cut"
                with watch.changing(FULL):
                    agents.wait(plan, settings, agents.write_inputs(plan, settings, FULL, text))
            log = Path(settings.state_dir, plan.name, "agents", f"{GATEWAY}.log").read_text()
            assert "killed by SIGKILL" in log and "restart 1 in 0.20 s" in log
    watch.check(fault)


def test_a_stopped_agent_is_killed_and_restarted_and_the_change_converges(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """SIGSTOP of the agent during a narrowing change"""
    settings = LabSettings()
    plan = three_clusters(lab_up, FULL)
    text = Path(settings.state_dir, plan.name, "topology.yaml").read_text()
    with Watch(plan, FULL) as watch:
        stopped = agent_pid(plan)
        os.kill(stopped, signal.SIGSTOP)
        try:
            with watch.changing(SEG):  # until the change is reported enforced
                digests = agents.write_inputs(plan, settings, SEG, text)
                fault.recovered(agents.wait(plan, settings, digests).seconds)  # no exit 2
        finally:
            if os.path.exists(f"/proc/{stopped}"):
                os.kill(stopped, signal.SIGCONT)
        assert agent_status(plan)["pid"] != stopped
        assert not by_mode_passes(plan)
        log = Path(settings.state_dir, plan.name, "agents", f"{GATEWAY}.log").read_text()
        assert "liveness probes: killing it" in log
        assert labs.gateway_drift(plan, SEG)[GATEWAY] == []
        time.sleep(0.6)  # a probe round after the restart
    watch.check(fault)


def test_lab_repair_asks_again_an_agent_restarted_while_it_asks(lab_up: LabUp) -> None:
    """`lab repair` right after an agent died: the signal to its supervisor comes between two
    agents and is dropped (or kills the new one before its handler is set); the new agent is
    asked once it reports, and its own check is what is waited for."""
    settings = LabSettings(agent_resync_interval=3600)  # no periodic check: only the asked one
    plan = three_clusters(lab_up, agent_resync_interval=3600)
    agents.check_now(plan, settings)  # the dying agent's count is above the new one's
    old = agent_pid(plan)
    assert int(agent_status(plan)["checks"]) >= 1  # type: ignore[call-overload]
    os.kill(old, signal.SIGKILL)
    repairs = agents.check_now(plan, settings)
    assert agent_pid(plan) != old
    assert int(agent_status(plan)["checks"]) >= 1  # type: ignore[call-overload]
    assert repairs == {c.name: 0 for c in plan.topology.clusters}
    assert not denied_passes(plan)
