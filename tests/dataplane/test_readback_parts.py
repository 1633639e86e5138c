"""The read-back in parts (``dataplane.readback``, ``dataplane.setdump``): the table's shape by a
terse listing, plain address sets' elements over netlink, the rest by per-object listings. It must
read exactly what the whole listing reads, see every hand-made change the whole listing sees, and
not hold libnftables' per-element transient."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from nftlab import FULL, SEG, nft_in, seed_table, three_table

from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.dataplane.drift import (
    ELEMENTS_EXTRA,
    ELEMENTS_MISSING,
    SET_DECLARATION,
    read_drift,
)
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import plain, read_table, table_exists
from peerwall.nft.listing import parse_table
from peerwall.nft.objects import NftSet, Ruleset, render_replace

pytestmark = pytest.mark.lab

BACKENDS = names.peer_set("C2", SetKind.BACKENDS)


def with_addresses(table: Ruleset, name: str, n: int, first: int = 0x0AF40000) -> Ruleset:
    """``table`` with ``n`` addresses in its set ``name``."""
    addresses = frozenset(IPv4Address(first + i) for i in range(n))
    return replace(
        table,
        sets=tuple(replace(s, elements=addresses) if s.name == name else s for s in table.sets),
    )


def whole_listing(nft: LibNft) -> Ruleset:
    """The table as the whole JSON listing reads it (the read-back before the parts)."""
    return parse_table(nft.list_json("list table inet peerwall"), "inet", "peerwall")


@pytest.mark.parametrize(
    "table",
    [
        with_addresses(seed_table(), BACKENDS, 5000),
        with_addresses(three_table(mode=FULL), BACKENDS, 300),  # CIDRs in interval sets
        three_table(mode=SEG),
    ],
    ids=["seed-5000", "three-full", "three-seg"],
)
def test_the_parts_read_exactly_what_the_whole_listing_reads(nft: LibNft, table: Ruleset) -> None:
    nft.run(render_replace(table))
    parts = read_table(nft, "inet", "peerwall")
    assert parts is not None
    assert parts == whole_listing(nft)
    assert {s.name: s for s in parts.sets} == {s.name: s for s in table.sets}
    assert {m.name: m for m in parts.maps} == {m.name: m for m in table.maps}
    # Plain sets are read over netlink, interval sets (FullPodToPod's CIDRs) by their listing.
    assert any(plain(s) and s.elements for s in parts.sets)


def test_a_set_equal_to_the_desired_one_shares_its_elements(nft: LibNft) -> None:
    table = with_addresses(seed_table(), BACKENDS, 2000)
    nft.run(render_replace(table))
    live = read_table(nft, "inet", "peerwall", table)
    assert live is not None and live.set(BACKENDS).elements is table.set(BACKENDS).elements
    assert live == whole_listing(nft)


def test_elements_changed_by_hand_are_drift_of_the_set_they_are_in(nft: LibNft, netns: str) -> None:
    table = with_addresses(seed_table(), BACKENDS, 3000)
    nft.run(render_replace(table))
    assert read_drift(nft, table)[1] == []
    nft_in(netns, "delete", "element", "inet", "peerwall", BACKENDS, "{ 10.244.0.7 }")
    nft_in(netns, "add", "element", "inet", "peerwall", BACKENDS, "{ 10.99.0.1 }")
    live, found = read_drift(nft, table)
    assert [(d.kind, d.object, d.detail) for d in found] == [
        (ELEMENTS_MISSING, f"set {BACKENDS}", "10.244.0.7"),
        (ELEMENTS_EXTRA, f"set {BACKENDS}", "10.99.0.1"),
    ]
    assert live == whole_listing(nft)
    # The same count, one swapped: not mistaken for the desired set.
    nft_in(netns, "add", "element", "inet", "peerwall", BACKENDS, "{ 10.244.0.7 }")
    nft_in(netns, "delete", "element", "inet", "peerwall", BACKENDS, "{ 10.244.0.8 }")
    _, found = read_drift(nft, table)
    assert {(d.kind, d.detail) for d in found} == {
        (ELEMENTS_MISSING, "10.244.0.8"),
        (ELEMENTS_EXTRA, "10.99.0.1"),
    }


def test_an_element_with_a_comment_reads_as_its_address_as_in_the_whole_listing(
    nft: LibNft, netns: str
) -> None:
    table = with_addresses(seed_table(), BACKENDS, 10)
    nft.run(render_replace(table))
    nft_in(netns, "add", "element", "inet", "peerwall", BACKENDS, '{ 10.99.0.1 comment "x" }')
    live, found = read_drift(nft, table)
    assert [(d.kind, d.object, d.detail) for d in found] == [
        (ELEMENTS_EXTRA, f"set {BACKENDS}", "10.99.0.1")
    ]
    assert live == whole_listing(nft)


def test_a_catch_all_element_makes_the_set_unreadable_as_in_the_whole_listing(
    nft: LibNft, netns: str
) -> None:
    table = with_addresses(seed_table(), BACKENDS, 10)
    nft.run(render_replace(table))
    nft_in(netns, "add", "element", "inet", "peerwall", BACKENDS, "{ * }")
    live, found = read_drift(nft, table)
    assert live is not None and live.set(BACKENDS).type == "unreadable ipv4_addr"
    # A set whose elements cannot be told: its declaration differs, none of its elements read.
    assert [(d.kind, d.object) for d in found] == [
        (SET_DECLARATION, f"set {BACKENDS}"),
        (ELEMENTS_MISSING, f"set {BACKENDS}"),
    ]
    assert live == whole_listing(nft)


def test_a_set_redeclared_by_hand_is_read_by_its_declaration(nft: LibNft, netns: str) -> None:
    """A plain set turned into an interval set (same name) is read as one, and is drift."""
    table = seed_table()
    nft.run(render_replace(table))
    nft_in(netns, "flush", "chain", "inet", "peerwall", names.peer_chain("C2"))
    nft_in(netns, "delete", "set", "inet", "peerwall", BACKENDS)
    nft_in(netns, "add", "set", "inet", "peerwall", BACKENDS, "{ type ipv4_addr; flags interval; }")
    nft_in(netns, "add", "element", "inet", "peerwall", BACKENDS, "{ 10.9.0.0/16 }")
    live, found = read_drift(nft, table)
    assert live is not None and live.set(BACKENDS) == NftSet(
        BACKENDS, flags=("interval",), elements=frozenset({IPv4Network("10.9.0.0/16")})
    )
    assert SET_DECLARATION in {d.kind for d in found}
    assert live == whole_listing(nft)


class CommitsDuringTheRead:
    """``LibNft``, but someone commits by hand while the first set's elements are read."""

    def __init__(self, nft: LibNft, netns: str) -> None:
        self.inner, self.netns, self.shapes = nft, netns, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_json_terse(self, command: str) -> dict[str, Any]:
        self.shapes += 1
        return self.inner.list_json_terse(command)

    def set_addresses(self, family: str, table: str, name: str) -> Any:
        if self.shapes == 1:
            nft_in(self.netns, "add", "element", "inet", "peerwall", BACKENDS, "{ 10.99.0.9 }")
        return self.inner.set_addresses(family, table, name)


