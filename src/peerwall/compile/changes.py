"""The delta between two desired states of a gateway, as the agent hands it to the kernel's side.

``agent.desired.DesiredState`` nets events into one ``Changes``; ``dataplane.table.GatewayTable``
turns it into one transaction. It lives in the pure core so that the dataplane, which sits below
the agent, can take it without importing the agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peerwall.compile.state import PeerState, SetKind

SetKey = tuple[str, SetKind]
"""(peer, kind): one per-peer address set."""


@dataclass(slots=True)
class Changes:
    """What changed since the last ``take_changes``, netted.

    ``peers`` holds every peer whose declaration (chain: tunnel, sources, mode, API, NAT) was
    added or changed, ``removed`` every peer that went away; ``added``/``deleted`` the element
    changes of peers that exist before and after (a new peer's elements come with its
    declaration, a removed peer's leave with it). A name in both ``removed`` and ``peers`` was
    removed and declared again: apply the removal first.
    """

    peers: dict[str, PeerState] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    added: dict[SetKey, set[int]] = field(default_factory=dict)
    deleted: dict[SetKey, set[int]] = field(default_factory=dict)
    """Addresses as ints (``int(IPv4Address)``)."""

    def __bool__(self) -> bool:
        return bool(self.peers or self.removed or self.added or self.deleted)

    @property
    def narrows(self) -> bool:
        """Whether a peer may now reach less than before (established flows must be checked)."""
        return bool(self.removed or self.deleted or self.peers)

    def count(self) -> tuple[int, int]:
        """(elements added, elements deleted)."""
        return sum(map(len, self.added.values())), sum(map(len, self.deleted.values()))
