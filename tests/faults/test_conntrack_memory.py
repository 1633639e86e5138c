"""Bounded memory whatever conntrack holds (issue 18.3).

The flow cleanup after a narrowing change used to list every conntrack entry as Python objects:
with a full table (262,143 entries) the agent was OOM-killed. It now streams the dump, skips
unread every entry that is not from or to a peer's sources, and deletes as it goes: its memory
does not grow with the table. Here with 20,000 real entries in a scratch namespace (the 262k
figures are in the bench, ``bench/conntrack_bench.py``), measured with tracemalloc: what the
cleanup allocates at its peak, against what one listing of the table costs.
"""

from __future__ import annotations

import time
import tracemalloc
from collections import Counter
from importlib import resources
from ipaddress import IPv4Address

import pytest
from faultkit import (
    GATEWAY,
    FaultRecord,
    agent_http,
    agent_pid,
    metric,
    peak_rss,
    three_clusters,
    until,
)

from ctfill import count, fill
from labkit import LabUp, switch
from peerwall.agent.enforcer import Enforcer
from peerwall.compile import ctmark
from peerwall.compile.desired import gateway_state
from peerwall.dataplane.conntrack import Conntrack
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD
N = 10_000


def test_the_flow_cleanup_does_not_grow_with_the_table(netns: str, fault: FaultRecord) -> None:
    """a conntrack table far larger than the flows a change forbids"""
    fault.tried()
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(load_topology(text, "three"), "C1", SEG)
    # From C3's pods (10.50/16) to a C1 address segregation does not admit: stale. And as many
    # that are nobody's business (no peer's sources at either end): left alone, never decoded.
    assert fill(netns, N, IPv4Address("10.50.1.1"), IPv4Address("10.244.0.99")) == N
    assert fill(netns, N, IPv4Address("192.168.1.1"), IPv4Address("192.168.200.1")) == N
    with Conntrack(netns) as table:
        tracemalloc.start()
        try:
            listed = table.entries()
            _, listing_peak = tracemalloc.get_traced_memory()
            del listed
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            cleared = Enforcer(FakeNft(), table).clear_flows(state)
            _, cleanup_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert cleared == N
    assert count(netns) == N, "only the stale entries went"
    # A listing holds every entry; the cleanup, a receive buffer and a batch of deletions.
    assert listing_peak > 10 * 1024 * 1024, f"control: listing took {listing_peak} B"
    assert cleanup_peak - base < listing_peak / 5, (cleanup_peak - base, listing_peak)


C2_FLOWS, C3_FLOWS = 100_000, 50_000


def test_a_real_agent_asks_the_kernel_for_the_narrowed_peers_flows_only(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """a large conntrack table in a real agent's gateway, cut by mark"""
    plan = three_clusters(lab_up, FULL)  # C2 -> C1 follows the global mode: open for now
    gw = plan.gateway_ns(GATEWAY)
    remapped = plan.topology.addresses.remapped
    c2, c3 = (
        remapped(GATEWAY, "C2").network_address + 1,
        remapped(GATEWAY, "C3").network_address + 1,
    )
    denied = IPv4Address("10.244.0.99")  # no pod, no backend: only FullPodToPod admits it
    # C2's connections (its mark) that segregation forbids, and as many of C3's that C3's own
    # segregation forbids already but that no change of C3's asks about: they stay in the kernel.
    assert fill(gw, C2_FLOWS, c2, denied, mark=ctmark.from_peer("C2")) == C2_FLOWS
    assert fill(gw, C3_FLOWS, c3, denied, first=C2_FLOWS, mark=ctmark.from_peer("C3")) == C3_FLOWS
    pid = agent_pid(plan)
    started = time.monotonic()
    switch(plan, SEG)
    took = until(lambda: cleared(plan) >= C2_FLOWS, timeout=300)
    fault.recovered(time.monotonic() - started)
    assert took >= 0 and cleared(plan) == C2_FLOWS
    with Conntrack(gw) as table:
        marks = Counter(e.flow.mark for e in table.entries() if e.flow.orig.dst == denied)
    assert marks == {ctmark.from_peer("C3"): C3_FLOWS}
    assert agent_pid(plan) == pid, "the agent restarted"
    assert peak_rss(pid) < 128 * 2**20


def cleared(plan: LabPlan) -> float:
    code, body = agent_http(plan, "/metrics")
    assert code == 200, body
    return metric(body, "peerwall_flows_cleared_total")