def test_a_commit_during_the_read_makes_it_read_again(nft: LibNft, netns: str) -> None:
    table = with_addresses(seed_table(), BACKENDS, 100)
    nft.run(render_replace(table))
    racing = CommitsDuringTheRead(nft, netns)
    live = read_table(racing, "inet", "peerwall", table)
    assert racing.shapes == 2
    assert live == whole_listing(nft)
    assert IPv4Address("10.99.0.9") in live.set(BACKENDS).elements


PEAK = textwrap.dedent(
    """
    import json, sys
    from peerwall.dataplane.nft import LibNft
    from peerwall.dataplane.readback import read_table, table_exists
    from peerwall.nft.listing import parse_table

    def hwm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))

    nft = LibNft(sys.argv[1])
    before = hwm()
    if sys.argv[2] == "exists":
        assert table_exists(nft, "inet", "peerwall") and not table_exists(nft, "inet", "x")
        live = None
    elif sys.argv[2] == "parts":
        live = read_table(nft, "inet", "peerwall")
    else:
        live = parse_table(nft.list_json("list table inet peerwall"), "inet", "peerwall")
    elements = 0 if live is None else sum(len(s.elements) for s in live.sets)
    print(json.dumps({"rise_kib": hwm() - before, "elements": elements}))
    """
)


def test_the_read_back_and_table_exists_do_not_hold_libnftables_per_element_transient(
    nft: LibNft, netns: str
) -> None:
    """100,000 elements: the whole listing's peak rises by ~0.6 KiB an element in libnftables
    (the control: the measurement sees it); the parts' by what Python keeps of them (the
    frozenset read, no ``like`` given here)."""
    n = 100_000
    table = with_addresses(seed_table(), BACKENDS, n, first=0x0B000000)
    nft.run(render_replace(table))

    def rise(how: str) -> dict[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", PEAK, netns, how], capture_output=True, text=True, check=True
        )
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    parts, whole, exists = rise("parts"), rise("whole"), rise("exists")
    assert parts["elements"] == whole["elements"] >= n
    assert whole["rise_kib"] > 40 * 1024
    assert parts["rise_kib"] < 20 * 1024
    # Whether the table exists: asked over netlink (``list tables`` would fetch every element).
    assert exists["rise_kib"] < 4 * 1024


def test_another_table_with_flags_does_not_spoil_the_read(nft: LibNft, netns: str) -> None:
    """``list ruleset`` prints every table of the family, and is not asked of libnftables when
    one has flags (``errors.FlaggedTable``): then the table is read by its own listing."""
    table = with_addresses(seed_table(), BACKENDS, 100)
    nft.run(render_replace(table))
    nft_in(netns, "add", "table", "inet", "other", "{ flags dormant; }")
    live, found = read_drift(nft, table)
    assert found == [] and live == whole_listing(nft)


def test_table_exists_over_netlink_as_the_listing_says(nft: LibNft, netns: str) -> None:
    assert not table_exists(nft, "inet", "peerwall")
    nft_in(netns, "add", "table", "inet", "peerwall")
    nft_in(netns, "add", "table", "ip", "other")
    assert table_exists(nft, "inet", "peerwall") and table_exists(nft, "ip", "other")
    assert not table_exists(nft, "ip", "peerwall") and not table_exists(nft, "inet", "other")
    assert sorted(name for _, name in nft.table_flags("inet")) == ["peerwall"]
