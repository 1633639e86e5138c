"""What ``peerwall modes`` lists: each mode, what it allows, and which is the default.

Built from ``model.modes`` alone, so that the entry point prints a bare ``peerwall modes`` without
loading typer, rich or pydantic; the ``modes`` command prints the same text.
"""

from __future__ import annotations

from peerwall.model.modes import DEFAULT_MODE, DESCRIPTIONS, MODE_KEY, SecurityMode


def modes_text() -> str:
    """The listing, one mode a line, ``*`` marking the default."""
    width = max(len(m.value) for m in SecurityMode)
    lines = [
        f"{'*' if m is DEFAULT_MODE else ' '} {m.value:<{width}}  {DESCRIPTIONS[m]}"
        for m in SecurityMode
    ]
    lines.append(f"(* default; select with --set {MODE_KEY}=MODE)")
    return "".join(f"{line}\n" for line in lines)


def modes_document() -> list[dict[str, object]]:
    """The listing as data (``--output json`` / ``yaml``)."""
    return [
        {"mode": m.value, "default": m is DEFAULT_MODE, "description": DESCRIPTIONS[m]}
        for m in SecurityMode
    ]
