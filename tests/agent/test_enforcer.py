"""The agent's kernel side on the in-memory nft: which transaction each change becomes, and that
the table always ends equal to the desired state (no root needed)."""

from __future__ import annotations

import random
from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address

import pytest

from peerwall.agent.desired import DesiredState
from peerwall.agent.enforcer import Enforcer
from peerwall.compile import names
from peerwall.compile.build import build, build_guard
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import Flow, Tuple
from peerwall.compile.state import GatewayState, SetKind
from peerwall.dataplane.conntrack import Cleared
from peerwall.dataplane.drift import TABLE_UNREADABLE
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft
from peerwall.nft.objects import render_replace
from peerwall.nft.transaction import Transaction

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def three(mode: SecurityMode = SEG) -> GatewayState:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return gateway_state(load_topology(text, "three"), "C1", mode)


class Flows:
    """A conntrack table of given flows; records what the enforcer deleted."""

    def __init__(self, flows: list[Flow]) -> None:
        self.flows = flows
        self.deleted: list[tuple[Flow, str]] = []

    def delete_where(self, reason, about=None, marks=None):  # type: ignore[no-untyped-def]
        # As the kernel filters a dump by mark: the other entries are never asked about.
        def asked(f: Flow) -> bool:
            return marks is None or any(f.mark & mask == value for value, mask in marks)

        gone = [(f, why) for f in self.flows if asked(f) and (why := reason(f)) is not None]
        self.flows = [f for f in self.flows if not asked(f) or reason(f) is None]
        self.deleted += gone
        return Cleared(len(gone), gone[:20])


def started(state: GatewayState) -> tuple[FakeNft, Enforcer, DesiredState]:
    nft = FakeNft()
    enforcer = Enforcer(nft)
    desired = DesiredState(state.cluster, state.tunnel_pattern, state.conncheck_port)
    desired.load(state)
    assert enforcer.sync(desired).kind == "full"
    return nft, enforcer, desired


def equal(nft: FakeNft, desired: DesiredState) -> bool:
    live, want = read_table(nft, "inet", "peerwall"), build(desired.snapshot())
    assert live is not None
    return (
        {s.name: s for s in live.sets} == {s.name: s for s in want.sets}
        and {m.name: m for m in live.maps} == {m.name: m for m in want.maps}
        and {c.name: c for c in live.chains} == {c.name: c for c in want.chains}
    )


def test_fail_closed_installs_a_table_without_peers_only_if_there_is_none() -> None:
    nft = FakeNft()
    enforcer = Enforcer(nft)
    assert enforcer.fail_closed(three())
    table = nft.ruleset("inet", "peerwall")
    assert table is not None and not table.map(names.MAP_FORWARD).elements
    assert any("fail closed" in (r.comment or "") for r in table.chain(names.CHAIN_FORWARD).rules)
    # A table of a previous run is kept until the state is known.
    nft.run(render_replace(build(three())))
    assert not Enforcer(nft).fail_closed(three())
    assert nft.ruleset("inet", "peerwall").map(names.MAP_FORWARD).elements  # type: ignore[union-attr]


def test_a_pod_event_is_one_element_and_nothing_is_read_back() -> None:
    nft, enforcer, desired = started(three())
    desired.contribute("pod/shop/new", "C2", SetKind.BACKENDS, [IPv4Address("10.244.7.7")])
    before, listed = len(nft.scripts), len(nft.listings)
    step = enforcer.sync(desired)
    assert step.kind == "elements"
    assert nft.scripts[before:] == [
        f"add element inet peerwall {names.peer_set('C2', SetKind.BACKENDS)} {{ 10.244.7.7 }}\n"
    ]
    assert nft.listings[listed:] == []  # nothing was read back
    assert equal(nft, desired)
    desired.withdraw("pod/shop/new")
    listed = len(nft.listings)
    assert enforcer.sync(desired).narrows
    assert nft.listings[listed:] == []
    assert equal(nft, desired)


