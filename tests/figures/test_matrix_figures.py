"""Matrix figures without a browser: well-formed, every cell where the table says, the highlight
exactly ``table.differing(baseline)``, hostile names inert, the class view faithful, bytes stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from figkit import (
    SEED_DIFFERING,
    classes,
    parse_html,
    parse_svg,
    scaled_topology,
    self_contained,
    svg_cells,
)
from hypothesis import given

from hypothesis_profiles import budget
from peerwall.figures import MAX_LINES, matrix_html, matrix_svg, matrix_view
from peerwall.figures.matrix import BIG_COLUMNS
from peerwall.model import SecurityMode, Topology, load_topology, topology_from_data
from peerwall.policy import TruthTable, Verdict, expect
from strategies import topologies

SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD
EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"


@pytest.fixture(scope="module")
def seed() -> Topology:
    return load_topology((EXAMPLES / "seed.yaml").read_text(), "seed.yaml")


def tables(t: Topology, mode: SecurityMode = SEG) -> tuple[TruthTable, TruthTable]:
    return expect(t, mode).table, expect(t, force=FULL).table


def svg_cell_map(text: str) -> dict[tuple[str, str], tuple[str | None, set[str]]]:
    """(source, destination) -> (data-verdict, classes) of every drawn cell, each drawn once."""
    out: dict[tuple[str, str], tuple[str | None, set[str]]] = {}
    for el in svg_cells(parse_svg(text)):
        key = (el.get("data-source", ""), el.get("data-destination", ""))
        assert key not in out, f"cell drawn twice: {key}"
        out[key] = (el.get("data-verdict"), classes(el))
    return out


def html_cell_map(text: str) -> dict[tuple[str, str], tuple[str | None, set[str]]]:
    out: dict[tuple[str, str], tuple[str | None, set[str]]] = {}
    for tag, attrs in parse_html(text).tags:
        if tag == "td" and "data-source" in attrs:
            key = (attrs["data-source"] or "", attrs["data-destination"] or "")
            assert key not in out, f"cell drawn twice: {key}"
            out[key] = (attrs.get("data-verdict"), set((attrs.get("class") or "").split()))
    return out


def check_full(
    table: TruthTable,
    cells: dict[tuple[str, str], tuple[str | None, set[str]]],
    differing: set[tuple[str, str]],
) -> None:
    """Every (source, destination) drawn once, with the table's verdict; highlighted iff differing."""
    assert set(cells) == {(s, d) for s in table.sources for d in table.destinations}
    for (s, d), (verdict, cls) in cells.items():
        v = table.get(s, d)
        assert verdict == (v.value if v else None), (s, d)
        if v is None:
            assert "diagonal" in cls
        else:
            assert v.value.lower() in cls
    assert {k for k, (_, cls) in cells.items() if "differs" in cls} == differing


# ---------------------------------------------------------------------------------------------
# The seed


@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
@pytest.mark.parametrize("as_baseline", [False, True], ids=["cells", "baseline"])
def test_seed_svg_highlights_exactly_the_seven_differing_cells(seed, grouped, as_baseline):
    seg, full = tables(seed)
    assert seg.differing(full) == SEED_DIFFERING
    highlight = full if as_baseline else seg.differing(full)
    text = matrix_svg(seg, highlight, FULL.value, "segregation", topology=seed if grouped else None)
    check_full(seg, svg_cell_map(text), SEED_DIFFERING)
    assert "differs from FullPodToPod" in text


@pytest.mark.parametrize("as_baseline", [False, True], ids=["cells", "baseline"])
def test_seed_html_highlights_exactly_the_seven_differing_cells(seed, as_baseline):
    seg, full = tables(seed)
    highlight = full if as_baseline else seg.differing(full)
    text = matrix_html(seg, highlight, FULL.value, "segregation", topology=seed)
    self_contained(text)
    check_full(seg, html_cell_map(text), SEED_DIFFERING)


def test_full_pod_to_pod_against_itself_highlights_nothing(seed):
    _, full = tables(seed)
    text = matrix_svg(full, full, FULL.value, "full", topology=seed)
    check_full(full, svg_cell_map(text), set())


