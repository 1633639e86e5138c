"""Helm-style values (``networking.securityMode``), read the same way by the CLI and the agent."""

from __future__ import annotations

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model import SecurityMode, parse_mode
from peerwall.model.load import parse_yaml

MODE_KEY = "networking.securityMode"


def mode_text_from_values(text: str, source: str) -> str | None:
    """The ``networking.securityMode`` of a values file's text, or None if it sets none."""
    data = parse_yaml(text, source)
    if data is None:
        return None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise TopologyInvalid(source, [Problem("", f"expected a mapping of values, got a {kind}")])
    networking = data.get("networking")
    if networking is None:
        return None
    if not isinstance(networking, dict):
        raise TopologyInvalid(source, [Problem("networking", "expected a mapping")])
    mode = networking.get("securityMode")
    if mode is None:
        return None
    if not isinstance(mode, str):
        raise TopologyInvalid(source, [Problem(MODE_KEY, f"expected a mode name, got {mode!r}")])
    return mode


def mode_from_values(text: str, source: str) -> SecurityMode | None:
    raw = mode_text_from_values(text, source)
    return None if raw is None else parse_mode(raw, f"{source}: {MODE_KEY}")
