"""A transaction the real kernel refuses, recovered by a whole replace (issue 18: "refused
transactions recover by a whole replace"), under the witness.

The agent repairs a hand edit of its table as soon as nftables notifies it, so an edit that would
make its next step fail is normally gone before that step comes (or races it). The notification
names the process that committed; the agent takes a commit for its own when that process has the
agent's name and no longer exists (``dataplane.nftevents``; in a pod, any process of its name
outside its pid namespace). The edit here is made so: by ``nft`` run under the agent's process
name while the agent is stopped, so that the process is gone when the agent reads the
notification; with the resync an hour away, no read-back comes between. Then one change reaches
the agent as one step: C2's peering narrowed to segregation (its ``cidrs`` element deleted) and
the pod ``job`` removed (its address deleted from C2's ``offloaded`` set, a plain hash set: nft
sends the delete to the kernel unchecked). The edit deleted that address already: the kernel
refuses the whole transaction (ENOENT), the narrowing with it, and the agent must write the whole
table before it reports the change enforced.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from faultkit import (
    FULL,
    GATEWAY,
    SEG,
    FaultRecord,
    Watch,
    agent_http,
    agent_status,
    metric,
    three_clusters,
)

from labkit import LabUp
from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.model import load_topology
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab

REMOVED = "job"
"""C2's pod offloaded to C1, last of C1's pods: removing it shifts no other pod's address."""
KERNEL_ENOENT = "Could not process rule: No such file or directory"
"""How libnftables relays the kernel's ENOENT (its own check of a set says "element does not
exist" instead, and never reaches the kernel)."""


def set_elements(plan: LabPlan, set_name: str) -> str:
    ns = plan.gateway_ns(GATEWAY)
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "peerwall", set_name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def logged_at(log: str, text: str) -> datetime:
    """When the agent logged the first line of ``log`` that holds ``text``."""
    line = next(x for x in log.splitlines() if text in x)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_a_step_the_kernel_refuses_is_recovered_by_a_whole_replace(
    lab_up: LabUp, fault: FaultRecord, tmp_path: Path
) -> None:
    """a transaction refused by the kernel (whole replace)"""
    plan = three_clusters(lab_up, FULL, agent_resync_interval=3600)
    settings = LabSettings()
    text = Path(settings.state_dir, plan.name, "topology.yaml").read_text()
    line = next(x for x in text.splitlines(keepends=True) if f"name: {REMOVED}," in x)
    without = text.replace(line, "")
    job = plan.topology.pod_by_name[REMOVED]
    address = str(plan.topology.addresses.pod_seen_from(job, GATEWAY))
    offloaded = names.peer_set("C2", SetKind.OFFLOADED)
    assert address in set_elements(plan, offloaded)
    before = agent_status(plan)
    pid = int(before["pid"])  # type: ignore[call-overload]
    # nft under the agent's process name: its commit is taken for the agent's once it is gone.
    impostor = tmp_path / Path(f"/proc/{pid}/comm").read_text().strip()
    impostor.symlink_to(shutil.which("nft") or "nft")
    edit = ["delete", "element", "inet", "peerwall", offloaded, "{ " + address + " }"]

    with Watch(plan, FULL) as watch:
        with watch.changing(SEG):
            os.kill(pid, signal.SIGSTOP)
            try:
                ns = plan.gateway_ns(GATEWAY)
                subprocess.run(["ip", "netns", "exec", ns, str(impostor), *edit], check=True)
                digests = agents.write_inputs(plan, settings, SEG, without)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            converged = agents.wait(plan, settings, digests)
            fault.recovered(time.monotonic() - resumed)
        time.sleep(0.6)  # at least one probe round after the report
    watch.check(fault)

    reported = converged.statuses[GATEWAY]
    log = Path(settings.state_dir, plan.name, "agents", f"{GATEWAY}.log").read_text()
    # The kernel refused the step (not libnftables' own check, not the fake).
    assert reported["apply_failures"] == before["apply_failures"] + 1  # type: ignore[operator]
    refusal = log[log.index("transaction refused") :]
    assert KERNEL_ENOENT in refusal and offloaded in refusal, refusal[:500]
    refused_at, written_at = (
        logged_at(log, "transaction refused"),
        logged_at(refusal, "whole table"),
    )
    fault.extra["refused step to whole table written (agent's log)"] = (
        f"{(written_at - refused_at).total_seconds() * 1000:.0f} ms"
    )
    assert metric(agent_http(plan, "/metrics")[1], "peerwall_apply_failures_total") == 1
    # Recovered by the whole table alone (no read-back, no repair, the mode step never
    # committed), and reported enforced only once it was written.
    was, now = before["transactions"], reported["transactions"]
    assert now["full"] == was["full"] + 1 and now["mode"] == was["mode"], (was, now)  # type: ignore[index]
    assert (reported["checks"], reported["repairs"]) == (before["checks"], before["repairs"])
    # The kernel holds the new inputs exactly: segregation for C2, no address of the removed pod.
    after = LabPlan(plan.name, load_topology(without, "topology.yaml"))
    assert labs.gateway_drift(after, SEG)[GATEWAY] == []
    assert address not in set_elements(plan, offloaded)
