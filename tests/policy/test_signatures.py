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
from strategies import topologies

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
