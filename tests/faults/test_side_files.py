"""Side files never kill enforcement (issue 18.4).

The status file is for the lab; the kernel's table is what protects. With no file descriptor left
(``prlimit --nofile``) or a full disk under the status file, the agent logs the failure, keeps
enforcing (it repairs a deleted table meanwhile), and writes the status again once it can.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import (
    GATEWAY,
    FaultRecord,
    Watch,
    agent_http,
    agent_pid,
    agent_status,
    allowed_flow,
    by_mode_passes,
    denied_passes,
    echoes,
    metric,
    status_json,
    three_clusters,
    until,
)

from hostile import nft
from labkit import LabUp
from peerwall.lab import agents
from peerwall.model import SecurityMode
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD


def log_of(settings: LabSettings, plan: object) -> str:
    path = os.path.join(settings.state_dir, plan.name, "agents", f"{GATEWAY}.log")  # type: ignore[attr-defined]
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_no_file_descriptor_left_the_agent_keeps_enforcing_and_catches_up(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """no file descriptor left for the agent (`prlimit --nofile`)"""
    settings = LabSettings(agent_resync_interval=0.3)
    plan = three_clusters(lab_up, SEG, agent_resync_interval=0.3)
    pid = agent_pid(plan)
    gw = plan.gateway_ns(GATEWAY)
    with Watch(plan, SEG) as watch:
        flow = allowed_flow(plan)
        with flow:
            limit = len(os.listdir(f"/proc/{pid}/fd"))
            # Only the soft limit: lowering the hard one could not be undone here.
            subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:"], check=True)
            try:
                until(lambda: "not written (" in log_of(settings, plan))
                # Still enforcing: a deleted table is repaired with no descriptor to spare.
                with watch.window():  # open from the deletion until the table is back
                    nft(gw, "delete", "table", "inet", "peerwall")
                    fault.recovered(until(lambda: not denied_passes(plan)))
                assert nft(gw, "list", "table", "inet", "peerwall")
                assert echoes(flow, b"starved"), "the allowed established flow was cut"
            finally:
                subprocess.run(["prlimit", f"--pid={pid}", "--nofile=1024:"], check=True)
            # Descriptors again: a change is read, enforced and reported by the same process.
            text = plan_text(plan, settings)
            with watch.changing(FULL):
                agents.wait(plan, settings, agents.write_inputs(plan, settings, FULL, text))
            assert agent_status(plan)["pid"] == pid
            assert by_mode_passes(plan), "FullPodToPod opens cache -> tool"
            assert not denied_passes(plan)
            assert metric(agent_http(plan, "/metrics")[1], "peerwall_side_file_failures_total") > 0
            assert echoes(flow, b"after")
            time.sleep(0.6)  # a probe round after the change
    watch.check(fault)


def plan_text(plan: object, settings: LabSettings) -> str:
    path = os.path.join(settings.state_dir, plan.name, "topology.yaml")  # type: ignore[attr-defined]
    return Path(path).read_text()


def test_a_full_disk_under_the_status_file_never_stops_enforcement(
    lab_up: LabUp, tmp_path: Path, fault: FaultRecord
) -> None:
    """a full disk under the agent's status file (ENOSPC)"""
    settings = LabSettings(agent_resync_interval=0.3)
    plan = three_clusters(lab_up, SEG, agent_resync_interval=0.3)
    agents.stop(plan, settings, [GATEWAY])
    # The agent's own status folder: a 64 KiB tmpfs, full, mounted in a private mount
    # namespace (unshare -m), so no other process sees it.
    full = tmp_path / "full"
    full.mkdir()
    status = full / "status.json"
    command = agents.agent_command(plan, settings, GATEWAY, status_file=str(status))
    script = (
        f"mount -t tmpfs -o size=64k pwfull {full} && "
        f"(dd if=/dev/zero of={full}/fill bs=4k 2>/dev/null; true) && "
        f'exec ip netns exec {plan.gateway_ns(GATEWAY)} "$@"'
    )
    log_path = tmp_path / "agent.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", script, "sh", *command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        until(lambda: _ready(plan))
        with Watch(plan, SEG) as watch:
            flow = allowed_flow(plan)
            with flow:
                assert not denied_passes(plan)
                text = plan_text(plan, settings)
                for mode in (FULL, SEG):  # a widening, then a narrowing change
                    with watch.changing(mode):
                        agents.write_inputs(plan, settings, mode, text)
                        # /status carries no digest (it tells a peer nothing): the change is
                        # seen by packets, the cell that only FullPodToPod opens.
                        fault.recovered(
                            until(lambda m=mode: by_mode_passes(plan) is (m is FULL))  # type: ignore[misc]
                        )
                    assert by_mode_passes(plan) is (mode is FULL)
                    assert not denied_passes(plan)
                    assert proc.poll() is None, "the agent died"
                assert echoes(flow, b"full disk"), "the allowed established flow was cut"
            assert "No space left on device" in log_path.read_text()
            assert not status.exists()  # not in this mount namespace: the tmpfs is private
            # Space again: the status file is written by the same process.
            inside = ["nsenter", "-t", str(proc.pid), "-m"]
            subprocess.run([*inside, "rm", f"{full}/fill"], check=True)
            until(lambda: subprocess.run([*inside, "test", "-s", str(status)]).returncode == 0)
            assert "written again" in log_path.read_text()
            assert proc.poll() is None
        watch.check(fault)
    finally:
        proc.kill()
        proc.wait()


def _ready(plan: object) -> bool:
    try:
        return bool(status_json(plan).get("ready"))  # type: ignore[arg-type]
    except OSError:
        return False
