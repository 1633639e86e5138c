"""The flow cleanup's fast path (issue 18.3: a full table cleaned in well under 2 s).

``Conntrack.delete_where`` asks its ``reason`` once per kind of entry and reads the others of that
kind at fixed offsets: entries alike in all a verdict may read share the first one's answer. These
tests fill a real namespace's table with entries that differ in one such field only, many of each
(so that most are answered from the remembered verdicts), and check that exactly the ones named
went: a key that left the field out would give both groups one answer. Entries in a zone are
deleted with their zone, and entries that vanish between the dump and the deletion are not
counted. A table where every entry is its own kind, judged from integers through
``compile.flows.Verdicts``, loses exactly the entries ``stale`` names."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from ipaddress import IPv4Address

import pytest

from ctfill import fill
from peerwall.compile import ctmark
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import Flow, Verdicts, stale
from peerwall.compile.state import CONNCHECK_PORT, GatewayState
from peerwall.dataplane.conntrack import SAMPLE, Conntrack
from peerwall.model import SecurityMode, load_topology

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


# Every entry its own kind (what a hostile peer can make: connections to many distinct pods or
# ports), judged from integers through ``compile.flows.Verdicts``: the same entries must go as
# with ``stale`` asked of each decoded ``Flow``, with ``stale``'s reasons. C1's state in the
# three-cluster example under segregation: C3 may reach its two backends; C1 remaps for C2
# (C2 reaches 10.244.0.0/16 as 10.1.0.0/16).
C3_POD, C2_POD, LOCAL = IPv4Address("10.50.1.1"), IPv4Address("10.0.0.7"), IPv4Address("10.244.0.5")
BACKEND, DENIED = IPv4Address("10.244.0.1"), IPv4Address("10.244.16.0")
REMAPPED = IPv4Address("10.1.0.1")  # C2's view of BACKEND


def c1_segregated() -> GatewayState:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )


def distinct_groups() -> list[tuple[int, dict[str, object]]]:
    """(count, fill arguments) of each group; each entry of a group its own kind."""
    c2, c3 = ctmark.from_peer("C2"), ctmark.from_peer("C3")
    n = N
    return [
        # C3's connections to distinct denied destinations (Liqo's bits on some): doomed
        (n, {"mark": c3, "each": lambda i: (C3_POD, DENIED + i, 53)}),
        (n, {"mark": c3 | 2, "each": lambda i: (C3_POD, DENIED + i, 54)}),
        # from distinct sources to its backends: kept
        (n, {"mark": c3, "each": lambda i: (C3_POD + i, BACKEND + i % 2, 53)}),
        # to distinct destinations on the gateways' connection check port: kept
        (n, {"mark": c3, "each": lambda i: (C3_POD, DENIED + i, CONNCHECK_PORT)}),
        # unmarked, from C3's pods to distinct denied destinations: doomed after a full replace
        (n, {"each": lambda i: (C3_POD, DENIED + i, 55)}),
        # C2's, through the remapped view: the binding the rules make (kept), another (doomed)
        (n, {"mark": c2, "reply_src": BACKEND, "each": lambda i: (C2_POD + i, REMAPPED, 80)}),
        (n, {"mark": c2, "reply_src": DENIED, "each": lambda i: (C2_POD + i, REMAPPED, 81)}),
        # ours towards C2's pods: the source NAT the rules make (kept), another (doomed)
        (n, {"mark": ctmark.to_peer("C2"), "reply_dst": IPv4Address("10.1.0.5"),
             "each": lambda i: (LOCAL, C2_POD + i, 443)}),
        (n, {"mark": ctmark.to_peer("C2"), "reply_dst": LOCAL,
             "each": lambda i: (LOCAL, C2_POD + i, 444)}),
        # Liqo's NodePort connections: never stale
        (n, {"mark": 3, "each": lambda i: (C3_POD, DENIED + i, 56)}),
    ]  # fmt: skip


@pytest.mark.parametrize("by_mark", [False, True], ids=["one dump", "dumps by mark"])
def test_entries_each_its_own_kind_are_judged_as_stale_judges_them(
    netns: str, by_mark: bool
) -> None:
    state = c1_segregated()
    about = {net for peer in state.peers.values() for net in peer.valid_sources}
    marks = None
    if by_mark:  # as ``Enforcer.clear_flows`` asks after a whole-table replace
        marks = {(ctmark.from_peer(p), ctmark.OURS) for p in state.peers}
        marks |= {(ctmark.to_peer("C2"), ctmark.OURS), (0, FULL_MASK)}

    def filled() -> int:
        made = 0
        for first, (count, args) in enumerate(distinct_groups()):
            made += fill(netns, count, C3_POD, DENIED, first=first * count, **args)  # type: ignore[arg-type]
        return made

    def by_stale(flow: Flow) -> str | None:
        return stale(state, flow)

    results = []
    for reason in (by_stale, Verdicts(state)):
        assert filled() == 10 * N
        with Conntrack(netns) as table:
            before = {e.flow for e in table.entries()}
            cleared = table.delete_where(reason, about, marks)
            left = {e.flow for e in table.entries()}
            table.delete_where(lambda _: "emptied for the next run")
        assert len(before) == 10 * N and cleared.count == len(before - left)
        assert all(why == stale(state, flow) for flow, why in cleared.sample)
        results.append((cleared.count, left, [why for _, why in cleared.sample]))
    (count, left, whys), (fast_count, fast_left, fast_whys) = results
    assert count == 5 * N  # the groups said doomed above
    assert (fast_count, fast_left) == (count, left)
    assert len(whys) == len(fast_whys) == SAMPLE
