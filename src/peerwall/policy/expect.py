"""Topology -> the expected truth table, computed over equivalence classes.

Two sources behave alike when they run in the same cluster and have the same home; two pod
destinations behave alike when they run in the same cluster and admit the same peers under
segregation. Verdicts are computed once per pair of classes, so a table over 10,000 pods costs
thousands of evaluations, not a hundred million.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Topology
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.modes import MODES, effective_mode
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


def expect(
    topology: Topology,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    *,
    force: SecurityMode | None = None,
) -> Expected:
    """The expected table. ``force`` overrides every mode (used for the FullPodToPod baseline)."""
    modes: dict[tuple[str, str], type] = {}

    def policy_for(receiver: str, sender: str) -> type:
        key = (receiver, sender)
        if key not in modes:
            mode = force or effective_mode(topology, receiver, sender, default_mode).mode
            modes[key] = MODES[mode]
        return modes[key]

    admitted = admitted_senders(topology)

    # Row classes.
    row_keys: dict[SourceClass, int] = {}
    row_class = tuple(
        row_keys.setdefault((p.physical, p.home), len(row_keys)) for p in topology.pods
    )
    rows = list(row_keys)

    # Column classes, each with a verdict function of a source class.
    col_keys: dict[Hashable, int] = {}
    col_fns: list[Callable[[SourceClass], Verdict]] = []

    def column(key: Hashable, fn: Callable[[SourceClass], Verdict]) -> int:
        if key not in col_keys:
            col_keys[key] = len(col_fns)
            col_fns.append(fn)
        return col_keys[key]

    def pod_verdict(src: SourceClass, physical: str, senders: frozenset[str]) -> Verdict:
        a = src[0]
        if a == physical:
            return Verdict.YES
        if not topology.peered(a, physical):
            return Verdict.NO
        return Verdict.YES if policy_for(physical, a).admits_pod(a, senders) else Verdict.NO

    pod_col: dict[str, int] = {}
    pod_keys: dict[str, tuple[str, frozenset[str]]] = {}
    for p in topology.pods:
        key = (p.physical, admitted[p.name])
        pod_keys[p.name] = key
        pod_col[p.name] = column(("pod", *key), lambda src, k=key: pod_verdict(src, k[0], k[1]))
    cols = [pod_col[p.name] for p in topology.pods]

    for s in topology.services:
        backend_keys = frozenset(pod_keys[b] for b in s.backends)
        present = frozenset(s.present_in)

        def svc_verdict(
            src: SourceClass,
            present: frozenset[str] = present,
            keys: frozenset[tuple[str, frozenset[str]]] = backend_keys,
        ) -> Verdict:
            if src[0] not in present or not keys:
                return Verdict.NO
            reached = {pod_verdict(src, k[0], k[1]) for k in keys}
            if reached == {Verdict.YES}:
                return Verdict.YES
            return Verdict.PARTIAL if Verdict.YES in reached else Verdict.NO

        cols.append(column(("svc", present, backend_keys), svc_verdict))

    for c in topology.clusters:
        cols.append(
            column(
                ("inet", c.name), lambda src, k=c.name: Verdict.YES if src[0] == k else Verdict.NO
            )
        )

    def api_verdict(src: SourceClass, k: str) -> Verdict:
        a, home = src
        if a == k:
            return Verdict.YES
        if not topology.peered(a, k):
            return Verdict.NO
        return Verdict.YES if policy_for(k, a).admits_api(home, k) else Verdict.NO

    for c in topology.clusters:
        if c.api_server:
            cols.append(column(("api", c.name), lambda src, k=c.name: api_verdict(src, k)))

    blocks = tuple(tuple(fn(src) for fn in col_fns) for src in rows)
    table = TruthTable(
        (force or default_mode).value,
        topology.sources,
        topology.destinations,
        row_class,
        tuple(cols),
        blocks,
    )
    return Expected(table, topology, default_mode, force)


def pod_of(topology: Topology, name: str) -> Pod:
    return topology.pod_by_name[name]
