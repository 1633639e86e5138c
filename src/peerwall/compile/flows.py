"""Which tracked connections the desired state would not have let through, or not this way.

Once a connection is tracked, its packets on a tunnel are accepted by their state (established,
or related to it) as long as the connection is one of that tunnel (its ``ct mark``, see
``compile.ctmark``), so they no longer meet the per-peer rules. When a change narrows what a peer
may reach (a switch to segregation, a pod leaving a set, a repair after the table was deleted),
the agent asks ``stale`` of every tracked connection and deletes the entries it names: their next
packet is then a new connection and meets the rules (a mid-stream segment, from either side, is
not a SYN and is dropped). Flows that are still allowed are left alone, so they survive any
change.

Which peer a connection belongs to, and which way it was opened, is read from its mark, never
guessed from addresses: with overlapping pod CIDRs our own connection to a peer's pod and the
peer's connection to ours can carry the same addresses. A connection is stale when:
- the peer opened it (``ctmark.from_peer``) to a local destination the state does not admit for
  that peer (after the receiver's DNAT, the reply's source is the real destination), or with a
  NAT binding that is not the one the rules make;
- it was opened towards a peer whose remapping we do (``ctmark.to_peer``), without the source NAT
  the rules make.
Only peerwall's bits of the mark are read (``ctmark.ours``); a connection Liqo marked (its NodePort
marks, ``ctmark.is_liqo``) was opened by a local node towards a peer and is never stale.
An unmarked connection (made while the table was missing, or before peerwall ran) can no longer
carry packets through any tunnel, whatever its addresses; it is classified by address as before,
so that its entry goes when it came from a peer's valid sources (its pod CIDRs and its masquerade
address).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from heapq import heappop, heappush
from ipaddress import IPv4Address, IPv4Network

from peerwall.compile import ctmark
from peerwall.compile.build import audit_elements, cidrs_elements
from peerwall.compile.state import GatewayState, PeerState, PrefixNat, SetKind
from peerwall.model.addressing import translate

__all__ = ["Cut", "Flow", "Tuple", "Verdicts", "stale"]


@dataclass(frozen=True)
class Tuple:
    src: IPv4Address
    dst: IPv4Address
    sport: int | None = None
    dport: int | None = None
    """Ports (TCP, UDP); for ICMP, ``dport`` holds the type."""


@dataclass(frozen=True)
class Flow:
    """One conntrack entry: the first packet's tuple, and the tuple its replies carry."""

    proto: str  # tcp | udp | icmp | other
    orig: Tuple
    reply: Tuple
    mark: int = 0
    """The connection's whole ``ct mark`` (``compile.ctmark``: ours in the high bits, Liqo's in
    the low); 0: none."""


def _in(a: IPv4Address, nets: tuple[IPv4Network, ...]) -> bool:
    return any(a in n for n in nets)


def _admitted(state: GatewayState, peer: PeerState, flow: Flow) -> bool:
    dst = flow.reply.src  # the real destination, after any DNAT of ours
    if any(
        dst in e if isinstance(e, IPv4Network) else dst == e
        for e in cidrs_elements(peer) | audit_elements(peer)
    ):
        return True
    if dst in peer.addresses(SetKind.OFFLOADED) or dst in peer.addresses(SetKind.BACKENDS):
        return True
    api = peer.api
    if (
        api is not None
        and dst in api.addresses
        and flow.proto == "tcp"
        and flow.reply.sport == api.port
        and flow.orig.src in peer.addresses(SetKind.API_CLIENTS)
    ):
        return True
    # The link's own needs, towards the gateway itself.
    from_gateway = not peer.gateways or flow.orig.src in peer.gateways
    if from_gateway and flow.proto == "icmp" and flow.orig.dport == 8:  # echo-request
        return True
    return (
        from_gateway
        and flow.proto == "udp"
        and state.conncheck_port is not None
        and flow.orig.dport == state.conncheck_port
    )


def stale(state: GatewayState, flow: Flow) -> str | None:
    """Why the entry must go, or None if the state would have let it be exactly as it is."""
    if flow.mark:
        ours = ctmark.ours(flow.mark)
        for peer in state.peers.values():
            if ours == ctmark.from_peer(peer.name):
                return _stale_from(state, peer, flow)
            if ours == ctmark.to_peer(peer.name):
                return _stale_to(peer, flow)
        return None  # Liqo's (a local node's connection), or a peer this gateway no longer has
    for peer in state.peers.values():
        if _in(flow.orig.src, peer.valid_sources):
            return _stale_from(state, peer, flow)
        if _in(flow.orig.dst, peer.sources):
            return _stale_to(peer, flow)
    return None


