"""The desired state of one gateway, maintained event by event.

Sources of state (a topology file, the Kubernetes API) do not rebuild the whole state on every
event: each object they watch *contributes* addresses to per-peer sets under a key of its own
(``pod/ns/name``, ``endpointslice/ns/name``). An index from key to contributions, and a reference
count per address, make every event cost what it touches, whatever the size of the sets: an
address stays in a set while any object still contributes it (a pod backing two services
reflected to the same peer), and leaves with the last one.

``take_changes`` hands the accumulated, netted changes to the agent, which turns them into one
nftables transaction; a burst of events that cancel out costs nothing. An object that changes
several times between two takes (an EndpointSlice during a rollout) is diffed against what it
held once, at the take, with its last addresses (``_later``).

Addresses are kept as ints (32-bit), not ``IPv4Address`` objects: an ``IPv4Address`` hashes in
Python (``hash(hex(...))``, ~1 us, several times per event in these dicts and sets) and costs
56 bytes more per address and reference; an int hashes in C. They become ``IPv4Address`` again
only where the state is read whole (``members``, ``snapshot``) or by key (``contributions``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, KeysView, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from ipaddress import IPv4Address
from operator import attrgetter
from typing import cast

from peerwall.compile.changes import Changes, SetKey
from peerwall.compile.state import FlowLog, GatewayState, PeerState, SetKind


class AddressView(AbstractSet[IPv4Address]):
    """A live, read-only view of a set of addresses kept as ints, answering for
    ``IPv4Address``es (``DesiredState.peer_view``)."""

    __slots__ = ("_keys",)

    def __init__(self, keys: KeysView[int]) -> None:
        self._keys = keys

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and int(address) in self._keys

    def __iter__(self) -> Iterator[IPv4Address]:
        return map(IPv4Address, self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _Set:
    """One per-peer set: its members' reference counts, and its changes not yet taken.

    Each object's contribution points at the ``_Set`` itself (not at its key), so an event reaches
    the counts and the pending changes of its set without one more lookup by (peer, kind): an
    event is a handful of dict and set operations (issue 21, churn)."""

    __slots__ = ("added", "count", "deleted", "dirty", "key", "noted")

    def __init__(self, key: SetKey, noted: bool) -> None:
        self.key = key
        self.count: dict[int, int] = {}
        """Address -> how many objects contribute it; never replaced, only emptied (the views
        of ``peer_view`` stay live)."""
        self.added: set[int] = set()
        self.deleted: set[int] = set()
        """Members gained and lost since the last take, netted."""
        self.noted = noted
        """Whether its changes are element changes: its peer is declared and was already at the
        last take (a new peer's elements come with its declaration, a removed peer's go with it)."""
        self.dirty = False
        """Whether it is in ``DesiredState._dirty`` (its changes to hand over at the next take)."""


Addresses = tuple[int, ...] | frozenset[int]
"""One object's contribution to one set: a tuple (one address: a pod), or a frozenset (several:
an EndpointSlice's, diffed against its next one set against set, in C: ``DesiredState._replace``;
a 4-address frozenset is 144 bytes more than a tuple, and there is one per slice and peer)."""
Held = tuple[_Set, Addresses] | dict[_Set, Addresses]
"""What one object contributes (``DesiredState._by_key``)."""
Later = tuple[IPv4Address | int, ...] | frozenset[IPv4Address | int]
"""A replacement of an object's contribution, as given (``DesiredState._later``)."""

_AS_INT = attrgetter("_ip")
"""An ``IPv4Address``'s int, read in C: ``int(address)`` calls the class's ``__int__`` in Python
(~75 ns against ~8 ns), once per address of every event. ``_ip`` is where ``ipaddress`` has kept
it since Python 3.3 (``tests/agent/test_desired.py`` checks it)."""
_IMMUTABLE = (tuple, frozenset)
_COLLECTIONS = (tuple, frozenset, list, set)
"""Containers that can be read twice (``_ints`` falls back to ``int`` for a mix of ints and
addresses)."""


def _ints(addresses: Iterable[IPv4Address | int]) -> frozenset[int]:
    """``addresses`` as ints."""
    if type(addresses) in _COLLECTIONS:
        try:
            return frozenset(map(_AS_INT, addresses))
        except AttributeError:  # ints among them
            pass
    return frozenset(map(int, addresses))  # an int is its own int, at C speed


