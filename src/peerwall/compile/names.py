"""Every nftables and interface name peerwall uses, in one place.

The table is the namespace: objects inside need no ``peerwall-`` prefix. Per-peer objects carry a
short hash of the peer's name so they stay unique and within length limits whatever the name.
"""

from __future__ import annotations

import hashlib

FAMILY = "inet"
TABLE = "peerwall"

CHAIN_FORWARD = "filter-forward"
CHAIN_NAT_PRE = "nat-prerouting"
CHAIN_NAT_POST = "nat-postrouting"


def hash8(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def peer_chain(peer: str) -> str:
    return f"peer-{hash8(peer)}-{peer}"


def peer_allow_set(peer: str) -> str:
    """Local destinations that traffic from ``peer`` may open connections to."""
    return f"allow-{hash8(peer)}"


def peer_api_clients_set(peer: str) -> str:
    """Sources from ``peer`` that may reach the local API server (pods whose home is here)."""
    return f"api-{hash8(peer)}"


def tunnel_ifname(peer: str) -> str:
    """Interface that carries traffic to and from ``peer`` (15 characters at most)."""
    return f"pwt-{hash8(peer)}"
