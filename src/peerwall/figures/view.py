"""What a matrix figure shows, before it is drawn: lines (rows, columns), their groups, their cells.

Both renderers (SVG and HTML) draw a ``MatrixView``, so they agree on order, grouping, merging and
highlighting, and the tests can check the view once.

- **Full view**: one line per source and per destination. With a topology, lines are grouped by
  the cluster a pod runs in (a service: its home cluster) and then by namespace; groups come in
  file order, inside a cluster in the order of their first member in the file.
- **Class view** (past ``MAX_LINES`` sources or destinations, or on request): lines with identical
  cells inside one group collapse into one line that stands for all its members. The table's own
  equivalence classes (``row_class``/``col_class``/``blocks``) are the starting point, so building
  the view costs per pair of classes, not per cell; the highlight is part of what must be
  identical, so a merged cell is highlighted either wholly or, when members differ, marked as
  partly highlighted with a count.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from peerwall.model.topology import Topology
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict

__all__ = ["MAX_LINES", "Group", "Line", "MatrixView", "Shown", "matrix_view"]

Cell = tuple[str, str]

MAX_LINES = 400
"""Past this many sources or destinations the full view is unreadable (and tens of megabytes):
the class view is drawn instead."""


@dataclass(frozen=True, order=True)
class Group:
    """Where a line belongs: ``outer`` (a cluster, or a kind of destination) and ``inner``
    (a namespace). ``offloaded`` marks a namespace that is offloaded (the figures colour it)."""

    outer: tuple[str, ...] = ()
    """Label candidates, longest first: the renderer takes the first that fits."""
    inner: tuple[str, ...] = ()
    offloaded: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.outer[0] if self.outer else "", self.inner[0] if self.inner else "")


NO_GROUP = Group()


@dataclass(frozen=True)
class Line:
    """One drawn row or column: a source or destination, or (class view) several alike."""

    members: tuple[str, ...]
    group: Group

    @property
    def name(self) -> str:
        return self.members[0]

    @property
    def label(self) -> str:
        n = len(self.members)
        return self.members[0] if n == 1 else f"{self.members[0]} +{n - 1}"

    @property
    def merged(self) -> bool:
        return len(self.members) > 1


@dataclass(frozen=True)
class Shown:
    """One drawn cell: its verdict (None where it covers only the diagonal), how many table cells
    it stands for and how many of those are highlighted."""

    verdict: Verdict | None
    cells: int
    highlighted: int

    @property
    def state(self) -> str:
        """``"all"``, ``"some"`` or ``""``: how much of the cell is highlighted."""
        if not self.highlighted:
            return ""
        return "all" if self.highlighted == self.cells else "some"


@dataclass(frozen=True)
class MatrixView:
    rows: tuple[Line, ...]
    cols: tuple[Line, ...]
    grid: tuple[tuple[Shown, ...], ...]
    """``grid[row][col]``."""
    compressed: bool
    sources: int
    destinations: int
    """How many sources and destinations the table has (the class view shows fewer lines)."""

    def verdicts(self) -> list[Verdict]:
        """Verdicts drawn, in enum order (for the legend)."""
        used = {c.verdict for row in self.grid for c in row if c.verdict is not None}
        return [v for v in Verdict if v in used]

    @property
    def grouped(self) -> bool:
        return any(line.group != NO_GROUP for line in (*self.rows, *self.cols))

    def highlighted(self) -> set[Cell]:
        """The (source, destination) of each highlighted drawn cell (full view: table cells)."""
        return {
            (r.name, c.name)
            for r, row in zip(self.rows, self.grid, strict=True)
            for c, shown in zip(self.cols, row, strict=True)
            if shown.highlighted
        }


# ---------------------------------------------------------------------------------------------
# Groups


def _groups(topology: Topology) -> tuple[dict[str, Group], dict[str, tuple[int, ...]]]:
    """Each table name's group, and a sort key: pods, services, Internets, API servers; pods by
    the cluster they run in and services by their home cluster, in file order; inside a cluster,
    namespace groups in the order their first member appears in the file (so the seed's table
    keeps its order), and file order inside a group."""
    cluster_index = {c.name: c.index for c in topology.clusters}
    offloaded = {(n.cluster, n.name) for n in topology.namespaces if n.offloaded_to}
    group: dict[str, Group] = {}
    order: dict[str, tuple[int, ...]] = {}
    first: dict[tuple[int, str, str, str], int] = {}

    def rank(kind: int, cluster: str, home: str, namespace: str) -> int:
        return first.setdefault((kind, cluster, home, namespace), len(first))

    for i, p in enumerate(topology.pods):
        inner: tuple[str, ...] = (p.namespace,)
        if p.offloaded:
            inner = (f"{p.namespace} (from {p.home})", f"{p.namespace} ←{p.home}", p.namespace)
        ns = (p.home, p.namespace)
        group[p.name] = Group((f"pods in {p.physical}", p.physical), inner, ns in offloaded)
        place = rank(0, p.physical, *ns)
        order[p.name] = (0, cluster_index[p.physical], place, i)
    for i, s in enumerate(topology.services):
        ns = (s.home, s.namespace)
        group[s.name] = Group((f"services of {s.home}", s.home), (s.namespace,), ns in offloaded)
        order[s.name] = (1, cluster_index[s.home], rank(1, s.home, *ns), i)
    for c in topology.clusters:
        group[c.internet] = Group(("Internet", "Inet"))
        order[c.internet] = (2, c.index, 0, 0)
        if c.api_server:
            group[c.api_server] = Group(("API servers", "API"))
            order[c.api_server] = (3, c.index, 0, 0)
    return group, order


# ---------------------------------------------------------------------------------------------
# Views


def matrix_view(
    table: TruthTable,
    highlight: Collection[Cell] | TruthTable = (),
    *,
    topology: Topology | None = None,
    compress: bool | None = None,
) -> MatrixView:
    """The view of ``table``; ``compress`` None chooses the class view past ``MAX_LINES``.

    ``highlight`` is a set of cells, or a baseline table: then the cells highlighted are exactly
    ``table.differing(baseline)``, found per pair of classes, so a table over thousands of pods
    is compared without visiting (or holding) its millions of cells.

    Names the topology does not know (an observed table may carry others) go last, ungrouped.
    """
    if compress is None:
        compress = max(len(table.sources), len(table.destinations)) > MAX_LINES
    groups, order = _groups(topology) if topology is not None else ({}, {})
    unknown = (9,)

    def ordered(names: Sequence[str]) -> list[int]:
        return sorted(range(len(names)), key=lambda k: (order.get(names[k], unknown), k))

    src_order = ordered(table.sources)
    dst_order = ordered(table.destinations)
    if isinstance(highlight, TruthTable):
        marks = _Marks(table, baseline=highlight)
    else:
        marks = _Marks(table, cells=_highlight_index(table, highlight))
    if compress:
        return _class_view(table, marks, groups, src_order, dst_order)
    return _full_view(table, marks, groups, src_order, dst_order)


def _highlight_index(table: TruthTable, highlight: Collection[Cell]) -> set[tuple[int, int]]:
    """Highlighted cells as (source index, destination index); the diagonal and names the table
    does not have are dropped, as no cell shows them."""
    src = {s: i for i, s in enumerate(table.sources)}
    dst = {d: j for j, d in enumerate(table.destinations)}
    out = set()
    for s, d in highlight:
        i, j = src.get(s), dst.get(d)
        if i is not None and j is not None and s != d:
            out.add((i, j))
    return out


class _Marks:
    """Which cells are highlighted: a given set, or those the truth table marks as differing from
    a baseline's (``TruthTable.differences``). Without a baseline every name's baseline class is 0,
    so the class view's units are the table's own classes."""

    def __init__(
        self,
        table: TruthTable,
        *,
        cells: set[tuple[int, int]] | None = None,
        baseline: TruthTable | None = None,
    ) -> None:
        self.table = table
        self.cells = cells or set()
        self.differences = table.differences(baseline) if baseline is not None else None
        self.row_class: tuple[int, ...] = (0,) * len(table.sources)
        self.col_class: tuple[int, ...] = (0,) * len(table.destinations)
        if self.differences is not None:
            self.row_class = self.differences.row_class
            self.col_class = self.differences.col_class

    def cell(self, i: int, j: int, verdict: Verdict) -> bool:
        if self.differences is None:
            return (i, j) in self.cells
        return self.differences.cell(i, j, verdict)


def _full_view(
    table: TruthTable,
    marks: _Marks,
    groups: dict[str, Group],
    src_order: list[int],
    dst_order: list[int],
) -> MatrixView:
    rows = tuple(
        Line((table.sources[i],), groups.get(table.sources[i], NO_GROUP)) for i in src_order
    )
    cols = tuple(
        Line((table.destinations[j],), groups.get(table.destinations[j], NO_GROUP))
        for j in dst_order
    )
    grid = []
    for i in src_order:
        s = table.sources[i]
        block = table.blocks[table.row_class[i]]
        row = []
        for j in dst_order:
            if table.destinations[j] == s:
                row.append(Shown(None, 0, 0))
            else:
                v = block[table.col_class[j]]
                row.append(Shown(v, 1, 1 if marks.cell(i, j, v) else 0))
        grid.append(tuple(row))
    return MatrixView(rows, cols, tuple(grid), False, len(table.sources), len(table.destinations))


Unit = tuple[Group, int, int]
"""(group, table class, baseline class): the finest set of lines the class view may merge. All
members of a pair of units share one verdict and, against a baseline, one baseline verdict."""


def _units(
    names: tuple[str, ...],
    classes: tuple[int, ...],
    baseline_classes: tuple[int, ...],
    groups: dict[str, Group],
    order: list[int],
) -> tuple[list[Unit], dict[Unit, list[int]], list[int]]:
    """Units in display order (of their first member), their members, each name's unit."""
    members: dict[Unit, list[int]] = {}
    for k in order:
        key = (groups.get(names[k], NO_GROUP), classes[k], baseline_classes[k])
        members.setdefault(key, []).append(k)
    units = list(members)
    of = [0] * len(names)
    for n, u in enumerate(units):
        for k in members[u]:
            of[k] = n
    return units, members, of