class DesiredState:
    """A ``GatewayState`` kept up to date by contributions, with the changes since last taken."""

    def __init__(self, cluster: str, tunnel_pattern: str, conncheck_port: int | None) -> None:
        self.cluster = cluster
        self.tunnel_pattern = tunnel_pattern
        self.conncheck_port = conncheck_port
        self._peers: dict[str, PeerState] = {}
        """Declarations without members; members live in ``_sets``."""
        self._by_key: dict[str, Held] = {}
        """Object key -> what the object contributes: (set, addresses) when it contributes to
        one set (a pod: the usual case), a dict set -> addresses when to several (``Addresses``:
        a pod's one address in a tuple). Tuples, and
        one shared ``_Set`` per set: the Kubernetes source holds one contribution per pod,
        and a dict per object (224 bytes) holding a one-address frozenset (216) cost 8 times
        this (issue 21: memory per enforced address). Keyed by the object alone, so that a
        deleted object's contributions are one lookup, not one per set (issue 21: churn)."""
        self._last_given: object = None
        self._last_ints: frozenset[int] = frozenset()
        """The last immutable collection of several addresses contributed, and as ints (the
        frozenset its contributions hold): a source hands an EndpointSlice's addresses to each
        peer it is reflected to, the same object each time (``kube.contribution.replace``); the
        next peer's contribution is then neither converted again nor held in a set of its own.
        Held by reference: the object cannot change, nor be freed and its identity reused."""
        self._last_diff: tuple[object, object, Iterable[int], Iterable[int]] = (
            (),
            frozenset(),
            (),
            (),
        )
        """(held, new, came, went) of the last change of a contribution whose new addresses are
        ``_last_ints``: the slice's next peer held the same set, and changes the same way."""
        self._sets: dict[SetKey, _Set] = {}
        """Every set contributed to (or viewed), by (peer, kind)."""
        self._later: dict[str, dict[_Set, Later]] = {}
        """Replacements of an object's contributions not applied yet: object key -> set -> the
        addresses last given (an immutable collection, kept as given). An EndpointSlice changes
        several times in a burst (an endpoint added, then ready, a terminating one gone, for
        each pod a rollout replaces); each change is a diff of its addresses against those it
        holds, the costliest event here. Kept until the state is next read (``_settle``: at
        the agent's next take), only the last of them is diffed (issue 21, churn)."""
        self._dirty: list[_Set] = []
        """The sets with changes since the last take (``_Set.dirty``)."""
        self._changes = Changes()
        """Peers declared and removed since the last take; element changes are in ``_sets``."""
        self._new_peers: set[str] = set()
        self._views: dict[str, PeerState] = {}
        """``peer_view``'s answers, kept until the peer's declaration changes."""
        self.pending_since: float | None = None
        """``time.perf_counter()`` of the oldest change not yet taken (event-to-kernel latency)."""
        self.flow_log: FlowLog | None = FlowLog()
        """How drops are reported (None: not at all); part of every snapshot."""

    def _pending(self) -> None:
        if self.pending_since is None:
            self.pending_since = time.perf_counter()

    def _touched(self, s: _Set) -> None:
        """``s`` has element changes to hand over at the next take (``_pending`` written out:
        this runs for most events, and a second call costs ~8% of a pod event here)."""
        if not s.dirty:
            s.dirty = True
            self._dirty.append(s)
        if self.pending_since is None:
            self.pending_since = time.perf_counter()

    def _set(self, peer: str, kind: SetKind) -> _Set:
        """The set ``(peer, kind)``, made on first use."""
        s = self._sets.get((peer, kind))
        if s is None:
            noted = peer in self._peers and peer not in self._new_peers
            s = self._sets[(peer, kind)] = _Set((peer, kind), noted)
        return s

    def _note(self, peer: str, noted: bool) -> None:
        """Whether ``peer``'s element changes are noted from now on; not: its pending ones go."""
        for kind in SetKind:
            s = self._sets.get((peer, kind))
            if s is not None:
                s.noted = noted
                if not noted:
                    s.added.clear()
                    s.deleted.clear()

    # --- peers -------------------------------------------------------------------------------

    def upsert_peer(self, peer: PeerState) -> None:
        """Declare or update a peer; its ``members`` are ignored (they come from contributions)."""
        bare = replace(peer, members={})
        if self._peers.get(peer.name) == bare:
            return
        self._settle()  # the replacements kept were given while the peer was as it was
        if peer.name not in self._peers:
            self._new_peers.add(peer.name)
            self._note(peer.name, False)  # its elements come with its declaration
        self._peers[peer.name] = bare
        self._views.pop(peer.name, None)
        self._changes.peers[peer.name] = bare
        self._pending()

    def remove_peer(self, name: str) -> None:
        """Forget a peer; contributions to its sets are kept, should it come back."""
        if name not in self._peers:
            return
        self._settle()
        del self._peers[name]
        self._views.pop(name, None)
        self._changes.peers.pop(name, None)
        if name in self._new_peers:
            self._new_peers.discard(name)  # came and went between two takes: nothing to do
        else:
            self._changes.removed.add(name)
            self._pending()
        self._note(name, False)  # its elements go with it

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def declares(self, name: str) -> bool:
        return name in self._peers

    # --- contributions -----------------------------------------------------------------------

    # The event path: a pod created or deleted is one address (written out below: its count,
    # and its netting into the set's pending changes); an EndpointSlice's change is kept as
    # given (``_later``), and diffed against what it held once per take, however many times it
    # changed meanwhile (``_replace``, ``_more``, ``_less``).

    def contribute(
        self, key: str, peer: str, kind: SetKind, addresses: Iterable[IPv4Address | int]
    ) -> None:
        """Object ``key`` now contributes exactly ``addresses`` to ``peer``'s ``kind`` set."""
        s = self._sets.get((peer, kind))
        if s is None:
            s = self._set(peer, kind)
        by_key = self._by_key
        if type(addresses) is tuple and len(addresses) == 1 and key not in by_key:
            # A new object with one address (a pod created: the usual event), written out. (An
            # object with replacements kept for later, ``_later``, is in ``_by_key``: only a
            # change of what an object contributes waits.)
            a = addresses[0]
            if type(a) is not int:
                a = a._ip if isinstance(a, IPv4Address) else int(a)  # type: ignore[attr-defined]
            by_key[key] = (s, (a,))
            count = s.count
            n = count.get(a, 0)
            count[a] = n + 1
            if n or not s.noted:
                return  # already a member; or not an element change
            if a in s.deleted:
                s.deleted.discard(a)  # deleted, then back between two takes
            else:
                s.added.add(a)
            self._touched(s)
            return
        if type(addresses) in _IMMUTABLE and len(addresses) > 1 and key in by_key:  # type: ignore[arg-type]
            # A change of what an object contributes (an EndpointSlice's addresses): kept as
            # given, diffed when the state is next read (``_settle``). Not a new object's, nor
            # one address: applied at once, their cost does not grow with a burst, and a source
            # listing a cluster would keep every pod's addresses (objects, not ints) meanwhile
            # (200,000 pods: ~110 MiB more at start, which the allocator kept).
            later = self._later
            held_later = later.get(key)
            if held_later is None:
                later[key] = {s: cast(Later, addresses)}
            else:
                held_later[s] = cast(Later, addresses)
            if self.pending_since is None:
                self.pending_since = time.perf_counter()
            return
        if key in self._later:
            self._settle_key(key)
        self._replace(key, s, addresses)

    def _replace(self, key: str, s: _Set, addresses: Iterable[IPv4Address | int]) -> None:
        """``contribute``'s general case: object ``key`` now contributes exactly ``addresses``
        to ``s``; what came and what went are counted and netted."""
        by_key = self._by_key
        kept: Addresses
        if addresses is self._last_given:
            # The same slice's addresses for its next peer: converted, and held as one set.
            kept = new = self._last_ints
        else:
            new = _ints(addresses)
            if len(new) > 1:
                kept = new
                if type(addresses) in _IMMUTABLE:
                    self._last_given, self._last_ints = addresses, new
            else:
                kept = tuple(new)  # a pod's: 56 bytes less than a one-address frozenset
        entry = by_key.get(key)
        if entry is None:
            if new:
                by_key[key] = (s, kept)
                self._more(s, new)
            return
        # A pair (one set) or a dict (several): tried as a pair first, the usual case.
        held = (entry[1] if entry[0] is s else None) if isinstance(entry, tuple) else entry.get(s)
        if held is None:
            if new:
                self._hold(key, entry, s, kept)
                self._more(s, new)
            return
        if held is kept:
            return  # the very addresses it holds
        if not new:
            self._drop(key, entry, s)
            self._less(s, held)
            return
        # What came and what went: in C, set against set (an EndpointSlice gains or loses an
        # endpoint); the same for the slice's next peer, which held the same set
        # (``_last_diff``).
        last = self._last_diff
        more: Iterable[int]
        less: Iterable[int]
        if last[0] is held and last[1] is new:
            more, less = last[2], last[3]
        else:
            more = new.difference(held)
            less = (
                held.difference(new)
                if type(held) is frozenset
                else [a for a in held if a not in new]
            )
            self._last_diff = (held, new, more, less)
        if not more and not less:
            return  # the same addresses (an EndpointSlice changed elsewhere)
        if isinstance(entry, tuple):  # held: its one set is ``s``
            by_key[key] = (s, kept)
        else:
            entry[s] = kept
        if more:
            self._more(s, more)
        if less:
            self._less(s, less)

    def _settle(self) -> None:
        """Apply the replacements kept for later (``_later``): the state is about to be read."""
        later = self._later
        if later:
            self._later = {}
            for key, sets in later.items():
                for s, addresses in sets.items():
                    self._replace(key, s, addresses)

    def _settle_key(self, key: str) -> None:
        """Apply the replacements kept for later of object ``key``."""
        for s, addresses in self._later.pop(key).items():
            self._replace(key, s, addresses)

    def _hold(self, key: str, entry: Held, s: _Set, addresses: Addresses) -> None:
        """Record that ``key`` contributes ``addresses`` to ``s`` (``entry``: what it held)."""
        if isinstance(entry, tuple):
            if entry[0] is s:
                self._by_key[key] = (s, addresses)
            else:  # a second set: a dict
                self._by_key[key] = {entry[0]: entry[1], s: addresses}
        else:
            entry[s] = addresses

    def _drop(self, key: str, entry: Held, s: _Set) -> None:
        """Record that ``key`` contributes nothing to ``s`` any more."""
        if isinstance(entry, tuple):
            del self._by_key[key]
            return
        assert isinstance(entry, dict)
        del entry[s]
        if len(entry) == 1:  # one set left: back to a pair
            self._by_key[key] = next(iter(entry.items()))

    def withdraw(self, key: str, peer: str | None = None, kind: SetKind | None = None) -> None:
        """Object ``key`` contributes nothing any more (to ``peer``/``kind`` only, if given)."""
        if peer is None and kind is None:  # a deleted object: all of it
            if self._later:
                self._later.pop(key, None)  # replacements of what goes anyway
            entry = self._by_key.pop(key, None)
            if entry is None:
                return
            if not isinstance(entry, tuple):
                for s, held in entry.items():
                    self._less(s, held)
                return
            s, held = entry
            if type(held) is not tuple:  # several addresses (a frozenset: ``Addresses``)
                self._less(s, held)
                return
            # One address (a pod deleted: the usual event), written out as in ``contribute``.
            a = held[0]
            count = s.count
            n = count[a]
            if n > 1:
                count[a] = n - 1
                return
            del count[a]
            if not s.noted:
                return
            if a in s.added:
                s.added.discard(a)  # added, then gone between two takes
            else:
                s.deleted.add(a)
            self._touched(s)
            return
        for p, k in list(self.contributions(key)):
            if (peer is None or p == peer) and (kind is None or k == kind):
                self.contribute(key, p, k, ())

    def contributions(self, key: str) -> dict[SetKey, frozenset[IPv4Address]]:
        """What object ``key`` contributes, by set (its replacements kept for later included:
        a source reads this before each change, which must not settle them one by one)."""
        entry = self._by_key.get(key)
        out: dict[SetKey, frozenset[IPv4Address]] = {}
        if entry is not None:
            pairs = [entry] if isinstance(entry, tuple) else entry.items()
            out = {s.key: frozenset(map(IPv4Address, a)) for s, a in pairs}
        for s, given in self._later.get(key, {}).items():
            addresses = frozenset(map(IPv4Address, _ints(given)))
            if addresses:
                out[s.key] = addresses
            else:
                out.pop(s.key, None)
        return out

    def _more(self, s: _Set, addresses: Iterable[int]) -> None:
        """One more contribution of each of ``addresses`` to set ``s``."""
        count = s.count
        if not s.noted:
            for a in addresses:
                count[a] = count.get(a, 0) + 1
            return
        added, deleted = s.added, s.deleted
        changed = False
        for a in addresses:
            n = count.get(a, 0)
            count[a] = n + 1
            if n:
                continue  # already a member
            if a in deleted:
                deleted.discard(a)  # deleted, then back between two takes
            else:
                added.add(a)
            changed = True
        if changed:
            self._touched(s)

    def _less(self, s: _Set, addresses: Iterable[int]) -> None:
        """One contribution less of each of ``addresses`` to set ``s`` (the mirror of ``_more``)."""
        count = s.count
        if not s.noted:
            for a in addresses:
                n = count[a]
                if n > 1:
                    count[a] = n - 1
                else:
                    del count[a]
            return
        added, deleted = s.added, s.deleted
        changed = False
        for a in addresses:
            n = count[a]
            if n > 1:
                count[a] = n - 1
                continue
            del count[a]
            if a in added:
                added.discard(a)  # added, then gone between two takes
            else:
                deleted.add(a)
            changed = True
        if changed:
            self._touched(s)

    # --- reading -----------------------------------------------------------------------------

    def size(self, peer: str, kind: SetKind) -> int:
        """The set's size as last settled (a gauge: as of the agent's last take)."""
        s = self._sets.get((peer, kind))
        return 0 if s is None else len(s.count)

    def members(self, peer: str, kind: SetKind) -> frozenset[IPv4Address]:
        self._settle()
        s = self._sets.get((peer, kind))
        return frozenset() if s is None else frozenset(map(IPv4Address, s.count))

    def peer_view(self, name: str) -> PeerState:
        """A peer's declaration with *live* views of its members (no copy: O(1)), for checks
        that only ask whether an address is a member (``compile.flows.stale``). Made once per
        declaration (every event that deletes asks for one): the views stay live because the
        per-set counts are never replaced, only emptied. They read the settled counts: a
        replacement kept for later (``_later``) is not in them yet, as it is not in the kernel
        yet (flows are judged after a step against what it enforced, not what comes next)."""
        view = self._views.get(name)
        if view is None:
            views = {k: AddressView(self._set(name, k).count.keys()) for k in SetKind}
            view = replace(self._peers[name], members=views)  # type: ignore[arg-type]
            self._views[name] = view
        return view

    def peer(self, name: str) -> PeerState:
        """A peer's declaration with its current members."""
        bare = self._peers[name]
        return replace(bare, members={k: self.members(name, k) for k in SetKind})

    def declarations(self) -> GatewayState:
        """The state's peers without their members (cheap: what naming a drop needs)."""
        return GatewayState(
            self.cluster, dict(self._peers), self.tunnel_pattern, self.conncheck_port, self.flow_log
        )

    def snapshot(self) -> GatewayState:
        self._settle()
        return GatewayState(
            self.cluster,
            {name: self.peer(name) for name in self._peers},
            self.tunnel_pattern,
            self.conncheck_port,
            self.flow_log,
        )

    def take_changes(self, snapshot: GatewayState | None = None) -> Changes:
        """The changes since the last call; new peers come with their current members (those
        of ``snapshot``, if given: taken just before, it holds them already, and a second copy
        of every member at start would be the agent's memory peak)."""
        self._settle()
        out = self._changes
        for s in self._dirty:
            s.dirty = False
            if s.added:
                out.added[s.key] = s.added
                s.added = set()
            if s.deleted:
                out.deleted[s.key] = s.deleted
                s.deleted = set()
        self._dirty = []
        if out.peers:
            peers = snapshot.peers if snapshot is not None else None
            out.peers = {
                name: peers[name] if peers is not None else self.peer(name) for name in out.peers
            }
        self._changes = Changes()
        self._noted_new_peers()
        self.pending_since = None
        return out

    def _noted_new_peers(self) -> None:
        """The peers new since the last take are known now: their element changes are noted."""
        if self._new_peers:
            for name in self._new_peers:
                self._note(name, True)
            self._new_peers = set()

    def load(
        self,
        state: GatewayState,
        key: str = "file",
        members: Mapping[str, Mapping[SetKind, Iterable[int]]] | None = None,
    ) -> None:
        """Make the state equal ``state`` (a whole-state source such as a topology file): each
        peer's sets become the contributions of ``key``; the changes are the difference.
        ``members``, if given, holds the peers' sets as ints instead of ``state``'s."""
        for name in [n for n in self._peers if n not in state.peers]:
            self.remove_peer(name)
        for name, peer in state.peers.items():
            self.upsert_peer(peer)
            for kind in SetKind:
                addresses: Iterable[IPv4Address | int] = (
                    members[name][kind] if members is not None else peer.addresses(kind)
                )
                self.contribute(f"{key}/{name}", name, kind, addresses)
        for k in list(self._by_key):
            if k.startswith(f"{key}/") and k.removeprefix(f"{key}/") not in state.peers:
                self.withdraw(k)
