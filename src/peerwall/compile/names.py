"""Every nftables and interface name peerwall uses, in one place.

The table is the namespace: objects inside need no ``peerwall-`` prefix. Per-peer objects carry a
short hash of the peer's name so they stay unique and within length limits whatever the name;
base chains are ``<type>-<hook>``, as in kube-proxy's nftables mode.
"""

from __future__ import annotations

import hashlib

from peerwall.compile.state import SetKind

FAMILY = "inet"
TABLE = "peerwall"
GUARD_TABLE = "peerwall-guard"
"""Installed only while ``TABLE`` cannot be taken back (an intruder holds it, ``flags owner``):
it drops every tunnel's new traffic by itself, whatever ``TABLE`` holds."""

CHAIN_FORWARD = "filter-forward"
CHAIN_INPUT = "filter-input"
CHAIN_NAT_PRE = "nat-prerouting"
CHAIN_NAT_POST = "nat-postrouting"

MAP_FORWARD = "peers-forward"
"""Tunnel interface -> the forward chain of the peer behind it."""
MAP_INPUT = "peers-input"
"""Tunnel interface -> the input chain of the peer behind it."""

LAB_TUNNEL_PATTERN = "pwt-*"


def hash8(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def peer_chain(peer: str) -> str:
    """Forward-hook chain for traffic from ``peer`` to local pods and services."""
    return f"peer-{hash8(peer)}-{peer}"


def peer_input_chain(peer: str) -> str:
    """Input-hook chain for traffic from ``peer`` to the gateway's own addresses."""
    return f"input-{hash8(peer)}-{peer}"


def peer_cidrs_set(peer: str) -> str:
    """Local CIDRs ``peer`` may reach: the pod CIDR under FullPodToPod, nothing under segregation."""
    return f"cidrs-{hash8(peer)}"


def peer_set(peer: str, kind: SetKind) -> str:
    """One of the per-peer address sets (plain hash sets: O(1) per element update)."""
    return f"{kind.value}-{hash8(peer)}"


def tunnel_ifname(peer: str) -> str:
    """The lab's interface that carries traffic to and from ``peer`` (15 characters at most)."""
    return f"pwt-{hash8(peer)}"
