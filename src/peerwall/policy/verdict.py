"""Verdicts: the values of a truth table cell."""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    YES = "YES"
    NO = "NO"
    PARTIAL = "PARTIAL"
    ERROR = "ERROR"
    """Observed only: the probe failed for another reason than a block (no listener, setup error)."""

    @property
    def mark(self) -> str:
        return _MARKS[self]

    @property
    def meaning(self) -> str:
        """What the verdict means, in a legend's words (the terminal's and the figures')."""
        return MEANINGS[self]


_MARKS = {Verdict.YES: ".", Verdict.NO: "X", Verdict.PARTIAL: "~", Verdict.ERROR: "!"}
MEANINGS = {
    Verdict.YES: "allowed",
    Verdict.NO: "blocked",
    Verdict.PARTIAL: "some backends only",
    Verdict.ERROR: "probe failed",
}
"""The one wording of each verdict in every legend (terminal tables and figures)."""
