"""Topology -> the expected truth table, decided once per class and candidate source cluster
(``signatures``)."""

from __future__ import annotations

from dataclasses import dataclass

from peerwall.model.parse import gc_paused
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.policy.decide import Decider
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.signatures import signature_table
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
    with gc_paused():  # millions of containers, no cycles: the collector's passes cost most
        decider = Decider(topology, default_mode, force)
        table = signature_table(decider, (force or default_mode).value)
    return Expected(table, topology, default_mode, force)
