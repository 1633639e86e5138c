"""One watched object's share of a peer's address sets: replaced whole, and logged as the change.

Every part of the join (``offloaded_pods``, ``backends``) keys what an object adds to the desired
state by the object (``pod/ns/name``, ``endpointslice/ns/name``) and recomputes it whole when a
fact it depends on changes; ``replace`` turns that into the few additions and removals that
differ, so an unchanged recomputation costs the sets nothing and logs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from peerwall.agent.desired import DesiredState
from peerwall.compile.state import SetKind

__all__ = ["fmt", "replace"]

log = logging.getLogger("peerwall.agent.kube")


def fmt(addrs: Iterable[IPv4Address]) -> str:
    """Addresses in numeric order, comma-separated (for the log)."""
    return ",".join(sorted(map(str, addrs), key=lambda s: tuple(map(int, s.split(".")))))


def replace(
    desired: DesiredState, key: str, kind: SetKind, new: Mapping[str, frozenset[IPv4Address]]
) -> None:
    """Make ``key``'s contributions to ``kind`` sets exactly ``new`` (peer -> addresses)."""
    old = {p: a for (p, k), a in desired.contributions(key).items() if k == kind}
    for peer in sorted(set(old) | set(new)):
        before, after = old.get(peer, frozenset()), new.get(peer, frozenset())
        if before == after:
            continue
        changes = []
        if after - before:
            changes.append(f"+{fmt(after - before)}")
        if before - after:
            changes.append(f"-{fmt(before - after)}")
        log.info("%s: %s(%s) %s", key, kind.value, peer, " ".join(changes))
        desired.contribute(key, peer, kind, after)
