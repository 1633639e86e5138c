"""The conntrack mark peerwall gives every flow that crosses a tunnel: which tunnel, which way.

This module is the one definition of the mark; the compiler writes it, ``compile.flows`` reads it
back to decide which flows a change may cut, and anything else that wants "the flows of peer X"
(conntrack dumps filtered by mark, metrics) should use these functions too.

A flow's first packet sets the mark in the chain of the tunnel it enters by (``FROM_PEER``) or
leaves by (``TO_PEER``); conntrack keeps it for the flow's life and copies it to the flows a
helper expects from it. ICMP errors and other ``related`` packets are looked up against the flow
they are about, so ``ct mark`` of a related packet is that flow's mark.

**The mark is shared with Liqo.** On a Liqo gateway, Liqo's controller manager installs (through
a FirewallConfiguration, ``pkg/liqo-controller-manager/networking/internal-network/route/
internalnode_k8s.go`` at 557c199c) a forward chain that writes the *whole* mark of NodePort and
hostNetwork connections leaving for the peer (``ct mark set N``, N a small number per node,
``mark.go``: 1, 2, ...), a prerouting chain that copies it into the packet mark of their replies,
and an ``ip rule fwmark N`` (exact, no mask, ``pkg/route/rule.go``) that routes those replies
back to the node. So peerwall owns only the high 16 bits; the low 16 are Liqo's::

    bit 31        direction: 1 = opened by the peer through its tunnel, 0 = opened towards it
    bits 16..30   the peer: 15 bits of its name hash (``model.hashes.mark_id``), never 0
    bits 0..15    Liqo's (``LIQO``): never written by peerwall

peerwall writes its bits with ``ct mark set ct mark & 0xffff | V`` and only on a connection whose
low bits are 0: a connection Liqo marked keeps exactly Liqo's N, whichever table's forward chain
runs first (Liqo's ``ct mark set N`` clears our bits when it runs after us), so Liqo's exact
``fwmark N`` still routes its replies. Such a connection (``liqo``) carries no peer: its packets
are accepted on their state in the direction the node opened it (see ``compile.build``).

0 means "not a tunnel flow peerwall has seen": made while the table was missing, or before
peerwall ran.
"""

from __future__ import annotations

from peerwall.model.hashes import MARK_ID_BITS, mark_id

__all__ = [
    "FROM_PEER",
    "LIQO",
    "OURS",
    "PEER_BITS",
    "from_peer",
    "is_liqo",
    "ours",
    "peer_id",
    "to_peer",
]

OURS = 0xFFFF_0000
"""peerwall's bits of the mark."""
LIQO = 0x0000_FFFF
"""Liqo's bits of the mark (its NodePort marks: small per-node numbers)."""
FROM_PEER = 0x8000_0000
"""Direction bit: the flow was opened by the peer (its first packet came out of the tunnel)."""
PEER_BITS = MARK_ID_BITS
"""The peer id's width (15 bits, placed at bit 16)."""
_SHIFT = 16


def peer_id(peer: str) -> int:
    """The peer's 15-bit id (shared by both directions). Two peers of one gateway with the same
    id could not be told apart by their flows: ``names.clashes`` refuses them, as it does two
    peers with one ``hash8``."""
    return mark_id(peer)


def from_peer(peer: str) -> int:
    """Our bits of the mark of a flow the peer opened towards this cluster."""
    return FROM_PEER | peer_id(peer) << _SHIFT


def to_peer(peer: str) -> int:
    """Our bits of the mark of a flow opened from this side towards the peer."""
    return peer_id(peer) << _SHIFT


def ours(mark: int) -> int:
    """peerwall's part of a connection's mark (0: none)."""
    return mark & OURS


def is_liqo(mark: int) -> bool:
    """A connection Liqo marked (its NodePort marks) and peerwall did not."""
    return not mark & OURS and bool(mark & LIQO)
