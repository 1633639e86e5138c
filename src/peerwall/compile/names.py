"""Every nftables and interface name peerwall uses, in one place.

The table is the namespace: objects inside need no ``peerwall-`` prefix. Per-peer objects carry a
short hash of the peer's name so they stay unique and within length limits whatever the name;
base chains are ``<type>-<hook>``, as in kube-proxy's nftables mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from peerwall.compile import ctmark
from peerwall.compile.state import SetKind
from peerwall.model.hashes import hash8 as hash8

FAMILY = "inet"
TABLE = "peerwall"
GUARD_TABLE = "peerwall-guard"
"""Installed only while ``TABLE`` cannot be taken back (an intruder holds it, ``flags owner``):
it drops every tunnel's new traffic by itself, whatever ``TABLE`` holds."""

CHAIN_FORWARD = "filter-forward"
CHAIN_INPUT = "filter-input"
CHAIN_OUTPUT = "filter-output"
CHAIN_NAT_PRE = "nat-prerouting"
CHAIN_NAT_POST = "nat-postrouting"

MAP_FORWARD = "peers-forward"
"""Tunnel interface -> the forward chain of the peer behind it."""
MAP_INPUT = "peers-input"
"""Tunnel interface -> the input chain of the peer behind it."""
MAP_EGRESS = "peers-egress"
"""Tunnel interface -> the chain of the peer behind it for traffic leaving by that tunnel."""

LAB_TUNNEL_PATTERN = "pwt-*"


def clashes(peers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Of ``(peer, tunnel)`` pairs, the peers that cannot be told apart, each with why: two
    peers on one tunnel interface (the tunnel picks the chain, so one would take the other's
    traffic), two names with one ``hash8`` (they would share sets), or with one 15-bit
    connection-mark id (``ctmark.peer_id``: each would be allowed the other's connections, and
    a cut of one would judge the other's flows by the wrong peer)."""
    out: dict[str, str] = {}
    by_tunnel: dict[str, str] = {}
    by_hash: dict[str, str] = {}
    by_mark: dict[str, str] = {}
    for peer, tunnel in peers:
        for index, key, what in (
            (by_tunnel, tunnel, f"tunnel {tunnel}"),
            (by_hash, hash8(peer), f"the 8-hex hash {hash8(peer)} of their names"),
            (by_mark, str(ctmark.peer_id(peer)), f"the connection-mark id {ctmark.peer_id(peer)}"),
        ):
            other = index.setdefault(key, peer)
            if other != peer:
                out.setdefault(peer, f"{peer} and {other} share {what}")
                out.setdefault(other, f"{other} and {peer} share {what}")
    return out


def peer_chain(peer: str) -> str:
    """Forward-hook chain for traffic from ``peer`` to local pods and services."""
    return f"peer-{hash8(peer)}-{peer}"


def peer_input_chain(peer: str) -> str:
    """Input-hook chain for traffic from ``peer`` to the gateway's own addresses."""
    return f"input-{hash8(peer)}-{peer}"


def peer_egress_chain(peer: str) -> str:
    """Forward- and output-hook chain for traffic leaving by ``peer``'s tunnel."""
    return f"egress-{hash8(peer)}-{peer}"


def peer_cidrs_set(peer: str) -> str:
    """Local CIDRs ``peer`` may reach: the pod CIDR under FullPodToPod, nothing under segregation."""
    return f"cidrs-{hash8(peer)}"


def peer_audit_set(peer: str) -> str:
    """Local CIDRs where ``peer``'s traffic that segregation would drop is accepted and reported
    (audit on: the pod CIDR; off: none)."""
    return f"audit-{hash8(peer)}"


FLOW_PREFIX = "peerwall"
"""First field of every drop rule's log prefix: ``peerwall:<verdict>:<hook>:<reason>:<peer>``."""


def flow_prefix(verdict: str, hook: str, reason: str, peer: str) -> str:
    """The log prefix of a drop rule: what the agent reads back from each NFLOG message."""
    return f"{FLOW_PREFIX}:{verdict}:{hook}:{reason}:{peer}"


@cache
def peer_set(peer: str, kind: SetKind) -> str:
    """One of the per-peer address sets (plain hash sets: O(1) per element update)."""
    return f"{kind.value}-{hash8(peer)}"


def tunnel_ifname(peer: str) -> str:
    """The lab's interface that carries traffic to and from ``peer`` (15 characters at most)."""
    return f"pwt-{hash8(peer)}"