def _class_view(
    table: TruthTable,
    marks: _Marks,
    groups: dict[str, Group],
    src_order: list[int],
    dst_order: list[int],
) -> MatrixView:
    r_units, r_members, r_of = _units(
        table.sources, table.row_class, marks.row_class, groups, src_order
    )
    c_units, c_members, c_of = _units(
        table.destinations, table.col_class, marks.col_class, groups, dst_order
    )
    nr, nc = len(r_units), len(c_units)
    # Cells per pair of units: |rows| x |columns| less the diagonal cells the pair contains.
    size = [[len(r_members[ru]) * len(c_members[cu]) for cu in c_units] for ru in r_units]
    dst_index = {d: j for j, d in enumerate(table.destinations)}
    for i, s in enumerate(table.sources):
        j = dst_index.get(s)
        if j is not None:
            size[r_of[i]][c_of[j]] -= 1

    def verdict(a: int, b: int) -> Verdict:
        return table.blocks[r_units[a][1]][c_units[b][1]]

    if (differences := marks.differences) is not None:
        hits = [
            [
                size[a][b]
                if differences.differs(verdict(a, b), r_units[a][2], c_units[b][2])
                else 0
                for b in range(nc)
            ]
            for a in range(nr)
        ]
    else:
        hits = [[0] * nc for _ in range(nr)]
        for i, j in marks.cells:
            hits[r_of[i]][c_of[j]] += 1

    def state(a: int, b: int) -> int:
        return 0 if not hits[a][b] else 2 if hits[a][b] == size[a][b] else 1

    # Rows merge when their group and every (verdict, highlight state) agree; columns then merge
    # the same way over the rows. Two merged rows agree on every column, two merged columns on
    # every row, so every pair of members of a merged cell has one verdict and one state.
    row_sig: dict[tuple[object, ...], list[int]] = {}
    for a in range(nr):
        sig = (r_units[a][0], *((verdict(a, b), state(a, b)) for b in range(nc)))
        row_sig.setdefault(sig, []).append(a)
    col_sig: dict[tuple[object, ...], list[int]] = {}
    for b in range(nc):
        sig = (c_units[b][0], *((verdict(a, b), state(a, b)) for a in range(nr)))
        col_sig.setdefault(sig, []).append(b)
    row_lines = list(row_sig.values())
    col_lines = list(col_sig.values())

    def line(
        units: list[Unit],
        members: dict[Unit, list[int]],
        names: tuple[str, ...],
        rank: dict[int, int],
        us: list[int],
    ) -> Line:
        ks = sorted((k for u in us for k in members[units[u]]), key=rank.__getitem__)
        return Line(tuple(names[k] for k in ks), units[us[0]][0])

    src_rank = {k: n for n, k in enumerate(src_order)}
    dst_rank = {k: n for n, k in enumerate(dst_order)}
    rows = tuple(line(r_units, r_members, table.sources, src_rank, us) for us in row_lines)
    cols = tuple(line(c_units, c_members, table.destinations, dst_rank, us) for us in col_lines)
    grid = []
    for rl in row_lines:
        row = []
        for cl in col_lines:
            cells = sum(size[a][b] for a in rl for b in cl)
            hit = sum(hits[a][b] for a in rl for b in cl)
            row.append(Shown(verdict(rl[0], cl[0]) if cells else None, cells, hit))
        grid.append(tuple(row))
    return MatrixView(rows, cols, tuple(grid), True, len(table.sources), len(table.destinations))
