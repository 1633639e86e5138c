"""The desired state of one gateway, maintained event by event.

Sources of state (a topology file, the Kubernetes API) do not rebuild the whole state on every
event: each object they watch *contributes* addresses to per-peer sets under a key of its own
(``pod/ns/name``, ``endpointslice/ns/name``). An index from key to contributions, and a reference
count per address, make every event cost what it touches, whatever the size of the sets: an
address stays in a set while any object still contributes it (a pod backing two services
reflected to the same peer), and leaves with the last one.

``take_changes`` hands the accumulated, netted changes to the agent, which turns them into one
nftables transaction; a burst of events that cancel out costs nothing.

Addresses are kept as ints (32-bit), not ``IPv4Address`` objects: an ``IPv4Address`` hashes in
Python (``hash(hex(...))``, ~1 us, several times per event in these dicts and sets) and costs
56 bytes more per address and reference; an int hashes in C. They become ``IPv4Address`` again
only where the state is read whole (``members``, ``snapshot``) or by key (``contributions``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, KeysView, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from ipaddress import IPv4Address

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


Held = tuple[SetKey, tuple[int, ...]] | dict[SetKey, tuple[int, ...]]
"""What one object contributes (``DesiredState._by_key``)."""


class DesiredState:
    """A ``GatewayState`` kept up to date by contributions, with the changes since last taken."""

    def __init__(self, cluster: str, tunnel_pattern: str, conncheck_port: int | None) -> None:
        self.cluster = cluster
        self.tunnel_pattern = tunnel_pattern
        self.conncheck_port = conncheck_port
        self._peers: dict[str, PeerState] = {}
        """Declarations without members; members live in ``_count``."""
        self._by_key: dict[str, Held] = {}
        """Object key -> what the object contributes: (set, addresses) when it contributes to
        one set (a pod: the usual case), a dict set -> addresses when to several. Tuples, and
        one shared ``SetKey`` per set: the Kubernetes source holds one contribution per pod,
        and a dict per object (224 bytes) holding a one-address frozenset (216) cost 8 times
        this (issue 21: memory per enforced address). Keyed by the object alone, so that a
        deleted object's contributions are one lookup, not one per set (issue 21: churn)."""
        self._last_given: object = None
        self._last_ints: frozenset[int] = frozenset()
        """The last immutable collection of addresses contributed, and as ints: a source hands
        an EndpointSlice's addresses to each peer it is reflected to, the same object each time
        (``kube.contribution.replace``), and converting them is most of the cost of the next
        peer's contribution (``int(IPv4Address)`` runs in Python: ~80 ns an address). Held by
        reference: the object cannot change, nor be freed and its identity reused."""
        self._set_keys: dict[SetKey, SetKey] = {}
        """Every set contributed to, each ``SetKey`` one object shared by its contributions."""
        self._count: dict[SetKey, dict[int, int]] = defaultdict(dict)
        self._changes = Changes()
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

    # --- peers -------------------------------------------------------------------------------

    def upsert_peer(self, peer: PeerState) -> None:
        """Declare or update a peer; its ``members`` are ignored (they come from contributions)."""
        bare = replace(peer, members={})
        if self._peers.get(peer.name) == bare:
            return
        if peer.name not in self._peers:
            self._new_peers.add(peer.name)
        self._peers[peer.name] = bare
        self._views.pop(peer.name, None)
        self._changes.peers[peer.name] = bare
        self._pending()

    def remove_peer(self, name: str) -> None:
        """Forget a peer; contributions to its sets are kept, should it come back."""
        if self._peers.pop(name, None) is None:
            return
        self._views.pop(name, None)
        self._changes.peers.pop(name, None)
        if name in self._new_peers:
            self._new_peers.discard(name)  # came and went between two takes: nothing to do
        else:
            self._changes.removed.add(name)
            self._pending()
        for key in [k for k in self._changes.added if k[0] == name]:
            del self._changes.added[key]
        for key in [k for k in self._changes.deleted if k[0] == name]:
            del self._changes.deleted[key]

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def declares(self, name: str) -> bool:
        return name in self._peers

    # --- contributions -----------------------------------------------------------------------

    def contribute(
        self, key: str, peer: str, kind: SetKind, addresses: Iterable[IPv4Address | int]
    ) -> None:
        """Object ``key`` now contributes exactly ``addresses`` to ``peer``'s ``kind`` set."""
        sk = self._set_keys.get((peer, kind))
        if sk is None:
            sk = (peer, kind)
            self._set_keys[sk] = sk
        if type(addresses) is tuple and len(addresses) == 1 and key not in self._by_key:
            # A new object with one address (a pod created: the usual event), written out.
            a = int(addresses[0])
            self._by_key[key] = (sk, (a,))
            self._more(sk, (a,))
            return
        if addresses is self._last_given:
            new = self._last_ints  # the same slice's addresses for its next peer
        else:
            new = frozenset(map(int, addresses))  # an int is its own int, at C speed
            if len(new) > 1 and isinstance(addresses, tuple | frozenset):
                self._last_given, self._last_ints = addresses, new
        by_key = self._by_key
        entry = by_key.get(key)
        if entry is None:
            if new:
                by_key[key] = (sk, tuple(new))
                self._more(sk, new)
            return
        # A pair (one set) or a dict (several): tried as a pair first, the usual case.
        held = (entry[1] if entry[0] is sk else None) if isinstance(entry, tuple) else entry.get(sk)
        if held is None:
            if new:
                self._hold(key, entry, sk, tuple(new))
                self._more(sk, new)
            return
        if len(held) == len(new) and new.issuperset(held):
            return  # the same addresses (an EndpointSlice changed elsewhere): no set made
        if new:
            self._hold(key, entry, sk, tuple(new))
            old = frozenset(held)
            self._more(sk, new - old)
            self._less(sk, old - new)
        else:
            self._drop(key, entry, sk)
            self._less(sk, held)

    def _hold(self, key: str, entry: Held, sk: SetKey, addresses: tuple[int, ...]) -> None:
        """Record that ``key`` contributes ``addresses`` to ``sk`` (``entry``: what it held)."""
        if isinstance(entry, tuple):
            if entry[0] is sk:
                self._by_key[key] = (sk, addresses)
            else:  # a second set: a dict
                self._by_key[key] = {entry[0]: entry[1], sk: addresses}
        else:
            entry[sk] = addresses

    def _drop(self, key: str, entry: Held, sk: SetKey) -> None:
        """Record that ``key`` contributes nothing to ``sk`` any more."""
        if isinstance(entry, tuple):
            del self._by_key[key]
            return
        assert isinstance(entry, dict)
        del entry[sk]
        if len(entry) == 1:  # one set left: back to a pair
            self._by_key[key] = next(iter(entry.items()))

    def withdraw(self, key: str, peer: str | None = None, kind: SetKind | None = None) -> None:
        """Object ``key`` contributes nothing any more (to ``peer``/``kind`` only, if given)."""
        if peer is None and kind is None:  # a deleted object: all of it
            entry = self._by_key.pop(key, None)
            if entry is None:
                return
            if isinstance(entry, tuple):
                self._less(entry[0], entry[1])
            else:
                for sk, held in entry.items():
                    self._less(sk, held)
            return
        for p, k in list(self.contributions(key)):
            if (peer is None or p == peer) and (kind is None or k == kind):
                self.contribute(key, p, k, ())

    def contributions(self, key: str) -> dict[SetKey, frozenset[IPv4Address]]:
        entry = self._by_key.get(key)
        if entry is None:
            return {}
        pairs = [entry] if isinstance(entry, tuple) else entry.items()
        return {sk: frozenset(map(IPv4Address, a)) for sk, a in pairs}

    # The event path: a pod created or deleted is one address here (~1 us in all), an
    # EndpointSlice a few; the reference counts and the netting are written out in two loops.

    def _more(self, sk: SetKey, addresses: Iterable[int]) -> None:
        """One more contribution of each of ``addresses`` to set ``sk``."""
        counts = self._count[sk]
        noted = sk[0] in self._peers and sk[0] not in self._new_peers
        changes = self._changes
        for a in addresses:
            n = counts.get(a, 0)
            counts[a] = n + 1
            if n or not noted:
                continue  # already a member; or a new peer's, whose elements come with it
            added, deleted = changes.added, changes.deleted
            undone = deleted.get(sk)
            if undone is not None and a in undone:  # deleted, then back between two takes
                undone.discard(a)
                if not undone:
                    del deleted[sk]
                continue
            bucket = added.get(sk)
            if bucket is None:
                added[sk] = {a}
            else:
                bucket.add(a)
            if self.pending_since is None:
                self.pending_since = time.perf_counter()

    def _less(self, sk: SetKey, addresses: Iterable[int]) -> None:
        """One contribution less of each of ``addresses`` to set ``sk`` (the mirror of ``_more``)."""
        counts = self._count[sk]
        noted = sk[0] in self._peers and sk[0] not in self._new_peers
        changes = self._changes
        for a in addresses:
            n = counts[a]
            if n > 1:
                counts[a] = n - 1
                continue
            del counts[a]
            if not noted:
                continue
            added, deleted = changes.added, changes.deleted
            undone = added.get(sk)
            if undone is not None and a in undone:  # added, then gone between two takes
                undone.discard(a)
                if not undone:
                    del added[sk]
                continue
            bucket = deleted.get(sk)
            if bucket is None:
                deleted[sk] = {a}
            else:
                bucket.add(a)
            if self.pending_since is None:
                self.pending_since = time.perf_counter()

    # --- reading -----------------------------------------------------------------------------

    def size(self, peer: str, kind: SetKind) -> int:
        return len(self._count.get((peer, kind), ()))

    def members(self, peer: str, kind: SetKind) -> frozenset[IPv4Address]:
        return frozenset(map(IPv4Address, self._count.get((peer, kind), ())))

    def peer_view(self, name: str) -> PeerState:
        """A peer's declaration with *live* views of its members (no copy: O(1)), for checks
        that only ask whether an address is a member (``compile.flows.stale``). Made once per
        declaration (every event that deletes asks for one): the views stay live because the
        per-set counts are never replaced, only emptied."""
        view = self._views.get(name)
        if view is None:
            views = {k: AddressView(self._count[(name, k)].keys()) for k in SetKind}
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
        out = self._changes
        if out.peers:
            peers = snapshot.peers if snapshot is not None else None
            out.peers = {
                name: peers[name] if peers is not None else self.peer(name) for name in out.peers
            }
        self._changes = Changes()
        if self._new_peers:
            self._new_peers = set()
        self.pending_since = None
        return out

    def discard_changes(self) -> None:
        """Forget pending changes (after a full replace, which wrote the whole snapshot)."""
        self._changes = Changes()
        self._new_peers = set()
        self.pending_since = None

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
