"""A whole write over a table that reaches no peer is staged (``GatewayTable._write_staged``):
the shape by libnftables, the plain sets' addresses by netlink batches, then one atomic switch.
On the kernel: no state in between lets through anything the fail-closed table does not, the
addresses never go through libnftables, a write refused half-way leaves the gateway failing
closed and the next one (or the next agent) completes it, and over an enforcing table the write
stays one transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

import pytest
from nftlab import FULL, nft_in, same

from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.changes import Changes
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import GatewayState, SetKind
from peerwall.dataplane import table as table_module
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.table import GatewayTable, StepKind
from peerwall.errors import NftError
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.listing import parse_table
from peerwall.nft.netlink import SetEdit
from peerwall.nft.objects import Ruleset
from peerwall.nft.transaction import Transaction

pytestmark = pytest.mark.lab

FIRST = 0x0AFA0000  # 10.250.0.0: the addresses filled in


def state(n: int, mode: SecurityMode = FULL) -> GatewayState:
    """Gateway C1 of the three-cluster example (two peers, one with NAT), with ``n`` addresses
    that C2 offloaded here."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    st = gateway_state(load_topology(text, "three"), "C1", mode)
    c2 = st.peers["C2"]
    members = {**c2.members, SetKind.OFFLOADED: frozenset(IPv4Address(FIRST + i) for i in range(n))}
    return replace(st, peers={**st.peers, "C2": replace(c2, members=members)})


def seen(netns: str) -> Ruleset | None:
    """The table as an independent witness (the ``nft`` program) lists it."""
    parsed = json.loads(nft_in(netns, "-j", "list", "ruleset", "inet"))
    if not any(o.get("table", {}).get("name") == names.TABLE for o in parsed.get("nftables", [])):
        return None
    return parse_table(parsed, "inet", names.TABLE)


def reaches_no_peer(live: Ruleset | None, st: GatewayState) -> bool:
    """What the fail-closed table lets through, and nothing more: its hooked chains, and empty
    verdict maps (the only way from them to a peer's chain)."""
    if live is None:
        return True
    fail_closed = build(replace(st, peers={}))
    hooked = {c.name: c for c in live.chains if c.hook is not None}
    return hooked == {c.name: c for c in fail_closed.chains} and not any(
        m.elements for m in live.maps
    )


class Witnessed:
    """``LibNft`` that records, after each commit, the table as ``nft`` lists it, and every
    libnftables script; ``refuse_fill``: the fill batch (counted from 1) refused."""

    def __init__(self, nft: LibNft, netns: str, refuse_fill: int | None = None) -> None:
        self.inner, self.netns, self.refuse_fill = nft, netns, refuse_fill
        self.states: list[Ruleset | None] = []
        self.scripts: list[str] = []
        self.fills = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, tx: Transaction) -> None:
        self.scripts.append(tx.script)
        self.inner.apply(tx)
        self.states.append(seen(self.netns))

    def edit_elements(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
        self.fills += 1
        if self.fills == self.refuse_fill:
            raise NftError("refused by the test")
        self.inner.edit_elements(family, table, edits)
        self.states.append(seen(self.netns))


def test_over_the_fail_closed_table_nothing_more_passes_until_the_table_is_whole(
    nft: LibNft, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "FILL_CHUNK", 1000)
    st = state(3500)
    w = Witnessed(nft, netns)
    gt = GatewayTable(w)
    assert gt.fail_closed(st)
    w.states.clear()
    gt.write_whole(st)
    # The shape, 4 batches of C2's offloaded pods (1000 each) and the other non-empty plain
    # sets' one each, then the switch.
    assert w.fills >= 4 and len(w.states) == w.fills + 2
    *before, whole = w.states
    assert all(reaches_no_peer(s, st) for s in before)
    assert same(whole, build(st)) and not reaches_no_peer(whole, st)
    # The addresses went to the kernel by netlink only: no libnftables script names one.
    assert not any("10.250." in script for script in w.scripts)


def test_a_write_refused_half_way_fails_closed_and_the_next_agent_completes_it(
    nft: LibNft, netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table_module, "FILL_CHUNK", 1000)
    st = state(3500)
    w = Witnessed(nft, netns, refuse_fill=2)
    gt = GatewayTable(w)
    gt.fail_closed(st)
    kind, _ = gt.commit(gt.plan(Changes(), st))
    assert kind is StepKind.FAILED and gt.needs_full
    assert reaches_no_peer(seen(netns), st)
    assert gt.counts.guard is not None  # the guard fails the gateway closed as well
    # A new agent finds the half-written table: kept until the state is known, then completed.
    again = GatewayTable(nft)
    assert not again.fail_closed(st)
    assert reaches_no_peer(seen(netns), st)
    assert again.commit(again.plan(Changes(), st))[0] is StepKind.FULL
    assert same(seen(netns), build(st))
    assert again.counts.guard is None
    assert "peerwall-guard" not in nft_in(netns, "list", "tables")


def test_over_an_enforcing_table_a_whole_write_is_one_transaction_of_the_difference(
    nft: LibNft, netns: str
) -> None:
    """A restarted agent's first whole write, over the previous run's table: one transaction,
    from the table read back, carrying only what differs (here 500 more addresses and a mode)."""
    first, second = state(2000), state(2500, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    GatewayTable(nft).write_whole(first)
    assert same(seen(netns), build(first))
    w = Witnessed(nft, netns)
    GatewayTable(w).write_whole(second)
    assert w.fills == 0 and len(w.scripts) == 1
    (script,) = w.scripts
    assert "table inet peerwall {" not in script  # not a whole replace
    assert str(IPv4Address(FIRST + 2000)) in script and str(IPv4Address(FIRST + 5)) not in script
    assert same(seen(netns), build(second))
