"""Two tables side by side on a console that prints no style (a pipe, a file, ``TERM=dumb``) are
drawn without rich's per-cell layout (``render._print_plain_pair``): the text must be exactly
what rich prints for the same tables, which is what this compares, over tables of every shape."""

from __future__ import annotations

import io
import random

from rich.columns import Columns
from rich.console import Console

from edits import edited, three
from gen import generate, generate_services
from labkit import seed_topology
from peerwall.cli import render
from peerwall.model import SecurityMode, Topology, topology_from_data
from peerwall.policy import TruthTable, expect

Cell = tuple[str, str]


def by_rich(
    console: Console,
    left: TruthTable,
    right: TruthTable,
    highlight: set[Cell],
    titles: tuple[str, str],
) -> None:
    """``print_side_by_side`` before the plain drawing: rich lays out every cell."""
    tables = [
        render.rich_table(left, title=titles[0], colors=False),
        render.rich_table(right, highlight, title=titles[1], colors=False),
    ]
    wide = console.options.update_width(1 << 20)
    needed = sum(console.measure(t, options=wide).maximum for t in tables) + 4
    if needed <= console.width or not console.is_terminal:
        with render._at_least(console, needed):
            console.print(Columns(tables, padding=(0, 4)))
    else:
        for t in tables:
            console.print(t)


def topologies(seed_text: str) -> list[tuple[str, Topology]]:
    """Small tables of several shapes (rich's side of the comparison costs tens of ms a table)."""
    out = [("seed", seed_topology(seed_text)), ("three", topology_from_data(three(), "three"))]
    rnd = random.Random(5)
    for i, (what, _kind, data) in enumerate(edited(rnd, three(), rounds=1)):
        if i % 5 == 0:
            out.append((f"three after {what}", topology_from_data(data, "edited")))
    for seed in range(2):
        out.append(
            (f"generated {seed}", topology_from_data(generate(seed, clusters=3 + seed % 2), "g"))
        )
    return out


def compare(
    how: dict[str, object],
    left: TruthTable,
    right: TruthTable,
    highlight: set[Cell],
    titles: tuple[str, str],
) -> bool:
    """``print_side_by_side`` prints what rich prints; True if it drew the tables itself."""
    a, b = Console(file=io.StringIO(), **how), Console(file=io.StringIO(), **how)  # type: ignore[arg-type]
    render.print_side_by_side(a, left, right, highlight, titles=titles, marked="m")
    by_rich(b, left, right, highlight, titles)
    printed: str = a.file.getvalue()  # type: ignore[attr-defined]
    legend = printed.rsplit("\n", 2)[-2]
    assert printed == b.file.getvalue() + legend + "\n", (how, titles)  # type: ignore[attr-defined]
    return render._print_plain_pair(
        Console(file=io.StringIO(), **how), left, right, highlight, titles
    )  # type: ignore[arg-type]


def tables(topology: Topology) -> tuple[TruthTable, TruthTable, set[Cell]]:
    left = expect(topology, SecurityMode.FULL_POD_TO_POD).table
    right = expect(topology, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    return left, right, {(m.source, m.destination) for m in left.compare(right).mismatches()}


def test_plain_side_by_side_is_what_rich_prints_into_a_pipe(seed_text: str) -> None:
    rnd = random.Random(7)
    pipe: dict[str, object] = {"width": 80}
    drawn = []
    for name, topology in topologies(seed_text):
        left, right, differ = tables(topology)
        cells = [(s, d) for s in right.sources for d in right.destinations if right.get(s, d)]
        for highlight in (set(), differ, set(rnd.sample(cells, 7))):
            drawn.append(compare(pipe, left, right, highlight, ("expected", "observed")))
        # A title wider than the table: rich wraps it, and is left to do so.
        assert not compare(pipe, left, right, differ, ("", "wider than the table " * 12)), name
    assert len(drawn) >= 18 and all(drawn)
    # Services with 0 to 3 backends (PARTIAL cells, long names), 41 x 53 cells.
    left, right, differ = tables(topology_from_data(generate_services(3, big=3), "s"))
    assert compare(pipe, left, right, differ, ("expected", "observed"))


def test_plain_side_by_side_on_a_terminal_without_styles(seed_text: str) -> None:
    left, right, differ = tables(topology_from_data(three(), "three"))
    dumb = {"force_terminal": True, "color_system": None}
    assert compare({**dumb, "width": 1000}, left, right, differ, ("expected", "observed"))
    # Too narrow for the two: rich prints one above the other, and is left to do so.
    assert not compare({**dumb, "width": 60}, left, right, differ, ("expected", "observed"))
