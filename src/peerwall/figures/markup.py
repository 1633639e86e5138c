"""Small, safe building blocks for SVG and HTML text: escaping, numbers, text widths.

Every name that reaches a figure comes from a topology or a probe and is escaped here, in text and
in attributes alike, so a pod called ``<script>`` is drawn as those eight characters. Numbers are
formatted one way (at most one decimal, no ``-0``) so the same input always gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "FONT",
    "attrs",
    "esc",
    "fit",
    "num",
    "text_width",
]

FONT = "Helvetica, Arial, 'Liberation Sans', sans-serif"
"""The seed's figures use Helvetica; Arial and Liberation Sans share its metrics."""

# Advance widths of printable ASCII (32..126) in Helvetica (= Arial, Liberation Sans), per 1000 em.
_REGULAR = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
)  # fmt: skip
_BOLD = (
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
)  # fmt: skip
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_OTHER = 1000
"""Outside ASCII, assume a full em: too wide is a little space, too narrow is overlapping text."""


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """The width of ``text`` set in Helvetica at ``size`` px: layout needs no font files."""
    table = _BOLD if bold else _REGULAR
    total = 0
    for ch in text:
        code = ord(ch)
        total += table[code - 32] if 32 <= code < 127 else _OTHER
    return total * size / 1000


def fit(candidates: tuple[str, ...], width: float, size: float, *, bold: bool = False) -> str:
    """The first candidate that fits ``width``; else the last one cut short with an ellipsis."""
    for c in candidates:
        if text_width(c, size, bold=bold) <= width:
            return c
    last = candidates[-1]
    for n in range(len(last) - 1, 0, -1):
        cut = last[:n] + "…"
        if text_width(cut, size, bold=bold) <= width:
            return cut
    return ""


def esc(text: str) -> str:
    """Text or attribute value, escaped for XML and HTML (quotes too: values are double-quoted).

    Characters XML 1.0 forbids (most controls, lone surrogates, U+FFFE/U+FFFF) become U+FFFD, so
    a hostile name cannot make the document unparseable or unencodable.
    """
    out = (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )
    return _NOT_XML.sub("\ufffd", out)


def num(x: float) -> str:
    """A coordinate: integer when whole, else one decimal; never ``-0``."""
    r = round(x, 1)
    if r == 0:
        return "0"
    if r == int(r):
        return str(int(r))
    return f"{r:.1f}"


def attrs(values: Mapping[str, str | float | None]) -> str:
    """`` k="v"`` for each value that is not None, escaped, numbers through ``num``."""
    parts = []
    for k, v in values.items():
        if v is None:
            continue
        text = num(v) if isinstance(v, int | float) else esc(v)
        parts.append(f' {k}="{text}"')
    return "".join(parts)
