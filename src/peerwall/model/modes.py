"""The connectivity security modes: a module of its own, without pydantic, so that what only
names a mode (the CLI's options, the compiled state, ``peerwall modes``) does not load the
topology's schema."""

from __future__ import annotations

from peerwall.model.describe import Choice, describe, quote

__all__ = ["DEFAULT_MODE", "DESCRIPTIONS", "MODE_KEY", "SecurityMode", "mode_from"]


class SecurityMode(Choice):
    """The connectivity security modes, spelled as Liqo's ``networking.securityMode``."""

    FULL_POD_TO_POD = "FullPodToPod"
    INTRA_CLUSTER_TRAFFIC_SEGREGATION = "IntraClusterTrafficSegregation"


DEFAULT_MODE = SecurityMode.FULL_POD_TO_POD
"""The global default when nothing selects a mode, as in Liqo's Helm chart."""

MODE_KEY = "networking.securityMode"
"""The Helm value that selects the global default (Liqo's chart; ``--set``, ``--values``)."""

DESCRIPTIONS = {
    SecurityMode.FULL_POD_TO_POD: (
        "pods of peered clusters reach each other in every namespace, no restriction"
    ),
    SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION: (
        "a peer reaches only the pods it offloaded here and the local backends of services "
        "reflected to it; everything inside a physical cluster stays open"
    ),
}
"""What each mode allows, in one line (``peerwall modes``)."""


def mode_from(value: object) -> SecurityMode:
    """A mode name -> SecurityMode; else ``ValueError`` saying why (no field named: the caller
    knows where the value came from)."""
    if not isinstance(value, str):
        raise ValueError(
            f"expected a mode name ({SecurityMode.valid_values()}), got {describe(value)}"
        )
    try:
        return SecurityMode(value)
    except ValueError:
        raise ValueError(
            f"unknown security mode {quote(value)} (valid: {SecurityMode.valid_values()})"
        ) from None