def _stale_from(state: GatewayState, peer: PeerState, flow: Flow) -> str | None:
    """A connection ``peer`` opened to this cluster."""
    nat = peer.nat
    if nat is not None and flow.orig.dst in nat.remapped:
        want = translate(flow.orig.dst, nat.remapped, nat.local)
        if flow.reply.src != want:
            return f"from {peer.name}: NAT binding {flow.reply.src}, the rules make {want}"
    if not _admitted(state, peer, flow):
        return f"from {peer.name} to {flow.reply.src}: not admitted for {peer.name}"
    return None


def _stale_to(peer: PeerState, flow: Flow) -> str | None:
    """A connection opened from this cluster to ``peer``: ours to make, only its NAT is checked."""
    nat = peer.nat
    if nat is not None and flow.orig.src in nat.local:
        want = translate(flow.orig.src, nat.local, nat.remapped)
        if flow.reply.dst != want:
            return f"to {peer.name}: source NAT {flow.reply.dst}, the rules make {want}"
    return None


# --- the same answers, prepared once per clearing ---------------------------------------------
#
# ``stale`` above is the definition. A clearing asks it of every kind of entry in the table, and a
# peer that opens connections to many distinct pods or ports makes every entry its own kind
# (262,143 of them in a full table): asked that way, ``stale`` costs some 4 us a call (it rebuilds
# the peer's admitted elements each time, and formats addresses into its reason), and building
# the ``Flow`` it reads some 2.5 us more. ``Verdicts`` gives the same answers from plain integers,
# with what each peer admits turned into integer sets and sorted ranges once, and its reasons as
# shared ``Cut`` values whose sentence is made only for the entries that are reported.

BINDING, NOT_ADMITTED, SOURCE_NAT = "binding", "not admitted", "source NAT"
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}
_OURS = ctmark.OURS


@dataclass(frozen=True, eq=False)
class Cut:
    """The rule a stale entry breaks, one per peer and rule, shared by every entry that breaks it;
    ``explain`` makes its sentence for one entry, the same one ``stale`` gives."""

    peer: str
    rule: str
    """``BINDING``: a peer's connection DNATed otherwise than the rules do; ``NOT_ADMITTED``: a
    peer's connection to a destination it may not reach; ``SOURCE_NAT``: a connection towards a
    peer SNATed otherwise than the rules do."""
    nat: PrefixNat | None = None

    def explain(self, flow: Flow) -> str:
        nat = self.nat
        if self.rule == BINDING and nat is not None:
            want = translate(flow.orig.dst, nat.remapped, nat.local)
            return f"from {self.peer}: NAT binding {flow.reply.src}, the rules make {want}"
        if self.rule == SOURCE_NAT and nat is not None:
            want = translate(flow.orig.src, nat.local, nat.remapped)
            return f"to {self.peer}: source NAT {flow.reply.dst}, the rules make {want}"
        return f"from {self.peer} to {flow.reply.src}: not admitted for {self.peer}"