def test_seed_groups_follow_clusters_and_namespaces_and_keep_the_seed_order(seed):
    seg, full = tables(seed)
    view = matrix_view(seg, full, topology=seed)
    assert [r.name for r in view.rows] == ["P1", "P2", "P3", "P4", "P5"]
    assert [c.name for c in view.cols] == [*seg.destinations]
    assert [r.group.key for r in view.rows] == [
        ("pods in C1", "default"),
        ("pods in C1", "offloaded"),
        ("pods in C1", "offloaded"),
        ("pods in C2", "offloaded (from C1)"),
        ("pods in C2", "default"),
    ]
    assert [r.group.offloaded for r in view.rows] == [False, True, True, True, False]
    svg = matrix_svg(seg, full, FULL.value, "t", topology=seed)
    root = parse_svg(svg)
    bands = [el for el in root.iter() if "band" in classes(el)]
    labels = {"".join(t.itertext()) for b in bands for t in b if t.tag.endswith("text")}
    assert {"pods in C1", "pods in C2", "C1", "C2", "default", "offloaded", "Internet"} <= labels


def test_figures_are_deterministic(seed):
    seg, full = tables(seed)
    assert matrix_svg(seg, full, "F", "t", topology=seed) == matrix_svg(
        seg, full, "F", "t", topology=seed
    )
    assert matrix_html(seg, full, "F", "t", topology=seed) == matrix_html(
        seg, full, "F", "t", topology=seed
    )


def test_partial_and_error_cells_are_drawn_distinctly(seed):
    seg, _ = tables(seed)
    cells = {(s, d): v for s, d, v in seg.cells()}
    cells["P1", "S2"] = Verdict.PARTIAL
    cells["P2", "I2"] = Verdict.ERROR
    observed = TruthTable.from_cells(seg.security_mode, seg.sources, seg.destinations, cells)
    for text, cell_map in (
        (matrix_svg(observed), svg_cell_map),
        (matrix_html(observed), html_cell_map),
    ):
        drawn = cell_map(text)
        assert drawn["P1", "S2"] == ("PARTIAL", {"cell", "partial"})
        assert drawn["P2", "I2"] == ("ERROR", {"cell", "error"})
        # The legend explains both.
        assert "some backends only" in text
        assert "probe failed" in text
    svg = matrix_svg(observed)
    css = svg[svg.index("<style>") : svg.index("</style>")]
    colours = {
        v: css.split(f".{v} text {{ fill: ")[1][:7] for v in ("yes", "no", "partial", "error")
    }
    assert len(set(colours.values())) == 4, colours


# ---------------------------------------------------------------------------------------------
# Hostile names: a table can come from an observed JSON, whose names nobody validated.

HOSTILE = [
    "<script>alert(1)</script>",
    'q"uote',
    "a&b",
    "it's",
    "]]>",
    "tab\tand\x01ctl",
    "<!-- c -->",
    "lone\udc80surrogate",
]


def hostile_table() -> TruthTable:
    sources = HOSTILE[:5]
    destinations = HOSTILE
    cells = {
        (s, d): Verdict.YES if k % 2 else Verdict.NO
        for k, (s, d) in enumerate((s, d) for s in sources for d in destinations)
    }
    return TruthTable.from_cells("<b>mode</b>", sources, destinations, cells)


def test_hostile_names_are_escaped_in_svg():
    table = hostile_table()
    text = matrix_svg(table, {(HOSTILE[0], HOSTILE[1])}, "<i>base</i>", "<script>title</script>")
    text.encode("utf-8")  # no lone surrogate left
    root = parse_svg(text)
    assert not [el for el in root.iter() if el.tag.split("}")[-1] in ("script", "b", "i")]
    assert "<script>" not in text
    drawn = svg_cell_map(text)
    sources = {s for s, _ in drawn}
    assert HOSTILE[0] in sources and 'q"uote' in sources and "a&b" in sources
    assert [k for k, (_, cls) in drawn.items() if "differs" in cls] == [(HOSTILE[0], HOSTILE[1])]


def test_hostile_names_are_escaped_in_html():
    table = hostile_table()
    text = matrix_html(table, {(HOSTILE[0], HOSTILE[1])}, "<i>base</i>", "<script>title</script>")
    text.encode("utf-8")
    self_contained(text)
    assert "<script>" not in text
    p = parse_html(text)
    assert "<script>title</script>" in "".join(p.text)
    drawn = html_cell_map(text)
    assert [k for k, (_, cls) in drawn.items() if "differs" in cls] == [(HOSTILE[0], HOSTILE[1])]


# ---------------------------------------------------------------------------------------------
# Generated topologies


