"""Topology -> the expected truth table, decided once per pair of equivalence classes."""

from __future__ import annotations

from dataclasses import dataclass

from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.policy.decide import Decider, DestinationClass, SourceClass
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.truthtable import TruthTable


@dataclass(frozen=True)
class Expected:
    table: TruthTable
    topology: Topology
    default_mode: SecurityMode
    force: SecurityMode | None

    def explain(self, source: str, destination: str) -> Explanation:
        return explain_cell(self.topology, source, destination, self.default_mode, self.force)


def expect(
    topology: Topology,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    *,
    force: SecurityMode | None = None,
) -> Expected:
    """The expected table. ``force`` overrides every mode (used for the FullPodToPod baseline)."""
    decider = Decider(topology, default_mode, force)
    row_keys: dict[SourceClass, int] = {}
    row_class = tuple(
        row_keys.setdefault(decider.source_class(p), len(row_keys)) for p in topology.pods
    )
    col_keys: dict[DestinationClass, int] = {}
    col_class = tuple(col_keys.setdefault(c, len(col_keys)) for c in decider.destination_classes())
    blocks = tuple(tuple(decider.decide(src, col).verdict for col in col_keys) for src in row_keys)
    table = TruthTable(
        (force or default_mode).value,
        topology.sources,
        topology.destinations,
        row_class,
        col_class,
        blocks,
    )
    return Expected(table, topology, default_mode, force)
