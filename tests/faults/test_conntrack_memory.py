"""Bounded memory whatever conntrack holds (issue 18.3).

The flow cleanup after a narrowing change used to list every conntrack entry as Python objects:
with a full table (262,143 entries) the agent was OOM-killed. It now streams the dump, skips
unread every entry that is not from or to a peer's sources, and deletes as it goes: its memory
does not grow with the table. Here with 20,000 real entries in a scratch namespace (the 262k
figures are in the bench, ``bench/conntrack_bench.py``), measured with tracemalloc: what the
cleanup allocates at its peak, against what one listing of the table costs.
"""

from __future__ import annotations

import tracemalloc
from importlib import resources
from ipaddress import IPv4Address

import pytest
from faultkit import FaultRecord

from ctfill import count, fill
from peerwall.agent.enforcer import Enforcer
from peerwall.compile.desired import gateway_state
from peerwall.dataplane.conntrack import Conntrack
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
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
