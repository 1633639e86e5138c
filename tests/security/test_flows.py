"""Flows that a change forbids do not survive it; flows still allowed do (issues 7.3 and 6.4).

``ct state established,related accept`` comes first, so without help an established connection
outlives any narrowing. After a change, peerwall deletes the conntrack entries of flows the new
state would not have let through (and of flows whose NAT the rules would not have made); their
next packet is a new connection and meets the rules.
"""

from __future__ import annotations

from importlib import resources

import pytest

from hostile import connect, echo_server, nft, roundtrip
from labkit import LabUp, frozen_agent, repair, seed_topology, switch
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode, load_topology
from peerwall.policy import expect
from peerwall.settings import ProbeSettings

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def cut(sock: object) -> bool:
    """The connection no longer carries data (its packets are dropped, or it was reset)."""
    try:
        return roundtrip(sock, b"still there?") != b"still there?"  # type: ignore[arg-type]
    except OSError:
        return True


def test_a_switch_to_segregation_cuts_p4_to_p1_and_keeps_p4_to_p2(
    lab_up: LabUp, seed_text: str
) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, FULL)
    with echo_server(plan.pod_ns("P1")), echo_server(plan.pod_ns("P2")):
        forbidden = connect(plan, "P4", "P1", timeout=0.5)
        allowed = connect(plan, "P4", "P2", timeout=0.5)
        with forbidden, allowed:
            assert roundtrip(forbidden, b"a") == b"a" and roundtrip(allowed, b"a") == b"a"
            switch(plan, SEG)
            assert cut(forbidden)
            assert roundtrip(allowed, b"b") == b"b"
            # P4 -> P2 is allowed in both modes: it keeps echoing through 50 switches.
            for i in range(50):
                switch(plan, FULL if i % 2 == 0 else SEG)
                assert roundtrip(allowed, b"%d" % i) == b"%d" % i, f"switch {i}"


def test_a_connection_opened_while_the_table_was_deleted_is_cut_by_the_repair(
    lab_up: LabUp,
) -> None:
    # C1 and C3 do not overlap, so with C1's table gone (its NAT with it) local3 in C3 reaches
    # tool in C1, which segregation forbids.
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    # No periodic read-back during the test: the repair is the one it asks for.
    plan = lab_up(load_topology(text, "three"), text, SEG, agent_resync_interval=3600)
    with echo_server(plan.pod_ns("tool")):
        with frozen_agent(plan, "C1"):  # the table stays gone until the connection is made
            nft(plan.gateway_ns("C1"), "delete", "table", "inet", "peerwall")
            sneaked = connect(plan, "local3", "tool", timeout=0.5)
            assert roundtrip(sneaked, b"in") == b"in"
        with sneaked:
            repair(plan)
            assert cut(sneaked)


def test_a_probe_right_after_a_repair_is_all_correct(lab_up: LabUp, seed_text: str) -> None:
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, SEG, agent_resync_interval=3600)
    expected = expect(topology, SEG).table
    settings = ProbeSettings(timeout=0.5)
    with frozen_agent(plan, "C1"):
        nft(plan.gateway_ns("C1"), "delete", "table", "inet", "peerwall")
        during = observe_lab(plan, SEG.value, probe=settings)
    assert expected.compare(during.table)  # the drift shows
    repair(plan)
    after = observe_lab(plan, SEG.value, probe=settings)
    assert not expected.compare(after.table), [
        (m, after.cells[(m.source, m.destination)].detail())
        for m in expected.compare(after.table).mismatches()
    ]
