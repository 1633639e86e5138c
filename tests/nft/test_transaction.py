"""diff: the smallest transaction, object by object, and it always lands on the new table.

The property test runs every transaction on the in-memory nft (which keeps nft's rules: a script
is atomic, deleting a missing element or a referenced chain fails) and checks that it turns the
old table into the new one exactly; the kernel tests run a few on the real thing.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import GatewayState, SetKind
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.model import SecurityMode, Topology, load_topology, topology_from_data
from peerwall.nft.fake import FakeNft
from peerwall.nft.objects import Ruleset, render_replace
from peerwall.nft.transaction import diff
from strategies import topologies

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def example(name: str) -> Topology:
    text = resources.files("peerwall").joinpath(f"examples/{name}").read_text()
    return load_topology(text, name)


def three(cluster: str = "C1", mode: SecurityMode = SEG) -> GatewayState:
    return gateway_state(example("three-clusters.yaml"), cluster, mode)


def with_peer_members(
    state: GatewayState, peer: str, kind: SetKind, extra: set[str]
) -> GatewayState:
    """``state`` with ``extra`` addresses added to one of ``peer``'s sets."""
    p = state.peers[peer]
    members = p.addresses(kind) | {IPv4Address(a) for a in extra}
    new = replace(p, members={**p.members, kind: members})
    return replace(state, peers={**state.peers, peer: new})


def without_peer(state: GatewayState, peer: str) -> GatewayState:
    return replace(state, peers={k: v for k, v in state.peers.items() if k != peer})


def lands(old: Ruleset, new: Ruleset) -> None:
    """The transaction from ``old`` applied to a table holding ``old`` gives exactly ``new``."""
    nft = FakeNft()
    nft.run(render_replace(old))
    tx = diff(old, new)
    if not tx.empty:
        nft.run(tx.script)
    got = nft.ruleset("inet", "peerwall")
    assert got is not None
    assert {s.name: s for s in got.sets} == {s.name: s for s in new.sets}
    assert {m.name: m for m in got.maps} == {m.name: m for m in new.maps}
    assert {c.name: c for c in got.chains} == {c.name: c for c in new.chains}


def test_equal_tables_give_an_empty_transaction() -> None:
    rs = build(three())
    assert diff(rs, rs).empty
    shuffled = replace(rs, sets=rs.sets[::-1], chains=rs.chains[::-1])
    assert diff(rs, shuffled).empty  # the order nft lists objects in is not a difference


def test_no_old_table_is_a_full_replace() -> None:
    rs = build(three())
    tx = diff(None, rs)
    assert tx.full and tx.script == render_replace(rs)
    assert tx.added == sum(len(s.elements) for s in rs.sets) + sum(len(m.elements) for m in rs.maps)


def test_a_pod_event_is_one_element() -> None:
    old = three()
    new = with_peer_members(old, "C2", SetKind.BACKENDS, {"10.244.0.77"})
    tx = diff(build(old), build(new))
    assert not tx.full and tx.chains == ()
    set_name = names.peer_set("C2", SetKind.BACKENDS)
    assert tx.script.splitlines() == [f"add element inet peerwall {set_name} {{ 10.244.0.77 }}"]
    assert (tx.added, tx.removed) == (1, 0)
    lands(build(old), build(new))


def test_a_new_peer_touches_only_its_own_objects() -> None:
    old, new = without_peer(three(), "C3"), three()
    tx = diff(build(old), build(new))
    assert not tx.full
    assert set(tx.chains) == {
        names.peer_chain("C3"),
        names.peer_input_chain("C3"),
        names.peer_egress_chain("C3"),
    }
    assert names.peer_chain("C2") not in tx.script  # C2's chain and counters are left alone
    lands(build(old), build(new))
    # And back: the peer's map elements go first, then its chains, then its sets.
    back = diff(build(new), build(old))
    assert not back.full and names.peer_chain("C2") not in back.script
    lands(build(new), build(old))


def test_a_changed_declaration_replaces_the_table() -> None:
    rs = build(three())
    changed = replace(
        rs,
        sets=tuple(replace(s, flags=("interval",)) if "backends" in s.name else s for s in rs.sets),
    )
    assert diff(rs, changed).full


def test_a_changed_peer_rewrites_only_its_chain() -> None:
    old = three()
    p = old.peers["C2"]
    new = replace(old, peers={**old.peers, "C2": replace(p, api=None)})
    tx = diff(build(old), build(new))
    assert not tx.full and tx.chains == (names.peer_chain("C2"),)
    lands(build(old), build(new))


@budget("diff")
@given(
    a=topologies(),
    b=topologies(),
    modes=st.tuples(st.sampled_from(list(SecurityMode)), st.sampled_from(list(SecurityMode))),
)
def test_every_transaction_lands_on_the_new_table(a, b, modes) -> None:  # type: ignore[no-untyped-def]
    ta, tb = topology_from_data(a, "a"), topology_from_data(b, "b")
    cluster = ta.clusters[0].name
    if cluster not in tb.cluster_by_name:
        return
    lands(build(gateway_state(ta, cluster, modes[0])), build(gateway_state(tb, cluster, modes[1])))


@pytest.mark.lab
def test_transactions_land_on_the_kernel_too(netns: str) -> None:
    states = [
        without_peer(three(), "C3"),
        three(),
        three(mode=FULL),
        with_peer_members(three(), "C2", SetKind.BACKENDS, {"10.244.0.9"}),
        without_peer(three(), "C2"),
        three(),
    ]
    with LibNft(netns) as nft:
        nft.run(render_replace(build(states[0])))
        for old, new in pairwise(states):
            tx = diff(build(old), build(new))
            assert not tx.full
            nft.run(tx.script)
            live = read_table(nft, "inet", "peerwall")
            assert live is not None
            want = build(new)
            assert {s.name: s for s in live.sets} == {s.name: s for s in want.sets}
            assert {m.name: m for m in live.maps} == {m.name: m for m in want.maps}
            assert {c.name: c for c in live.chains} == {c.name: c for c in want.chains}
