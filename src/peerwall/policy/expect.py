"""Topology -> the expected truth table, computed over equivalence classes.

Two sources behave alike when they run in the same cluster and have the same home; two pod
destinations behave alike when they run in the same cluster and admit the same peers under
segregation. Verdicts are computed once per pair of classes, so a table over 10,000 pods costs
thousands of evaluations, not a hundred million.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.modes import MODES, ModePolicy, effective_mode
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict

SourceClass = tuple[str, str]  # (physical, home)


def admitted_senders(topology: Topology) -> dict[str, frozenset[str]]:
    """Pod name -> peers that segregation lets in to it, in the cluster where it runs.

    A peer A may reach pod d running in R when A offloaded d into R (home A), or when d backs a
    service of R whose namespace is offloaded to A.
    """
    extra: dict[str, set[str]] = {}
    for s in topology.services:
        for b in s.backends:
            extra.setdefault(b, set()).update(s.reflected_to)
    out: dict[str, frozenset[str]] = {}
    for p in topology.pods:
        senders = set(extra.get(p.name, ())) if p.home == p.physical else {p.home}
        if p.home == p.physical:
            senders.discard(p.physical)
        out[p.name] = frozenset(senders)
    return out


@dataclass(frozen=True)
class Expected:
    table: TruthTable
    topology: Topology
    default_mode: SecurityMode
    force: SecurityMode | None

    def explain(self, source: str, destination: str) -> Explanation:
        return explain_cell(self.topology, source, destination, self.default_mode, self.force)


PodKey = tuple[str, frozenset[str]]  # (physical, admitted senders)


@dataclass(frozen=True)
class PodColumn:
    key: PodKey


@dataclass(frozen=True)
class ServiceColumn:
    present_in: frozenset[str]
    backends: frozenset[PodKey]


@dataclass(frozen=True)
class InternetColumn:
    cluster: str


@dataclass(frozen=True)
class ApiColumn:
    cluster: str


Column = PodColumn | ServiceColumn | InternetColumn | ApiColumn


class _Rules:
    """DESIGN.md §1, evaluated for a source class against a column class."""

    def __init__(
        self, topology: Topology, default: SecurityMode, force: SecurityMode | None
    ) -> None:
        self.topology = topology
        self.default = default
        self.force = force
        self._policies: dict[tuple[str, str], ModePolicy] = {}

    def policy(self, receiver: str, sender: str) -> ModePolicy:
        key = (receiver, sender)
        if key not in self._policies:
            mode = self.force or effective_mode(self.topology, receiver, sender, self.default).mode
            self._policies[key] = MODES[mode]
        return self._policies[key]

    def pod(self, src: SourceClass, key: PodKey) -> Verdict:
        a, (physical, senders) = src[0], key
        if a == physical:
            return Verdict.YES
        if not self.topology.peered(a, physical):
            return Verdict.NO
        return Verdict.YES if self.policy(physical, a).admits_pod(a, senders) else Verdict.NO

    def verdict(self, src: SourceClass, col: Column) -> Verdict:
        a, home = src
        if isinstance(col, PodColumn):
            return self.pod(src, col.key)
        if isinstance(col, ServiceColumn):
            if a not in col.present_in or not col.backends:
                return Verdict.NO
            reached = {self.pod(src, k) for k in col.backends}
            if reached == {Verdict.YES}:
                return Verdict.YES
            return Verdict.PARTIAL if Verdict.YES in reached else Verdict.NO
        if isinstance(col, InternetColumn):
            return Verdict.YES if a == col.cluster else Verdict.NO
        k = col.cluster
        if a == k:
            return Verdict.YES
        if not self.topology.peered(a, k):
            return Verdict.NO
        return Verdict.YES if self.policy(k, a).admits_api(home, k) else Verdict.NO


def columns(topology: Topology) -> list[Column]:
    """The class of every destination, in table order."""
    admitted = admitted_senders(topology)
    pod_keys = {p.name: (p.physical, admitted[p.name]) for p in topology.pods}
    out: list[Column] = [PodColumn(pod_keys[p.name]) for p in topology.pods]
    out += [
        ServiceColumn(frozenset(s.present_in), frozenset(pod_keys[b] for b in s.backends))
        for s in topology.services
    ]
    out += [InternetColumn(c.name) for c in topology.clusters]
    out += [ApiColumn(c.name) for c in topology.clusters if c.api_server]
    return out


def expect(
    topology: Topology,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    *,
    force: SecurityMode | None = None,
) -> Expected:
    """The expected table. ``force`` overrides every mode (used for the FullPodToPod baseline)."""
    row_keys: dict[SourceClass, int] = {}
    row_class = tuple(
        row_keys.setdefault((p.physical, p.home), len(row_keys)) for p in topology.pods
    )
    col_keys: dict[Column, int] = {}
    col_class = tuple(col_keys.setdefault(c, len(col_keys)) for c in columns(topology))
    rules = _Rules(topology, default_mode, force)
    blocks = tuple(tuple(rules.verdict(src, col) for col in col_keys) for src in row_keys)
    table = TruthTable(
        (force or default_mode).value,
        topology.sources,
        topology.destinations,
        row_class,
        col_class,
        blocks,
    )
    return Expected(table, topology, default_mode, force)
