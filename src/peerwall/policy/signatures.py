"""The expected table at scale: every destination classed by *which sources it answers how*.

``Decider``'s classes (a pod's physical cluster, home and reflecting peers; a service's backend
classes) are what a destination *is*; the table only needs what it *does*. Two facts of DESIGN.md
§1 make that small:

- A pod, service or Internet verdict depends on the source's physical cluster only (its home
  matters only towards API servers), and is NO from every cluster that is neither the
  destination's own nor peered with it. So a destination's column is its **signature**: its
  kind, and for the few source clusters that may be answered otherwise (its own and its peers),
  the verdict and the rule that decides it. The rule is kept so that cells of one class are
  decided alike, not only answered alike: a diff explains a block of cells by one of them.
- An API server's verdict depends on the source's (physical, home), again NO unless the source
  runs in the API server's cluster or a peer of it.

So each distinct ``Decider`` class is decided once per *candidate* source cluster (its own and
its peers, a handful), through ``Decider`` itself (one decision procedure), instead of once per
row class; destinations with the same signature share a column, sources with the same physical
cluster and the same API verdicts (and rules) share a row, and the blocks are filled sparsely (every cell
starts NO). The cost is linear in pods and in service backends plus the number of cells of the
compact table, instead of row classes x column classes decisions (DESIGN §1 in code:
tests/policy/test_signatures.py checks it cell by cell against ``Decider.cell``).

Per pod, nothing is done in Python: ``Decider.pod_class_list`` gives each pod its interned class
(built with ``map`` and ``zip``), rows and columns are worked out per distinct class, and each pod
is given its class's row and column by ``map`` (a million pods come in a few thousand classes). A
service's column depends on the distinct classes of its backends, not on how many it has: services
whose backends fall in the same classes share one signature, worked out once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from peerwall.policy.decide import (
    ApiClass,
    Decider,
    DecisionRule,
    DestinationClass,
    InternetClass,
    SourceClass,
    aggregate,
)
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict

__all__ = ["signature_table"]

Signature = tuple[tuple[str, Verdict, DecisionRule], ...]
"""A column's non-NO cells by source cluster, in order of name."""
RowSignature = tuple[tuple[int, Verdict, DecisionRule], ...]
"""An API server's column: its non-NO cells by row class."""