def test_a_mode_change_is_one_element_of_the_cidrs_set() -> None:
    nft, enforcer, desired = started(three())
    desired.upsert_peer(replace(three().peers["C2"], mode=FULL))
    before = len(nft.scripts)
    assert enforcer.sync(desired).kind == "mode"
    assert nft.scripts[before:] == [
        f"add element inet peerwall {names.peer_cidrs_set('C2')} {{ 10.244.0.0/16 }}\n"
    ]
    assert equal(nft, desired)


def test_a_new_or_removed_peer_touches_only_its_objects() -> None:
    state = three()
    without = replace(state, peers={k: v for k, v in state.peers.items() if k != "C3"})
    nft, enforcer, desired = started(without)
    desired.load(state)
    step = enforcer.sync(desired)
    assert step.kind == "peers"
    assert names.peer_chain("C2") not in nft.scripts[-1]
    assert equal(nft, desired)
    desired.load(without)
    assert enforcer.sync(desired).kind == "peers"
    assert names.peer_chain("C2") not in nft.scripts[-1]
    assert equal(nft, desired)
    assert enforcer.table.counts.transactions["full"] == 1  # only the start


def test_a_refused_transaction_falls_back_to_a_whole_table() -> None:
    nft, enforcer, desired = started(three())
    desired.contribute("pod/x", "C2", SetKind.BACKENDS, [IPv4Address("10.244.7.8")])
    nft.fail_next = "Error: Could not process rule: No such file or directory"
    assert enforcer.sync(desired).kind == "failed"
    assert enforcer.table.counts.apply_failures == 1 and enforcer.table.needs_full
    assert enforcer.sync(desired).kind == "full"  # the next step, whatever changed since
    assert equal(nft, desired)


def test_drift_is_repaired_and_counted() -> None:
    nft, enforcer, desired = started(three())
    nft.run("flush table inet peerwall\n")
    found = enforcer.repair(desired.snapshot())
    assert found and enforcer.table.counts.repairs == 1
    assert equal(nft, desired)
    assert enforcer.repair(desired.snapshot()) == []
    assert enforcer.table.counts.checks == 2


def test_only_flows_the_state_forbids_are_cleared() -> None:
    state = three()
    c2 = state.peers["C2"]
    src = next(iter(c2.sources)).network_address + 5
    allowed_dst = next(iter(c2.addresses(SetKind.BACKENDS)))
    denied_dst = IPv4Address("10.244.0.200")
    flows = Flows(
        [
            Flow("tcp", Tuple(src, allowed_dst, 40000, 8080), Tuple(allowed_dst, src, 8080, 40000)),
            Flow("tcp", Tuple(src, denied_dst, 40001, 8080), Tuple(denied_dst, src, 8080, 40001)),
        ]
    )
    # C1 and C2 overlap: C2 addresses C1's pods through its view; C1 DNATs them back.
    nat = c2.nat
    if nat is not None:
        flows.flows = [
            Flow(
                f.proto,
                Tuple(
                    f.orig.src,
                    nat.remapped.network_address
                    + (int(f.orig.dst) - int(nat.local.network_address)),
                    f.orig.sport,
                    f.orig.dport,
                ),
                f.reply,
            )
            for f in flows.flows
        ]
    enforcer = Enforcer(FakeNft(), flows)
    assert enforcer.clear_flows(state) == 1
    assert [f.reply.src for f, _ in flows.deleted] == [denied_dst]


@pytest.mark.parametrize("seed", range(8))
def test_any_sequence_of_events_leaves_the_table_equal_to_the_desired_state(seed: int) -> None:
    rnd = random.Random(seed)
    state = three()
    nft, enforcer, desired = started(state)
    peers = list(state.peers)
    keys: list[str] = []
    for step in range(60):
        action = rnd.random()
        if action < 0.5:
            key = f"pod/{step}"
            keys.append(key)
            addresses = [
                IPv4Address(f"10.244.{rnd.randint(0, 3)}.{rnd.randint(1, 250)}")
                for _ in range(rnd.randint(1, 3))
            ]
            desired.contribute(key, rnd.choice(peers), rnd.choice(list(SetKind)), addresses)
        elif action < 0.75 and keys:
            desired.withdraw(keys.pop(rnd.randrange(len(keys))))
        elif action < 0.85:
            name = rnd.choice(peers)
            desired.upsert_peer(replace(state.peers[name], mode=rnd.choice([FULL, SEG])))
        elif action < 0.92:
            name = rnd.choice(peers)
            if name in desired.peers:
                desired.remove_peer(name)
            else:
                desired.upsert_peer(state.peers[name])
        if rnd.random() < 0.6:  # sometimes several events share a transaction
            enforcer.sync(desired)
            assert equal(nft, desired), step
    enforcer.sync(desired)
    assert equal(nft, desired)
    assert enforcer.table.counts.transactions["full"] == 1


