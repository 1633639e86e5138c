"""The desired state's bookkeeping against a plain model: whatever the order of contributions and
withdrawals (overlapping addresses, several keys per set, whole and partial withdrawals), each set
holds the union of what its live contributions hold, and the changes taken are exactly the
difference between two takes (netted: what came and went between them is not there)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from peerwall.agent.desired import _AS_INT, DesiredState, _ints
from peerwall.compile.state import PeerState, SetKind
from peerwall.model.spec import SecurityMode

PEERS = ("A", "B")
KINDS = (SetKind.OFFLOADED, SetKind.BACKENDS)
SetKey = tuple[str, SetKind]


def peer(name: str) -> PeerState:
    return PeerState(name, f"t-{name}", SecurityMode.FULL_POD_TO_POD, (), ())


def union(model: dict[str, dict[SetKey, set[int]]]) -> dict[SetKey, set[int]]:
    out: dict[SetKey, set[int]] = {(p, k): set() for p in PEERS for k in KINDS}
    for sets in model.values():
        for sk, addresses in sets.items():
            out[sk] |= addresses
    return out


@pytest.mark.parametrize("seed", range(20))
def test_sets_are_the_union_of_live_contributions_and_changes_the_difference(seed: int) -> None:
    rnd = random.Random(seed)
    d = DesiredState("here", "t-*", None)
    for name in PEERS:
        d.upsert_peer(peer(name))
    d.take_changes()  # the peers are declared: from here on, element changes
    model: dict[str, dict[SetKey, set[int]]] = {}
    before = union(model)
    at_take = set(PEERS)
    gone: set[str] = set()
    """Peers removed since the last take (their elements leave with them, and come back with
    their declaration, not as element changes)."""
    pool = [int(IPv4Address("10.244.0.0")) + i for i in range(12)]  # few: addresses overlap
    for step in range(300):
        key = f"k{rnd.randrange(8)}"
        action = rnd.random()
        if action < 0.55:
            sk = (rnd.choice(PEERS), rnd.choice(KINDS))
            addresses = set(rnd.sample(pool, rnd.randint(0, 4)))
            given = [a if rnd.random() < 0.5 else IPv4Address(a) for a in addresses]
            if rnd.random() < 0.5:
                # One tuple for several sets, as a source hands a slice's addresses to each
                # peer: the same object again must mean the same addresses, and no other.
                same = tuple(given)
                for other in rnd.sample([(p, k) for p in PEERS for k in KINDS], 2):
                    d.contribute(key, other[0], other[1], same)
                    model.setdefault(key, {})[other] = set(addresses)
            d.contribute(key, sk[0], sk[1], given if rnd.random() < 0.5 else tuple(given))
            model.setdefault(key, {})[sk] = addresses
        elif action < 0.65 and model.get(key):
            # The key's new addresses, one tuple handed to every set it holds (a slice reflected
            # to several peers gains or loses an endpoint): each set held the same tuple before.
            addresses = set(rnd.sample(pool, rnd.randint(1, 4)))
            same = tuple(IPv4Address(a) for a in addresses)
            for held in list(model[key]):
                d.contribute(key, held[0], held[1], same)
                model[key][held] = set(addresses)
        elif action < 0.67:
            # A peer removed, or declared again: not element changes.
            name = rnd.choice(PEERS)
            if d.declares(name):
                d.remove_peer(name)
            else:
                d.upsert_peer(peer(name))
            gone.add(name)
        elif action < 0.85:
            d.withdraw(key)
            model.pop(key, None)
        else:
            who, kind = rnd.choice(PEERS), rnd.choice(KINDS)
            d.withdraw(key, who, kind)
            model.get(key, {}).pop((who, kind), None)
        now = union(model)
        live = {sk: {int(a) for a in held} for sk, held in d.contributions(key).items()}
        assert live == {sk: a for sk, a in model.get(key, {}).items() if a}, step
        if rnd.random() < 0.2:  # reading members settles what was kept for later: now and then
            for (p, k), want in now.items():
                assert {int(a) for a in d.members(p, k)} == want, step
        if rnd.random() < 0.3:
            changes = d.take_changes()
            kept = [sk for sk in now if sk[0] not in gone and d.declares(sk[0])]
            added = {sk: now[sk] - before[sk] for sk in kept if now[sk] - before[sk]}
            deleted = {sk: before[sk] - now[sk] for sk in kept if before[sk] - now[sk]}
            assert changes.added == added, step
            assert changes.deleted == deleted, step
            # A peer declared again comes whole, with its members as they are now.
            for name, declared in changes.peers.items():
                for k in KINDS:
                    assert {int(a) for a in declared.addresses(k)} == now[(name, k)], step
            assert changes.peers.keys() == {n for n in gone if d.declares(n)}, step
            assert changes.removed == gone & at_take, step
            assert d.pending_since is None
            before = now
            gone = set()
            at_take = {n for n in PEERS if d.declares(n)}


def test_an_address_is_read_as_an_int_where_ipaddress_keeps_it() -> None:
    """``desired`` reads an ``IPv4Address``'s int from ``ipaddress``'s own attribute (in C, not
    through ``__int__``): it must be the address's int, whatever the Python."""
    for value in (0, 1, int(IPv4Address("10.244.3.7")), 2**32 - 1):
        assert _AS_INT(IPv4Address(value)) == value == int(IPv4Address(value))
        assert _ints((IPv4Address(value), value)) == {value}  # addresses and ints mixed


def test_an_object_changed_many_times_between_takes_is_diffed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An EndpointSlice that changes in a burst is diffed against what it held once per take,
    with its last addresses, not once per change (``DesiredState._later``); a new object's
    addresses are applied at once (a source listing a cluster does not keep them all)."""
    diffs: list[str] = []
    replace = DesiredState._replace

    def counted(self: DesiredState, key: str, *rest: object) -> None:
        diffs.append(key)
        replace(self, key, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(DesiredState, "_replace", counted)
    d = DesiredState("here", "t-*", None)
    for name in PEERS:
        d.upsert_peer(peer(name))
    base = int(IPv4Address("10.244.0.0"))
    d.contribute("slice", "A", SetKind.BACKENDS, tuple(range(base, base + 3)))
    d.take_changes()
    diffs.clear()
    for n in range(4, 50):  # the slice grows, one endpoint at a time, for both peers
        given = tuple(IPv4Address(a) for a in range(base, base + n))
        d.contribute("slice", "A", SetKind.BACKENDS, given)
        d.contribute("slice", "B", SetKind.BACKENDS, given)
    d.contribute("gone", "A", SetKind.BACKENDS, (base + 100, base + 101))
    d.withdraw("gone")
    assert d.contributions("slice")[("A", SetKind.BACKENDS)] == frozenset(given)
    assert diffs == ["gone"]  # a new object's applied at once; the slice's changes not yet
    changes = d.take_changes()
    assert diffs == ["gone", "slice", "slice"]  # the slice once per set, at the take
    assert changes.added == {
        ("A", SetKind.BACKENDS): set(range(base + 3, base + 49)),
        ("B", SetKind.BACKENDS): set(range(base, base + 49)),
    }
    assert changes.deleted == {}