def signature_table(decider: Decider, security_mode: str) -> TruthTable:
    """The table ``expect`` returns, with one column per signature and one row per distinct
    row (see the module's docstring)."""
    t = decider.topology
    near = {c.name: (c.name, *t.peers[c.name]) for c in t.clusters}
    sources = {a: SourceClass(a, a) for a in near}

    # --- source rows: (physical, home) -> (physical, its API verdicts) ------------------------
    # Decided per distinct pod class (a class has its pods' physical and home), then each pod
    # given its class's row and column by ``map``: no step per pod in Python.
    classes = decider.pod_class_list()
    distinct = dict(zip(map(id, classes), classes, strict=True))  # in order of first pod
    row_of: dict[tuple[str, str], int] = {}  # (physical, home) -> row class
    row_keys: dict[tuple[str, Signature], int] = {}
    row_of_class: dict[int, int] = {}  # id of a PodClass -> its row class
    apis = {c.name: ApiClass(c.name) for c in t.clusters if c.api_server}
    for cid, pc in distinct.items():
        r = row_of.get((pc.physical, pc.home))
        if r is None:
            src = SourceClass(pc.physical, pc.home)
            api = tuple(
                (k, d.verdict, d.rule)
                for k in sorted(near[pc.physical])
                if k in apis
                for d in (decider.api(src, apis[k]),)
            )
            r = row_of[(pc.physical, pc.home)] = row_keys.setdefault(
                (pc.physical, api), len(row_keys)
            )
        row_of_class[cid] = r
    rows_of: dict[str, list[int]] = defaultdict(list)  # physical cluster -> its rows
    for (a, _), r in row_keys.items():
        rows_of[a].append(r)

    # --- columns: each destination's signature ------------------------------------------------
    by_clusters: dict[tuple[str, Signature], int] = {}
    by_rows: dict[RowSignature, int] = {}

    def column_of(kind: str, sig: Signature) -> int:
        found = by_clusters.get((kind, sig))
        if found is None:
            found = by_clusters[(kind, sig)] = len(by_clusters) + len(by_rows)
        return found

    def over_clusters(candidates: Iterable[str], dst: DestinationClass) -> Signature:
        return tuple(
            (a, d.verdict, d.rule)
            for a in sorted(candidates)
            for d in (decider.decide(sources[a], dst),)
        )

    # Pods: one signature and one column per distinct class.
    pod_sig: dict[int, dict[str, Verdict]] = {}  # id of a PodClass -> its non-NO cells
    pod_col: dict[int, int] = {}
    for cid, pc in distinct.items():
        sig = over_clusters(near[pc.physical], pc)
        pod_sig[cid] = {a: v for a, v, _ in sig}
        pod_col[cid] = column_of("pod", sig)
    ids = list(map(id, classes))
    row_of_pod = list(map(row_of_class.__getitem__, ids))
    col_class = list(map(pod_col.__getitem__, ids))
    del ids
    # Services: ``Decider.service_verdict`` over the signatures of the distinct backend classes
    # (absent from a cluster: NO there; no backend: NO; else all / some / none reached). Services
    # with the same selector in one namespace share their backends' tuple (the resolver answers
    # a selector once): one look-up, whatever the number of backends; and services whose
    # backends fall in the same classes share their signature, decided once.
    same: dict[tuple[int, tuple[str, ...]], int] = {}
    by_backends: dict[tuple[frozenset[int], frozenset[str]], int] = {}
    for s in t.services:
        key = (id(s.backends), s.present_in)
        j = same.get(key)
        if j is None:
            vc = decider.service_verdict_class(s)
            verdict_key = (frozenset(map(id, vc.backends)), vc.present_in)
            j = by_backends.get(verdict_key)
            if j is None:
                backends = [pod_sig[id(c)] for c in vc.backends]
                if backends:
                    sig = tuple(
                        (
                            a,
                            aggregate(b.get(a, Verdict.NO) for b in backends),
                            DecisionRule.SERVICE_BACKENDS,
                        )
                        for a in sorted(vc.present_in)
                    )
                else:
                    sig = tuple(
                        (a, Verdict.NO, DecisionRule.SERVICE_NO_BACKENDS)
                        for a in sorted(vc.present_in)
                    )
                j = by_backends[verdict_key] = column_of("service", sig)
            same[key] = j
        col_class.append(j)
    for c in t.clusters:
        col_class.append(column_of("internet", over_clusters(near[c.name], InternetClass(c.name))))
    # API servers: keyed by row (their verdict also depends on the source's home).
    api_rows: dict[str, list[tuple[int, Verdict, DecisionRule]]] = defaultdict(list)
    for (_, api_cells), r in row_keys.items():
        for k, verdict, rule in api_cells:
            api_rows[k].append((r, verdict, rule))
    for c in t.clusters:
        if c.api_server:
            api_sig = tuple(sorted(api_rows.get(c.name, [])))
            found = by_rows.get(api_sig)
            if found is None:
                found = by_rows[api_sig] = len(by_clusters) + len(by_rows)
            col_class.append(found)

    # --- blocks: every cell NO, then the signatures' cells ------------------------------------
    width = len(by_clusters) + len(by_rows)
    blocks = [[Verdict.NO] * width for _ in range(len(row_keys))]
    for (_, cells), j in by_clusters.items():
        for a, v, _ in cells:
            for r in rows_of.get(a, ()):
                blocks[r][j] = v
    for row_cells, j in by_rows.items():
        for r, v, _ in row_cells:
            blocks[r][j] = v
    for r, row in enumerate(blocks):  # row by row: never two copies of the whole table
        blocks[r] = tuple(row)  # type: ignore[call-overload]
    return TruthTable(
        security_mode,
        t.sources,
        t.destinations,
        tuple(row_of_pod),
        tuple(col_class),
        tuple(blocks),  # type: ignore[arg-type]
    )