def test_a_step_narrows_only_the_peers_it_touched_and_a_removed_peer_admits_nothing() -> None:
    state = three()
    _nft, enforcer, desired = started(state)
    desired.contribute("pod/x", "C2", SetKind.BACKENDS, [IPv4Address("10.244.7.9")])
    assert enforcer.sync(desired).narrowed is None  # only gained access
    desired.withdraw("pod/x")
    narrowed = enforcer.sync(desired).narrowed
    assert narrowed is not None and set(narrowed.peers) == {"C2"}
    desired.remove_peer("C3")
    narrowed = enforcer.sync(desired).narrowed
    assert narrowed is not None and set(narrowed.peers) == {"C3"}
    c3 = narrowed.peers["C3"]
    assert c3.sources == state.peers["C3"].sources and not c3.full_access and not c3.members
    src = next(iter(c3.sources)).network_address + 1
    dst = next(iter(state.peers["C3"].addresses(SetKind.OFFLOADED) or {IPv4Address("10.244.0.1")}))
    flows = Flows([Flow("tcp", Tuple(src, dst, 1, 8080), Tuple(dst, src, 8080, 1))])
    assert Enforcer(FakeNft(), flows).clear_flows(narrowed) == 1  # its flows are cut


class GarbledListing(FakeNft):
    """Lists ``inet peerwall`` (whole, or with its family) as invalid JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.garbled = False

    def list_json(self, command: str):  # type: ignore[no-untyped-def]
        if self.garbled and command in ("list table inet peerwall", "list ruleset inet"):
            raise NftError(f"libnftables returned invalid JSON for {command!r}")
        return super().list_json(command)


def test_a_table_that_cannot_be_read_back_is_drift_replaced_whole_never_a_crash() -> None:
    nft = GarbledListing()
    enforcer = Enforcer(nft)
    desired = DesiredState("C1", three().tunnel_pattern, three().conncheck_port)
    desired.load(three())
    enforcer.sync(desired)
    nft.garbled = True
    found = enforcer.repair(desired.snapshot())
    assert [d.kind for d in found] == [TABLE_UNREADABLE]
    assert nft.scripts[-1] == render_replace(build(desired.snapshot()))
    assert enforcer.table.counts.readback_failures == 1 and enforcer.table.counts.repairs == 1
    # A peer step that must read the table back replaces it whole instead of raising.
    desired.remove_peer("C3")
    assert enforcer.sync(desired).kind == "full"
    # At start, too: an unreadable table of a previous run is replaced by a fail-closed one.
    assert Enforcer(nft).fail_closed(three())


def test_a_refused_whole_table_raises_the_guard_which_goes_once_the_table_is_back() -> None:
    nft, enforcer, desired = started(three())
    refusing = True
    run, apply = nft.run, nft.apply

    def refuse_peerwall(tx: Transaction) -> None:
        """As the kernel does while another process holds ``inet peerwall`` (flags owner)."""
        if refusing and "delete table inet peerwall\n" in tx.script:
            raise NftError("Error: Could not process rule: Operation not permitted")
        apply(tx)

    nft.apply = refuse_peerwall  # type: ignore[method-assign]
    run("delete table inet peerwall\n")  # gone: only a whole-table write repairs that
    enforcer.repair(desired.snapshot())
    assert enforcer.table.counts.guard is not None
    assert nft.ruleset("inet", names.GUARD_TABLE) == build_guard(three().tunnel_pattern)
    refusing = False
    assert enforcer.repair(desired.snapshot())  # still missing: written whole now
    assert enforcer.table.counts.guard is None
    assert nft.ruleset("inet", names.GUARD_TABLE) is None
    assert equal(nft, desired)
