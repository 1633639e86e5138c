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

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from peerwall.compile import ctmark
from peerwall.compile.build import audit_elements, cidrs_elements
from peerwall.compile.state import GatewayState, PeerState, SetKind
from peerwall.model.addressing import translate

__all__ = ["Flow", "Tuple", "stale"]


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
