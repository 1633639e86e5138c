"""A full conntrack table on the gateway (held in the issue's first trial; ``make faults`` only,
marked ``heavy``: 262,143 entries take a while to make and to walk). The gateway's namespace
holds as many entries as the kernel allows (``nf_conntrack_max`` is per namespace's count), all
unrelated to any peer; the allowed established flows keep echoing, nothing denied passes, and a
narrowing mode change is still enforced and reported, by the same agent process (not restarted),
whose peak memory stays under 128 MiB (issue 18's first trial: OOM-killed at 128 and 256 MiB,
16–22 s per change without a limit). Recovery, recorded: the narrowing change's reported
convergence.
"""

from __future__ import annotations

import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from faultkit import (
    FULL,
    GATEWAY,
    SEG,
    FaultRecord,
    Watch,
    agent_pid,
    by_mode_passes,
    peak_rss,
    three_clusters,
)

from ctfill import fill
from labkit import LabUp
from peerwall.lab import agents
from peerwall.settings import LabSettings

pytestmark = [pytest.mark.lab, pytest.mark.heavy]


def test_a_full_conntrack_table_opens_nothing_and_a_change_still_converges(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """the gateway's conntrack table full (262,144 entries, unrelated)"""
    settings = LabSettings()
    plan = three_clusters(lab_up, FULL)
    text = Path(settings.state_dir, plan.name, "topology.yaml").read_text()
    maximum = int(Path("/proc/sys/net/netfilter/nf_conntrack_max").read_text())
    pid = agent_pid(plan)
    with Watch(plan, FULL) as watch:
        made = fill(
            plan.gateway_ns(GATEWAY), maximum, IPv4Address("192.168.1.1"), IPv4Address("192.0.2.1")
        )
        # Full: the kernel refuses more (the probes' own entries took the rest of the room).
        more = fill(
            plan.gateway_ns(GATEWAY), 1000, IPv4Address("192.168.100.1"), IPv4Address("192.0.2.1")
        )
        assert more < 1000, f"not full: {made} entries made, then {more} of 1000 more"
        fault.extra["conntrack entries"] = made
        with watch.changing(SEG):
            converged = agents.wait(plan, settings, agents.write_inputs(plan, settings, SEG, text))
            fault.recovered(converged.seconds)
        assert not by_mode_passes(plan)
        time.sleep(1.0)  # probe rounds with the table full and the change enforced
    watch.check(fault)
    assert agent_pid(plan) == pid, "the agent restarted"
    peak = peak_rss(pid)
    fault.extra["agent peak RSS (MiB)"] = round(peak / 2**20, 1)
    assert peak < 128 * 2**20, f"agent peak RSS {peak / 2**20:.1f} MiB"
