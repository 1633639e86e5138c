"""The conntrack mark peerwall gives every flow that crosses a tunnel: which tunnel, which way.

This module is the one definition of the mark; the compiler writes it, ``compile.flows`` reads it
back to decide which flows a change may cut, and anything else that wants "the flows of peer X"
(conntrack dumps filtered by mark, metrics) should use these functions too.

A flow's first packet sets the mark (``ct mark set``) in the chain of the tunnel it enters by
(``FROM_PEER``) or leaves by (``TO_PEER``); conntrack keeps it for the flow's life and copies it
to the flows a helper expects from it. ICMP errors and other ``related`` packets are looked up
against the flow they are about, so ``ct mark`` of a related packet is that flow's mark.

Layout of the 32-bit mark::

    bit 31       direction: 1 = opened by the peer through its tunnel, 0 = opened towards it
    bits 0..30   the peer: the low 31 bits of its name hash (``names.hash8``), never 0

0 means "not a tunnel flow peerwall has seen": made while the table was missing, or before
peerwall ran. The whole mark belongs to peerwall in the gateway's network namespace.
"""

from __future__ import annotations

from peerwall.compile.names import hash8

__all__ = ["FROM_PEER", "PEER_BITS", "from_peer", "peer_id", "to_peer"]

FROM_PEER = 0x8000_0000
"""Direction bit: the flow was opened by the peer (its first packet came out of the tunnel)."""
PEER_BITS = 0x7FFF_FFFF


def peer_id(peer: str) -> int:
    """The peer's part of the mark (shared by both directions); two peers whose name hashes
    collide would share it, as they share their set names (see ``names.hash8``)."""
    return (int(hash8(peer), 16) & PEER_BITS) or 1


def from_peer(peer: str) -> int:
    """The mark of a flow the peer opened towards this cluster."""
    return FROM_PEER | peer_id(peer)


def to_peer(peer: str) -> int:
    """The mark of a flow opened from this side towards the peer."""
    return peer_id(peer)