@budget("figure-highlight")
@given(data=topologies())
def test_any_topology_highlight_is_exactly_differing(data):
    t = topology_from_data(data, "generated")
    seg, full = tables(t)
    differing = seg.differing(full)
    for highlight in (differing, full):
        check_full(seg, svg_cell_map(matrix_svg(seg, highlight, "F", "t", topology=t)), differing)
        check_full(seg, html_cell_map(matrix_html(seg, highlight, "F", "t", topology=t)), differing)


def check_class_view(
    table: TruthTable, differing: set[tuple[str, str]], highlight: Any, topology: Topology | None
) -> None:
    """Every source in one row, every destination in one column; each drawn cell stands for the
    table cells of its row x column (diagonal left out), all of its verdict, with the right
    count of highlighted ones."""
    view = matrix_view(table, highlight, topology=topology, compress=True)
    groups = {
        r.name: r.group for r in matrix_view(table, (), topology=topology, compress=False).rows
    }
    assert sorted(m for r in view.rows for m in r.members) == sorted(table.sources)
    assert sorted(m for c in view.cols for m in c.members) == sorted(table.destinations)
    for r, row in zip(view.rows, view.grid, strict=True):
        for c, shown in zip(view.cols, row, strict=True):
            members = [(s, d) for s in r.members for d in c.members if s != d]
            assert shown.cells == len(members)
            assert {table[m] for m in members} == ({shown.verdict} if members else set())
            assert shown.highlighted == sum(m in differing for m in members)
        # Merging never crosses a group.
        assert {groups[s] for s in r.members} == {r.group}


@budget("figure-classes")
@given(data=topologies())
def test_any_topology_class_view_is_faithful(data):
    t = topology_from_data(data, "generated")
    seg, full = tables(t)
    differing = seg.differing(full)
    check_class_view(seg, differing, full, None)
    check_class_view(seg, differing, differing, None)


def test_class_view_of_a_dense_observed_table_is_faithful(seed):
    seg, full = tables(seed)
    observed = TruthTable.from_cells(
        seg.security_mode, seg.sources, seg.destinations, {(s, d): v for s, d, v in seg.cells()}
    )
    differing = observed.differing(full)
    check_class_view(observed, differing, full, seed)
    check_class_view(observed, differing, differing, seed)


def test_seed_class_view_merges_p2_and_p3(seed):
    seg, full = tables(seed)
    view = matrix_view(seg, full, topology=seed, compress=True)
    assert [r.members for r in view.rows] == [("P1",), ("P2", "P3"), ("P4",), ("P5",)]
    text = matrix_svg(seg, full, FULL.value, "classes", topology=seed, compress=True)
    root = parse_svg(text)
    heads = [
        el for el in root.iter() if el.get("data-source") == "P2" and "cell" not in classes(el)
    ]
    (head,) = heads
    assert "P2 +1" in "".join(head.itertext())
    assert "2 sources alike: P2, P3" in "".join(head.itertext())  # the <title> tooltip
    check_class_view(seg, seg.differing(full), full, seed)


def test_a_few_hundred_pods_stay_in_the_full_view_with_small_cells():
    t = scaled_topology(120, 3)
    seg, full = tables(t)
    assert len(seg.destinations) > BIG_COLUMNS
    text = matrix_svg(seg, full, FULL.value, "120 pods", topology=t)
    check_full(seg, svg_cell_map(text), seg.differing(full))
    assert 'class="cells small"' in text
    assert "rotate(-90" in text  # column names stand upright


def test_past_the_threshold_the_class_view_is_drawn():
    t = scaled_topology(MAX_LINES + 20, 3)
    seg, full = tables(t)
    view = matrix_view(seg, full, topology=t)
    assert view.compressed
    assert len(view.rows) < 20 and len(view.cols) < 30
    text = matrix_svg(seg, full, FULL.value, "many", topology=t)
    assert len(text) < 500_000
    root = parse_svg(text)
    cells = svg_cells(root)
    assert len(cells) == len(view.rows) * len(view.cols)
    # Each drawn cell says how many table cells it stands for; together, the whole table.
    assert sum(int(c.get("data-cells", "0")) for c in cells) == len(seg.sources) * len(
        seg.destinations
    ) - len(seg.sources)
    highlighted = sum(int(c.get("data-highlighted", "0")) for c in cells)
    assert highlighted == len(seg.differing(full))
    check_class_view(seg, seg.differing(full), full, t)