class _Ranges:
    """Integer ranges (inclusive), merged and sorted once; membership by bisection."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.starts = [lo for lo, _ in merged]
        self.ends = [hi for _, hi in merged]

    def __contains__(self, a: int) -> bool:
        k = bisect_right(self.starts, a) - 1
        return k >= 0 and a <= self.ends[k]


def _span(net: IPv4Network) -> tuple[int, int]:
    return int(net.network_address), int(net.broadcast_address)


class _FirstOf:
    """For an address, the first (lowest) index whose networks hold it, among ``(index,
    networks)``; ``none`` if no one's do. Made once as a sweep over the ranges' bounds."""

    def __init__(self, owners: Iterable[tuple[int, Iterable[IPv4Network]]], none: int) -> None:
        spans = sorted((*_span(n), i) for i, nets in owners for n in nets)
        bounds = sorted({lo for lo, _, _ in spans} | {hi + 1 for _, hi, _ in spans})
        self.starts: list[int] = []
        self.first: list[int] = []
        self.none = none
        active: list[tuple[int, int]] = []  # (index, last address), the lowest index on top
        j = 0
        for bound in bounds:
            while j < len(spans) and spans[j][0] <= bound:
                heappush(active, (spans[j][2], spans[j][1]))
                j += 1
            while active and active[0][1] < bound:
                heappop(active)
            self.starts.append(bound)
            self.first.append(active[0][0] if active else none)

    def __call__(self, a: int) -> int:
        k = bisect_right(self.starts, a) - 1
        return self.first[k] if k >= 0 else self.none


def _ints(addresses: Iterable[IPv4Address]) -> frozenset[int]:
    return frozenset(map(int, addresses))


class _Peer:
    """What ``_stale_from`` and ``_stale_to`` read of one peer, as integers."""

    def __init__(self, state: GatewayState, peer: PeerState) -> None:
        elements = cidrs_elements(peer) | audit_elements(peer)
        ranges = _Ranges(_span(e) for e in elements if isinstance(e, IPv4Network))
        self.ranges = ranges if ranges.starts else None
        self.admitted = _ints(e for e in elements if isinstance(e, IPv4Address))
        self.admitted |= _ints(peer.addresses(SetKind.OFFLOADED))
        self.admitted |= _ints(peer.addresses(SetKind.BACKENDS))
        api = peer.api
        self.api = frozenset() if api is None else _ints(api.addresses)
        self.api_port = None if api is None else api.port
        self.api_clients = _ints(peer.addresses(SetKind.API_CLIENTS))
        self.gateways = _ints(peer.gateways) if peer.gateways else None
        self.conncheck = state.conncheck_port
        nat = peer.nat
        self.nat = None if nat is None else (*_span(nat.remapped), *_span(nat.local))
        self.binding = Cut(peer.name, BINDING, nat)
        self.not_admitted = Cut(peer.name, NOT_ADMITTED, nat)
        self.source_nat = Cut(peer.name, SOURCE_NAT, nat)

    def stale_from(
        self, proto: int, src: int, dst: int, dport: int | None, rsrc: int, rsport: int | None
    ) -> Cut | None:
        nat = self.nat
        if nat is not None and nat[0] <= dst <= nat[1] and rsrc != nat[2] + dst - nat[0]:
            return self.binding
        if rsrc in self.admitted or (self.ranges is not None and rsrc in self.ranges):
            return None
        if rsrc in self.api and proto == 6 and rsport == self.api_port and src in self.api_clients:
            return None
        if self.gateways is None or src in self.gateways:  # the link's own needs
            if proto == 1 and dport == 8:  # echo-request
                return None
            if proto == 17 and self.conncheck is not None and dport == self.conncheck:
                return None
        return self.not_admitted

    def stale_to(self, src: int, rdst: int) -> Cut | None:
        nat = self.nat
        if nat is not None and nat[2] <= src <= nat[3] and rdst != nat[0] + src - nat[2]:
            return self.source_nat
        return None


class Verdicts:
    """``stale`` for one state, prepared once: ``cut`` judges an entry from its fields as
    integers (protocol by number, IPv4 addresses as ints) and answers with a shared ``Cut`` (or
    None) that says why only when asked; called with a ``Flow`` it answers as ``stale``. What a
    peer admits is prepared the first time one of its entries is judged. The state is read when
    made, and must not change meanwhile (a ``GatewayState`` is frozen)."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        peers = list(state.peers.values())
        self._peers = peers
        self._prepared: list[_Peer | None] = [None] * len(peers)
        # ``stale``'s loops, as lookups giving the same first match (a peer's index in order).
        self._marked: dict[int, tuple[bool, int]] = {}
        for i, peer in enumerate(peers):
            self._marked.setdefault(ctmark.from_peer(peer.name), (True, i))
            self._marked.setdefault(ctmark.to_peer(peer.name), (False, i))
        none = len(peers)
        self._by_source = _FirstOf(enumerate(p.valid_sources for p in peers), none)
        self._by_destination = _FirstOf(enumerate(p.sources for p in peers), none)

    def _prepare(self, i: int) -> _Peer:
        prepared = self._prepared[i] = _Peer(self.state, self._peers[i])
        return prepared

    def cut(
        self,
        proto: int,
        src: int,
        dst: int,
        dport: int | None,
        rsrc: int,
        rdst: int,
        rsport: int | None,
        mark: int,
    ) -> Cut | None:
        """Why the entry must go (``Cut.explain`` says it), or None: ``stale`` of the flow with
        these fields (the original tuple's source, destination and destination port, the reply's
        source, destination and source port, the whole mark), of which it reads no other."""
        if mark:
            found = self._marked.get(mark & _OURS)
            if found is None:
                return None
            opened_by_peer, i = found
        else:
            by_source, by_destination = self._by_source(src), self._by_destination(dst)
            if by_source <= by_destination:
                if by_source == len(self._peers):
                    return None
                opened_by_peer, i = True, by_source
            else:
                opened_by_peer, i = False, by_destination
        peer = self._prepared[i] or self._prepare(i)
        if opened_by_peer:
            return peer.stale_from(proto, src, dst, dport, rsrc, rsport)
        return peer.stale_to(src, rdst)

    def __call__(self, flow: Flow) -> str | None:
        orig, reply = flow.orig, flow.reply
        cut = self.cut(
            _PROTO_NUMBERS.get(flow.proto, 0),
            int(orig.src),
            int(orig.dst),
            orig.dport,
            int(reply.src),
            int(reply.dst),
            reply.sport,
            flow.mark,
        )
        return None if cut is None else cut.explain(flow)
