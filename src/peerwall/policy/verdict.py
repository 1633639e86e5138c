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


_MARKS = {Verdict.YES: ".", Verdict.NO: "X", Verdict.PARTIAL: "~", Verdict.ERROR: "!"}
