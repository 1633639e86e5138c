"""The flow cleanup asks the kernel for the marks it can judge (issue 18.3): a dump request with
``CTA_MARK`` and ``CTA_MARK_MASK`` returns only the entries whose ``mark & mask`` is the value, so
the connections of other peers, Liqo's and the unmarked ones never reach the agent."""

from __future__ import annotations

from importlib import resources
from ipaddress import IPv4Address

import pytest

from ctfill import fill
from peerwall.agent.enforcer import Enforcer
from peerwall.compile import ctmark
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import Flow, stale
from peerwall.compile.state import GatewayState
from peerwall.dataplane.conntrack import Conntrack
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
C3_POD, DENIED = IPv4Address("10.50.1.1"), IPv4Address("10.244.0.99")
N = 300


def c1_state() -> GatewayState:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return gateway_state(load_topology(text, "three"), "C1", SEG)


def test_only_the_asked_marks_leave_the_kernel(netns: str) -> None:
    state = c1_state()
    narrowed = GatewayState(state.cluster, {"C3": state.peers["C3"]}, state.tunnel_pattern)
    # The same addresses (C3's pods to a destination segregation denies), four kinds of marks:
    # C3's own (opened by C3), C2's (a clash of addresses, not of tunnels), Liqo's, none.
    kinds = {
        "c3": ctmark.from_peer("C3") | 2,  # Liqo's low bits do not hide our mark
        "c2": ctmark.from_peer("C2"),
        "liqo": 3,
        "none": 0,
    }
    for i, mark in enumerate(kinds.values()):
        assert fill(netns, N, C3_POD, DENIED, first=i * N, mark=mark) == N
    asked: list[Flow] = []

    def judged(flow: Flow) -> str | None:
        asked.append(flow)
        return stale(narrowed, flow)

    with Conntrack(netns) as table:
        marks = [(ctmark.from_peer("C3"), ctmark.OURS)]
        cleared = table.delete_where(judged, None, marks)
        assert cleared.count == N
        assert {f.mark for f in asked} == {kinds["c3"]}, "the kernel filtered the dump"
        left = {e.flow.mark for e in table.entries()}
        assert left == {kinds["c2"], kinds["liqo"], kinds["none"]}
        # After an element change the enforcer asks for no unmarked entry; after a whole-table
        # replace it does, and the unmarked ones from C3's sources go too (Liqo's stay).
        enforcer = Enforcer(FakeNft(), table)
        assert enforcer.clear_flows(narrowed, unmarked=False) == 0
        assert enforcer.clear_flows(narrowed) == N
        assert {e.flow.mark for e in table.entries()} == {kinds["c2"], kinds["liqo"]}
