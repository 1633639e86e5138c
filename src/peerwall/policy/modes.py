"""The two security modes: which one governs a given connection (what each allows is in
``model.modes``, next to the modes).

A mode is enforced by the receiving cluster on traffic arriving from a peer; the most specific
setting wins: the peering's ``securityMode``, else the receiver's install-time one, else the global
default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from peerwall.model.modes import SecurityMode

if TYPE_CHECKING:
    from peerwall.model.topology import Topology


class ModeOrigin(str, Enum):
    PEERING = "peering"
    CLUSTER = "cluster install-time value"
    DEFAULT = "global default"
    FORCED = "forced"


@dataclass(frozen=True)
class EffectiveMode:
    mode: SecurityMode
    origin: ModeOrigin

    def describe(self, receiver: str, sender: str) -> str:
        where = {
            ModeOrigin.PEERING: f"set on the peering {sender}–{receiver}",
            ModeOrigin.CLUSTER: f"{receiver}'s install-time securityMode",
            ModeOrigin.DEFAULT: "global default, networking.securityMode",
            ModeOrigin.FORCED: "every mode forced, for comparison",
        }[self.origin]
        return f"{self.mode.value} ({where})"


def effective_mode(
    topology: Topology, receiver: str, sender: str, default: SecurityMode
) -> EffectiveMode:
    """The mode ``receiver`` applies to traffic from ``sender`` (assumes they are peered)."""
    on_peering = topology.peering_mode(receiver, sender)
    if on_peering is not None:
        return EffectiveMode(on_peering, ModeOrigin.PEERING)
    installed = topology.cluster_by_name[receiver].security_mode
    if installed is not None:
        return EffectiveMode(installed, ModeOrigin.CLUSTER)
    return EffectiveMode(default, ModeOrigin.DEFAULT)
