"""Truth tables: never guessed, compared on classes exactly as cell by cell (issue 6.5, 6.6)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.model import SecurityMode, topology_from_data
from peerwall.policy import TableIncomplete, TruthTable, Verdict, expect
from strategies import topologies


def test_an_unobserved_cell_is_an_error_that_names_it() -> None:
    cells = {("a", "b"): Verdict.YES, ("b", "a"): Verdict.NO, ("a", "x"): Verdict.NO}
    with pytest.raises(TableIncomplete, match="no verdict for b -> x"):
        TruthTable.from_cells("m", ["a", "b"], ["a", "b", "x"], cells)
    cells[("b", "x")] = Verdict.PARTIAL
    table = TruthTable.from_cells("m", ["a", "b"], ["a", "b", "x"], cells)
    assert table["b", "x"] is Verdict.PARTIAL and table.get("a", "a") is None


def naive(a: TruthTable, b: TruthTable) -> set[tuple[str, str, Verdict | None, Verdict | None]]:
    return {
        (s, d, a.get(s, d), b.get(s, d))
        for s in a.sources
        for d in a.destinations
        if s != d and a.get(s, d) != b.get(s, d)
    }


@budget("table-compare")
@given(
    data=topologies(),
    modes=st.tuples(st.sampled_from(list(SecurityMode)), st.sampled_from(list(SecurityMode))),
)
def test_class_comparison_equals_the_cell_by_cell_one(data: dict[str, Any], modes) -> None:  # type: ignore[no-untyped-def]
    t = topology_from_data(data, "generated")
    a = expect(t, force=modes[0]).table
    b = expect(t, modes[1]).table
    got = {(m.source, m.destination, m.expected, m.observed) for m in a.compare(b).mismatches()}
    assert got == naive(a, b)
    assert len(a.compare(b)) == len(got)
    # A dense copy (one class per name) compares the same way.
    dense = TruthTable.from_cells(
        b.security_mode, b.sources, b.destinations, {(s, d): v for s, d, v in b.cells()}
    )
    assert {(m.source, m.destination) for m in a.compare(dense).mismatches()} == {
        (s, d) for s, d, _, _ in got
    }


@budget("table-restrict")
@given(data=topologies(), mode=st.sampled_from(list(SecurityMode)), picks=st.data())
def test_restrict_keeps_exactly_the_cells_of_the_names_kept(
    data: dict[str, Any], mode: SecurityMode, picks: st.DataObject
) -> None:
    """A sub-table has the cells of the whole one for the names kept, in the same order, and
    only the classes it uses (so its compact form and legend say nothing about the others)."""
    table = expect(topology_from_data(data, "gen"), mode).table
    sources = (
        picks.draw(st.lists(st.sampled_from(table.sources), unique=True)) if table.sources else []
    )
    destinations = picks.draw(st.lists(st.sampled_from(table.destinations), unique=True))
    sub = table.restrict(sources, destinations)
    assert sub.sources == tuple(s for s in table.sources if s in sources)
    assert sub.destinations == tuple(d for d in table.destinations if d in destinations)
    assert list(sub.cells()) == [
        (s, d, v) for s, d, v in table.cells() if s in sources and d in destinations
    ]
    assert set(sub.row_class) == set(range(len(sub.blocks)))
    assert all(set(sub.col_class) == set(range(len(row))) for row in sub.blocks)


def test_services_are_classed_by_their_distinct_backend_classes_not_by_count() -> None:
    # "big" selects 6 pods of one class, "small" 1 of the same class: one column class (it was
    # one per backend count), and the same verdicts as the explainer, which keeps every
    # backend. The offloaded "guest" and C2's own pod make the verdicts differ by source.
    pods = [
        {"name": f"w{i}", "cluster": "C1", "namespace": "shop", "labels": {"tier": "web"}}
        for i in range(6)
    ]
    pods += [
        {"name": "one", "cluster": "C1", "namespace": "shop", "labels": {"app": "one"}},
        {"name": "guest", "cluster": "C2", "namespace": "batch", "runsOn": "C1",
         "labels": {"app": "one"}},
        {"name": "c2", "cluster": "C2"},
    ]  # fmt: skip
    data = {
        "clusters": [
            {"name": "C1", "podCIDR": "10.244.0.0/16"},
            {"name": "C2", "podCIDR": "10.245.0.0/16"},
        ],
        "peerings": [{"consumer": "C2", "provider": "C1"}],
        "namespaces": [
            {"name": "shop", "cluster": "C1"},
            {"name": "batch", "cluster": "C2", "offloadedTo": ["C1"]},
        ],
        "pods": pods,
        "services": [
            {"name": "big", "cluster": "C1", "namespace": "shop", "selector": {"tier": "web"}},
            {"name": "small", "cluster": "C1", "namespace": "shop", "selector": {"app": "one"}},
        ],
    }
    topology = topology_from_data(data)
    expected = expect(topology, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    table = expected.table
    col = dict(zip(table.destinations, table.col_class, strict=True))
    assert col["big"] == col["small"]
    for s in table.sources:
        for d in table.destinations:
            if s != d:
                assert table[s, d] is expected.explain(s, d).verdict, (s, d)
