"""Names the user gave that the topology does not define: the error, with near matches."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from peerwall.errors import UnknownName


def suggest(name: str, valid: Sequence[str]) -> str:
    """`` (did you mean ...?)`` for near matches (case-insensitive), or the short list of choices."""
    by_lower: dict[str, str] = {}
    for v in valid:
        by_lower.setdefault(v.lower(), v)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    if close:
        return f" (did you mean {', '.join(by_lower[c] for c in close)}?)"
    if len(valid) <= 12:
        return f" (valid: {', '.join(valid)})"
    return f" (the topology has {len(valid)}; see 'peerwall matrix')"


def unknown(kind: str, name: str, valid: Sequence[str]) -> UnknownName:
    return UnknownName(f"unknown {kind} {name!r}{suggest(name, valid)}")
