"""One protocol for everything that observes a table, and one way to turn observations into it.

A ``Runner`` takes ``CellSpec``s and says, for every target of every cell, whether it was reached
(as Cyclonus's simulated and real probe job runners share one interface): ``verify.paths.Tracer``
by walking packets through compiled rulesets, ``probe.netns.NetnsRunner`` with real TCP
connections. ``cell_verdict`` is the one rule that turns those results into a verdict, and
``observe`` the one way a complete observed table is built (never guessed: a cell missing from
the results is an error naming it).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from peerwall.policy.decide import aggregate
from peerwall.policy.truthtable import Comparison, TruthTable
from peerwall.policy.verdict import Verdict
from peerwall.verify.cells import CellSpec, Target

__all__ = [
    "CellObservation",
    "Observed",
    "Reach",
    "Runner",
    "TargetResult",
    "cell_verdict",
    "observe",
]


class Reach(enum.Enum):
    REACHED = "reached"
    """The intended endpoint answered."""
    BLOCKED = "blocked"
    """Nothing answered: dropped, or no route."""
    MISDIRECTED = "misdirected"
    """Someone else answered: the cell cannot be established (an emulation or routing fault)."""
    ERROR = "error"
    """The attempt could not be made, or was refused by a host: not a verdict."""


@dataclass(frozen=True)
class TargetResult:
    target: Target | None
    """None: the silent dial of a service without backends."""
    reach: Reach
    detail: str = ""


@dataclass(frozen=True)
class CellObservation:
    cell: CellSpec
    results: tuple[TargetResult, ...]
    reproducers: Sequence[str] = ()
    """Commands that repeat the attempts by hand (the prober's); empty for the tracer."""

    @property
    def verdict(self) -> Verdict:
        return cell_verdict(self.cell, self.results)

    def detail(self) -> str:
        if not self.results:
            return self.cell.note
        parts = []
        for r in self.results:
            who = "silent dial" if r.target is None else f"to {r.target.identity}"
            parts.append(f"{who}: {r.reach.value}" + (f" ({r.detail})" if r.detail else ""))
        return "; ".join(parts)


def cell_verdict(cell: CellSpec, results: Sequence[TargetResult]) -> Verdict:
    """YES if every target was reached, PARTIAL if some, NO if none (or there is nothing to
    reach); ERROR if any attempt failed for another reason than a block, or someone else
    answered — then the cell is not established either way."""
    if any(r.reach in (Reach.ERROR, Reach.MISDIRECTED) for r in results):
        return Verdict.ERROR
    reached = [r.reach is Reach.REACHED for r in results if r.target is not None]
    if len(reached) != len(cell.targets):
        return Verdict.ERROR
    return aggregate(Verdict.YES if ok else Verdict.NO for ok in reached)


class Runner(Protocol):
    """Observes cells. Results come in the order of ``cells``, one observation each."""

    def run(self, cells: Sequence[CellSpec]) -> list[CellObservation]: ...


@dataclass(frozen=True)
class Observed:
    table: TruthTable
    cells: dict[tuple[str, str], CellObservation] = field(repr=False)
    seconds: float = 0.0
    attempts: int = 0
    """Connections (or traced packets) it took."""

    def wrong(self, expected: TruthTable) -> Comparison:
        return expected.compare(self.table)


def observe(
    runner: Runner,
    mode: str,
    sources: Sequence[str],
    destinations: Sequence[str],
    cells: Sequence[CellSpec],
) -> Observed:
    """Run every cell and build the observed table (``TableIncomplete`` if a cell is missing)."""
    results = runner.run(cells)
    by_cell = {(o.cell.source, o.cell.destination): o for o in results}
    table = TruthTable.from_cells(
        mode, sources, destinations, {k: o.verdict for k, o in by_cell.items()}
    )
    attempts = sum(len(o.results) for o in results)
    return Observed(table, by_cell, attempts=attempts)
