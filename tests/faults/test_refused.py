"""A transaction the real kernel refuses, recovered by a whole replace (issue 18: "refused
transactions recover by a whole replace"), under the witness.

The agent repairs a hand edit of its table as soon as nftables notifies it, so an edit that would
make its next step fail is normally gone before that step comes (or races it). The notification
carries the netlink port id of the socket that committed, and the agent takes a commit for its
own when that socket is one of its own (``dataplane.nftevents``): a process of its name, or of its
pid in another pid namespace, is noticed. What it cannot tell from its own is a commit through one
of its own sockets, which only a process with ptrace rights over the agent can take
(``pidfd_getfd``). The edit here is made so: through a duplicate of the agent's notification
socket, taken from the running agent; with the resync an hour away, no read-back comes after it.
Then one change reaches the agent as one step: C2's peering narrowed to segregation (its
``cidrs`` element deleted) and the pod ``job`` removed (its address deleted from C2's
``offloaded`` set, a plain hash set: nft sends the delete to the kernel unchecked). The edit
deleted that address already: the kernel refuses the whole transaction (ENOENT), the narrowing
with it, and the agent must write the whole table before it reports the change enforced.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import time
from datetime import datetime
from ipaddress import ip_address
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
from peerwall.nft import netlink
from peerwall.nft.netlink import SetEdit
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab

REMOVED = "job"
"""C2's pod offloaded to C1, last of C1's pods: removing it shifts no other pod's address."""
KERNEL_ENOENT = "Could not process rule: No such file or directory"
"""How libnftables relays the kernel's ENOENT (its own check of a set says "element does not
exist" instead, and never reaches the kernel)."""
SYS_PIDFD_GETFD = 438
"""The same number on every architecture (the syscall table common since Linux 5.1)."""
NFNLGRP_NFTABLES_BIT = 1 << 6
"""Group 7 in a netlink socket's group mask (``getsockname``)."""


def set_elements(plan: LabPlan, set_name: str) -> str:
    ns = plan.gateway_ns(GATEWAY)
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "set", "inet", "peerwall", set_name],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def agents_notification_socket(pid: int) -> socket.socket:
    """A duplicate, in this process, of the agent's socket subscribed to nftables'
    notifications (``pidfd_getfd``: the test runs as root): what it sends carries the agent's
    own port id. Sending on it disturbs nothing: the agent only reads notifications from it, and
    skips what else comes."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            assert fd >= 0, os.strerror(ctypes.get_errno())
            sock = socket.socket(fileno=fd)
            if (
                sock.family == socket.AF_NETLINK
                and sock.proto == netlink.NETLINK_NETFILTER
                and sock.getsockname()[1] & NFNLGRP_NFTABLES_BIT
            ):
                return sock
            sock.close()
    finally:
        os.close(pidfd)
    raise AssertionError(f"agent {pid} has no socket subscribed to nftables' notifications")


def logged_at(log: str, text: str) -> datetime:
    """When the agent logged the first line of ``log`` that holds ``text``."""
    line = next(x for x in log.splitlines() if text in x)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_a_step_the_kernel_refuses_is_recovered_by_a_whole_replace(
    lab_up: LabUp, fault: FaultRecord
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
    # The address deleted through the agent's own socket: its notification is the agent's own.
    edit, _ = netlink.element_batch(
        "inet", "peerwall", [SetEdit(offloaded, delete=[ip_address(address)])], 1 << 30
    )

    with Watch(plan, FULL) as watch:
        with watch.changing(SEG):
            with agents_notification_socket(pid) as sock:
                sock.send(edit)
            assert address not in set_elements(plan, offloaded)
            changed = time.monotonic()
            digests = agents.write_inputs(plan, settings, SEG, without)
            converged = agents.wait(plan, settings, digests)
            fault.recovered(time.monotonic() - changed)
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
