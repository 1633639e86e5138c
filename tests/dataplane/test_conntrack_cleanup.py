"""The flow cleanup's fast path (issue 18.3: a full table cleaned in well under 2 s).

``Conntrack.delete_where`` asks its ``reason`` once per kind of entry and reads the others of that
kind at fixed offsets: entries alike in all a verdict may read share the first one's answer. These
tests fill a real namespace's table with entries that differ in one such field only, many of each
(so that most are answered from the remembered verdicts), and check that exactly the ones named
went: a key that left the field out would give both groups one answer. Entries in a zone are
deleted with their zone, and entries that vanish between the dump and the deletion are not
counted."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from ctfill import fill
from peerwall.compile.flows import Flow
from peerwall.dataplane.conntrack import Conntrack

pytestmark = pytest.mark.lab
N = 1500  # more than one datagram of deletions (SEND_BATCH)
SRC, DST = IPv4Address("10.50.1.1"), IPv4Address("10.244.0.1")
OTHER = IPv4Address("10.244.0.2")
FULL_MASK = 0xFFFF_FFFF
SNAT = IPv4Address("10.60.0.9")

# (what differs, the doomed group's fill arguments, the kept group's, what tells them apart)
CASES: dict[str, tuple[dict[str, object], dict[str, object], Callable[[Flow], object]]] = {
    # (the replies alike: the same address after NAT)
    "orig.src": (
        {"src": SRC, "reply_dst": SNAT},
        {"src": IPv4Address("10.51.1.1"), "reply_dst": SNAT},
        lambda f: f.orig.src,
    ),
    "orig.dst": (
        {"dst": DST, "reply_src": DST},
        {"dst": OTHER, "reply_src": DST},
        lambda f: f.orig.dst,
    ),
    "orig.dport": ({"dport": 53}, {"dport": 54}, lambda f: f.orig.dport),
    "reply.src (DNAT)": ({"reply_src": DST}, {"reply_src": OTHER}, lambda f: f.reply.src),
    "reply.dst (SNAT)": (
        {"reply_dst": IPv4Address("10.60.0.1")},
        {"reply_dst": IPv4Address("10.60.0.2")},
        lambda f: f.reply.dst,
    ),
    "reply.sport": ({"reply_sport": 53}, {"reply_sport": 8053}, lambda f: f.reply.sport),
    "mark": ({"mark": 0}, {"mark": 3}, lambda f: f.mark),
}


@pytest.mark.parametrize("by_mark", [False, True], ids=["one dump", "dumps by mark"])
@pytest.mark.parametrize("field", CASES)
def test_entries_that_differ_only_in_what_a_verdict_reads_are_judged_apart(
    netns: str, field: str, by_mark: bool
) -> None:
    """Without ``marks`` the whole mark is part of what is remembered; with ``marks`` the
    kernel's filter tells it (one dump per mark)."""
    doomed, kept, read = CASES[field]
    base: dict[str, object] = {"src": SRC, "dst": DST}
    assert fill(netns, N, **(base | doomed)) == N  # type: ignore[arg-type]
    assert fill(netns, N, first=N, **(base | kept)) == N  # type: ignore[arg-type]
    with Conntrack(netns) as table:
        want = read(next(e.flow for e in table.entries() if e.flow.orig.sport == 1024))
        asked: list[Flow] = []

        def reason(flow: Flow) -> str | None:
            asked.append(flow)
            return "doomed" if read(flow) == want else None

        marks = [(0, FULL_MASK), (3, FULL_MASK)] if by_mark else None
        cleared = table.delete_where(reason, None, marks)
        left = table.entries()
    assert cleared.count == N
    assert len(left) == N and all(read(e.flow) != want for e in left), field
    assert len(asked) < 20, "judged once per kind of entry, not once per entry"
    assert len(cleared.sample) == 20 and all(read(f) == want for f, _ in cleared.sample)
    # The sample's flows are whole: what no verdict here reads, read right too.
    listed = {e.flow for e in left}
    for flow, _ in cleared.sample:
        assert flow.proto == "udp" and flow not in listed
        assert 1024 <= flow.orig.sport < 1024 + N and flow.reply.dport == flow.orig.sport


def test_entries_in_a_zone_go_with_their_zone(netns: str) -> None:
    """The same tuples in the default zone and in zone 7: a delete request without the zone
    would delete the default zone's entry (or none), never the zoned one."""
    assert fill(netns, N, SRC, DST) == N
    assert fill(netns, N, SRC, DST, zone=7) == N
    assert fill(netns, N, SRC, OTHER, first=N, zone=7) == N  # kept
    with Conntrack(netns) as table:
        cleared = table.delete_where(lambda f: "doomed" if f.orig.dst == DST else None)
        left = table.entries()
    assert cleared.count == 2 * N
    assert len(left) == N and {e.flow.orig.dst for e in left} == {OTHER}
    assert {e.zone for e in left} == {b"\x00\x07"}


def test_entries_gone_before_their_deletion_are_not_counted(netns: str) -> None:
    """Two dumps (two marks); while the second is judged, every entry the first one doomed is
    deleted by someone else: the cleanup counts only what it deleted, and its sample holds
    none of the others."""
    first, second = 0x10000, 0x20000
    assert fill(netns, N, SRC, DST, mark=first) == N
    assert fill(netns, N, SRC, OTHER, first=N, mark=second) == N
    with Conntrack(netns) as table, Conntrack(netns) as other:
        early = [e for e in table.entries() if e.flow.mark == first]
        assert len(early) == N

        def reason(flow: Flow) -> str:
            if flow.mark == second and early:
                for entry in early:
                    assert other.delete(entry)
                early.clear()
            return "doomed"

        cleared = table.delete_where(reason, None, [(first, FULL_MASK), (second, FULL_MASK)])
        assert table.entries() == []
    assert cleared.count == N
    assert all(f.mark == second for f, _ in cleared.sample)
