"""The expected table by signatures (policy/signatures.py) against the simple algorithm it
replaced: one decision per (row class, column class) of ``Decider``'s classes, every cell read
back through the classes."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given

from hypothesis_profiles import budget
from peerwall.model import SecurityMode, Topology, topology_from_data
from peerwall.policy import Verdict, expect
from peerwall.policy.decide import Decider, DestinationClass, SourceClass
from peerwall.policy.tablejson import write_json_classes
from strategies import reflecting_topologies, topologies

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
CONFIGURATIONS = ((FULL, None), (SEG, None), (FULL, FULL), (FULL, SEG))


def by_decisions(
    t: Topology, default: SecurityMode, force: SecurityMode | None
) -> tuple[dict[tuple[str, str], Verdict], int, int]:
    """The previous compute: rows classed by (physical, home), columns by ``Decider``'s
    destination classes, one decision per pair. Every cell, and the numbers of classes."""
    decider = Decider(t, default, force)
    rows: dict[SourceClass, int] = {}
    row_of = [rows.setdefault(decider.source_class(p), len(rows)) for p in t.pods]
    cols: dict[DestinationClass, int] = {}
    col_of = [cols.setdefault(c, len(cols)) for c in decider.destination_classes()]
    blocks = [[decider.decide(src, col).verdict for col in cols] for src in rows]
    cells = {
        (s, d): blocks[row_of[i]][col_of[j]]
        for i, s in enumerate(t.sources)
        for j, d in enumerate(t.destinations)
        if s != d
    }
    return cells, len(rows), len(cols)


@budget(100)
@given(topologies())
def test_the_signature_table_equals_the_table_decided_per_pair_of_classes(data: dict[str, Any]):
    t = topology_from_data(data, "generated")
    for default, force in CONFIGURATIONS:
        table = expect(t, default, force=force).table
        want, rows, cols = by_decisions(t, default, force)
        got = {(s, d): v for s, d, v in table.cells()}
        assert got == want, (default, force)
        # Never more classes than before: signatures merge what behaves alike.
        assert len(table.blocks) <= rows
        assert not table.blocks or len(table.blocks[0]) <= cols


def test_destinations_decided_alike_share_a_column_and_kinds_stay_apart():
    """P1 and P1b (pods of C1, unpeered) are decided alike from everywhere: one column. The
    Internet I1 and the service S1 are answered like P1 (YES from C1 only) but by other rules:
    columns of their own (a diff explains a block of cells by one of them)."""
    t = topology_from_data(
        {
            "clusters": [
                {"name": "C1", "podCIDR": "10.1.0.0/16", "internet": "I1"},
                {"name": "C2", "podCIDR": "10.2.0.0/16", "internet": "I2"},
            ],
            "pods": [
                {"name": "P1", "cluster": "C1", "labels": {"app": "a"}},
                {"name": "P1b", "cluster": "C1"},
                {"name": "P2", "cluster": "C2"},
            ],
            "services": [{"name": "S1", "cluster": "C1", "selector": {"app": "a"}}],
        },
        "two clusters",
    )
    table = expect(t, SEG).table
    column = dict(zip(t.destinations, table.col_class, strict=True))
    assert column["P1"] == column["P1b"]
    assert len({column["P1"], column["I1"], column["S1"], column["P2"]}) == 4
    assert table.get("P2", "P1") is Verdict.NO and table.get("P1", "S1") is Verdict.YES


@budget(50)
@given(topologies())
def test_the_streamed_compact_form_is_json_dumps_of_classes_dict(data: dict[str, Any]):
    table = expect(topology_from_data(data, "generated"), SEG).table
    text = io.StringIO()  # a text stream without a binary buffer: the decoding path
    write_json_classes(table, text)
    assert text.getvalue() == json.dumps(table.classes_dict()) + "\n"
    raw = io.BytesIO()  # a file: the bytes go through its buffer
    wrapper = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    write_json_classes(table, wrapper)
    assert raw.getvalue() == text.getvalue().encode()
    wrapper.detach()


def backs_for_by_definition(t: Topology) -> dict[str, frozenset[str]]:
    """Each pod at home: the peers its home reflects a service it backs to (DESIGN §1), service
    by service and backend by backend, as ``Decider`` did before it gathered them by sets."""
    out: dict[str, frozenset[str]] = {}
    for s in t.services:
        for b in s.backends:
            out[b] = out.get(b, frozenset()) | frozenset(s.reflected_to)
    pods = t.pod_by_name
    return {n: v - {pods[n].physical} for n, v in out.items() if not pods[n].offloaded and v}


@budget("topology-load")
@given(reflecting_topologies())
def test_pod_classes_made_in_bulk_are_the_classes_of_each_pod(data: dict[str, Any]) -> None:
    t = topology_from_data(data, "generated")
    decider = Decider(t)
    want = backs_for_by_definition(t)
    listed = decider.pod_class_list()
    assert listed == [decider.pod_class(p) for p in t.pods]
    assert [c.backs_for for c in listed] == [want.get(p.name, frozenset()) for p in t.pods]
    # Equal classes are one object (the table finds them by identity).
    assert len({id(c) for c in listed}) == len(set(listed))
    assert decider.pod_classes() == {p.name: c for p, c in zip(t.pods, listed, strict=True)}


def test_a_pod_backing_services_reflected_to_different_peers_backs_for_their_union() -> None:
    # S1 is reflected to C2 only (C3's peering reflects only services marked allow), S2 to both;
    # P2 backs S1 only.
    data = {
        "clusters": [
            {"name": n, "podCIDR": f"10.{i}.0.0/16"} for i, n in enumerate(("C1", "C2", "C3"))
        ],
        "peerings": [
            {"consumer": "C1", "provider": "C2"},
            {"consumer": "C1", "provider": "C3", "reflection": "AllowList"},
        ],
        "namespaces": [{"name": "ns", "cluster": "C1", "offloadedTo": ["C2", "C3"]}],
        "pods": [
            {"name": "P1", "cluster": "C1", "namespace": "ns", "labels": {"app": "a"}},
            {"name": "P2", "cluster": "C1", "namespace": "ns", "labels": {"app": "b"}},
        ],
        "services": [
            {"name": "S1", "cluster": "C1", "namespace": "ns", "selector": {"app": "a"}},
            {"name": "S3", "cluster": "C1", "namespace": "ns", "selector": {"app": "b"}},
            {
                "name": "S2",
                "cluster": "C1",
                "namespace": "ns",
                "selector": {"app": "a"},
                "reflection": "allow",
            },
        ],
    }
    t = topology_from_data(data, "two-sets")
    assert [s.reflected_to for s in t.services] == [("C2",), ("C2",), ("C2", "C3")]
    classes = Decider(t).pod_class_list()
    assert [c.backs_for for c in classes] == [frozenset({"C2", "C3"}), frozenset({"C2"})]
    assert backs_for_by_definition(t) == {"P1": frozenset({"C2", "C3"}), "P2": frozenset({"C2"})}
