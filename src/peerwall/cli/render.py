"""Truth tables for people: a rich table in the look of the seed's figures, csv and markdown.

The figures colour YES green and NO red and give a yellow background to the cells that differ from
the FullPodToPod baseline. Without colours (``NO_COLOR``, output not a terminal) those cells carry a
``*`` instead, so the table stays readable in a log or a pipe. ``highlight`` is any set of cells, so
the same renderer can show, say, the cells where an observed table differs from the expected one.

JSON is not here: ``policy.tablejson`` writes the contract.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
from collections.abc import Collection, Iterator, Sequence
from typing import IO, TYPE_CHECKING

import yaml
from rich import box
from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from rich.text import Text

from peerwall.policy.verdict import Verdict

if TYPE_CHECKING:
    from peerwall.policy import TruthTable

Cell = tuple[str, str]

MAX_TABLE_DESTINATIONS = 60
"""Beyond this many columns a terminal table is unreadable: suggest json or csv instead."""

MARK = "*"
"""Marks a highlighted cell when colours are off."""

STYLES = {
    Verdict.YES: "bold green",
    Verdict.NO: "bold red",
    Verdict.PARTIAL: "bold dark_orange",
    Verdict.ERROR: "bold magenta",
}
HIGHLIGHT = "on #fff2cc"  # the figures' yellow
HIGHLIGHT_16 = "on yellow"  # #fff2cc would fall to white on a 16-colour terminal
HEADER = "bold white on #0e58c4"  # the figures' blue headers


def too_large(sources: int, destinations: int, what: str, hint: str) -> str:
    """Why a table is not printed: the one wording of every command that refuses one."""
    return (
        f"{sources} sources x {destinations} destinations is too large for a readable {what}: "
        f"{hint}."
    )


def write_document(doc: object, out: IO[str], fmt: str) -> None:
    """A JSON-able document as ``json`` (indented) or ``yaml`` (the same document)."""
    if fmt == "yaml":
        write_yaml(doc, out)
        return
    json.dump(doc, out, indent=1)
    out.write("\n")


def write_yaml(doc: object, out: IO[str]) -> None:
    """The document as YAML, keys in the order of the JSON (no sorting, no anchors)."""
    yaml.dump(doc, out, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)


class _Dumper(yaml.SafeDumper):
    """Safe, and never ``&id001`` aliases: a shared list is written out each time."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def name_list(names: Sequence[str], limit: int = 6) -> str:
    """``a, b, c and 4 more``: the first ``limit`` names, then how many are left out."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _center(word: str, width: int) -> str:
    """Centred, the odd space on the right (so YES and NO start in the same column)."""
    left = (width - len(word)) // 2
    return " " * left + word + " " * (width - len(word) - left)


def colors_enabled(console: Console) -> bool:
    return console.color_system is not None and not console.no_color


def highlight_style(console: Console) -> str:
    return HIGHLIGHT if console.color_system in ("256", "truecolor") else HIGHLIGHT_16


def verdicts_in(table: TruthTable) -> list[Verdict]:
    """The verdicts the table uses, in enum order (for the legend and the column widths)."""
    used = {v for row in table.blocks for v in row}
    return [v for v in Verdict if v in used]


@dataclasses.dataclass(frozen=True)
class _Grid:
    """A table's every string, cut to its column's width: what ``rich_table`` lays out, and what
    ``_square_lines`` draws without rich when no style is printed."""

    label: str
    """The header of the source column."""
    heads: list[str]
    widths: list[int]
    """Of every column, the source column first."""
    rows: list[tuple[str, list[tuple[str, str]]]]
    """Each source's label and its cells: (text, style)."""


def _grid(
    table: TruthTable,
    highlight: Collection[Cell],
    *,
    colors: bool,
    highlight_bg: str,
    compact: bool,
) -> _Grid:
    marker = "" if colors else MARK
    pad = 1 if compact else 2

    def word(v: Verdict, hit: bool) -> str:
        return (v.mark if compact else v.value) + (marker if hit else "")

    # Each column is as wide as its header and its widest word, plus room for the marker if any
    # cell is marked; words are left-aligned in a centred slot so that they line up.
    extra = len(marker) if highlight else 0
    slots = []
    for c in table.col_class:
        used = {row[c] for row in table.blocks}
        slots.append(max((len(word(v, False)) for v in used), default=1) + extra)

    def cell(s: str, d: str, slot: int, width: int) -> tuple[str, str]:
        v = table.get(s, d)
        if v is None:
            return " " * width, ""
        hit = (s, d) in highlight
        text = _center(word(v, hit).ljust(slot), width)
        if not colors:
            return text, ""
        return text, STYLES[v] + (f" {highlight_bg}" if hit else "")

    label_width = max(map(len, ("source", *table.sources))) + pad
    widths = [max(len(d), slot) + pad for d, slot in zip(table.destinations, slots, strict=True)]
    columns = list(zip(table.destinations, slots, widths, strict=True))
    return _Grid(
        " source".ljust(label_width),
        [_center(d, w) for d, w in zip(table.destinations, widths, strict=True)],
        [label_width, *widths],
        [(f" {s}".ljust(label_width), [cell(s, *col) for col in columns]) for s in table.sources],
    )


def rich_table(
    table: TruthTable,
    highlight: Collection[Cell] = (),
    *,
    title: str | None = None,
    colors: bool = True,
    highlight_bg: str = HIGHLIGHT,
    compact: bool = False,
) -> Table:
    """Rows are sources, columns destinations; ``compact`` uses one-character marks.

    Cells are padded by hand (the table has no padding) so that a highlighted cell is yellow from
    border to border, as in the figures.
    """
    grid = _grid(table, highlight, colors=colors, highlight_bg=highlight_bg, compact=compact)
    out = Table(
        title=Text(title, style="bold") if title else None,
        box=box.SIMPLE_HEAD if compact else box.SQUARE,
        padding=0,
        pad_edge=False,
        header_style=HEADER if colors else "bold",
    )
    out.add_column(
        Text(grid.label),
        style=HEADER if colors else "bold",
        min_width=grid.widths[0],
        no_wrap=True,
    )
    for head, w in zip(grid.heads, grid.widths[1:], strict=True):
        out.add_column(Text(head), width=w, no_wrap=True)
    for label, cells in grid.rows:
        out.add_row(Text(label), *(Text(text, style=style) for text, style in cells))
    return out


def _square_lines(grid: _Grid, title: str | None) -> list[str] | None:
    """The lines rich prints for ``rich_table(..., compact=False)`` on a console that prints no
    style, drawn here in time linear in the lines rather than in the cells (rich measures,
    wraps and crops every cell: seconds for a lab's 60,000-cell table). None for what this does
    not draw: a title wider than the table (rich wraps it)."""
    b = box.SQUARE
    if not all(
        t.isascii() and t.isprintable()
        for t in (grid.label, *grid.heads, *(label for label, _ in grid.rows))
    ):
        return None  # a character wider than one cell: rich measures it
    width = sum(grid.widths) + len(grid.widths) + 1
    lines = []
    if title:
        title = title.rstrip()
        if len(title) > width or not (title.isascii() and title.isprintable()):
            return None
        left = (width - len(title)) // 2
        lines.append(" " * left + title + " " * (width - len(title) - left))
    rules = ["─" * w for w in grid.widths]
    lines.append(b.top_left + b.top_divider.join(rules) + b.top_right)
    lines.append(b.head_left + b.head_vertical.join([grid.label, *grid.heads]) + b.head_right)
    lines.append(b.head_row_left + b.head_row_cross.join(rules) + b.head_row_right)
    for label, cells in grid.rows:
        lines.append(
            b.mid_left + b.mid_vertical.join([label, *(t for t, _ in cells)]) + b.mid_right
        )
    lines.append(b.bottom_left + b.bottom_divider.join(rules) + b.bottom_right)
    return lines


def legend(
    table: TruthTable,
    baseline: str | None,
    *,
    colors: bool,
    highlight_bg: str = HIGHLIGHT,
    compact: bool = False,
) -> Text:
    """One line: what each verdict means and what a highlighted cell is."""
    out = Text()
    for v in verdicts_in(table):
        out.append(v.mark if compact else v.value, style=STYLES[v] if colors else "")
        out.append(f" {v.meaning}   ")
    if baseline:
        if colors:
            out.append(" yellow ", style=f"black {highlight_bg}")
        else:
            out.append(MARK)
        out.append(f" differs from {baseline}")
    out.rstrip()
    return out


def print_table(
    console: Console,
    table: TruthTable,
    highlight: Collection[Cell] = (),
    *,
    title: str | None = None,
    baseline: str | None = None,
) -> None:
    """The table and its legend; on a terminal too narrow for it, one-character marks."""
    colors = colors_enabled(console)
    bg = highlight_style(console)

    def build(compact: bool) -> Table:
        return rich_table(
            table, highlight, title=title, colors=colors, highlight_bg=bg, compact=compact
        )

    def natural_width(t: Table) -> int:
        return console.measure(t, options=console.options.update_width(1 << 20)).maximum

    compact = False
    rendered = build(compact)
    needed = natural_width(rendered)
    if console.is_terminal and needed > console.width:
        compact = True
        rendered = build(compact)
        needed = natural_width(rendered)
        if needed > console.width:
            console.print(
                f"(the table is {needed} columns wide, the terminal {console.width}: "
                "try '| less -S', or --output csv)",
                style="dim",
                soft_wrap=True,
            )
    # Never squeeze the table (rich would cut cells to '…'): past the width, lines are long.
    with _at_least(console, needed):
        console.print(rendered)
    shown = baseline if highlight else None
    key = legend(table, shown, colors=colors, highlight_bg=bg, compact=compact)
    if key.plain:
        console.print(key, soft_wrap=True)


@contextlib.contextmanager
def _at_least(console: Console, width: int) -> Iterator[None]:
    """``console`` at least ``width`` wide meanwhile, then exactly as it was: restoring the width
    it had would pin a console that follows the terminal (or COLUMNS) to that width for good, and
    a console shared by later commands (a module's) would wrap their lines there."""
    own = console._width  # None: follow the terminal (the public setter cannot say so)
    console.width = max(console.width, width)
    try:
        yield
    finally:
        console._width = own


def _rows(table: TruthTable, diagonal: str) -> Iterator[tuple[str, list[str]]]:
    """Each source with its cells as strings, ``diagonal`` in its own column."""
    for s, values, j in table.formatted_rows(lambda _d, v: v.value):
        yield s, values if j is None else [*values[:j], diagonal, *values[j + 1 :]]


def write_csv(table: TruthTable, out: IO[str]) -> None:
    """Header ``source,<destinations...>``, one row per source, the diagonal empty."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["source", *table.destinations])
    for s, values in _rows(table, ""):
        writer.writerow([s, *values])


def write_markdown(
    table: TruthTable,
    out: IO[str],
    highlight: Collection[Cell] = (),
    *,
    caption: str | None = None,
) -> None:
    """A GitHub table (rows are sources), the diagonal empty, highlighted cells in bold."""
    if caption:
        out.write(caption + "\n\n")
    out.write("| source | " + " | ".join(table.destinations) + " |\n")
    out.write("|---|" + ":---:|" * len(table.destinations) + "\n")
    for s, values in _rows(table, ""):
        cells = [
            f"**{v}**" if v and (s, d) in highlight else v
            for d, v in zip(table.destinations, values, strict=True)
        ]
        out.write(f"| {s} | " + " | ".join(cells) + " |\n")


def _print_plain_pair(
    console: Console,
    left: TruthTable,
    right: TruthTable,
    highlight: Collection[Cell],
    titles: tuple[str, str],
) -> bool:
    """``print_side_by_side``'s two tables side by side as rich's ``Columns`` prints them on a
    console that prints no style (a pipe, a file, ``TERM=dumb``); False, having printed nothing,
    where that is not what rich would print (stacked tables, a title rich would wrap)."""
    pair = [
        _square_lines(_grid(t, marks, colors=False, highlight_bg="", compact=False), title)
        for t, marks, title in ((left, (), titles[0]), (right, highlight, titles[1]))
    ]
    if pair[0] is None or pair[1] is None or len(pair[0]) != len(pair[1]):
        return False
    needed = len(pair[0][0]) + 4 + len(pair[1][0])
    if needed > console.width and console.is_terminal:
        return False
    with _at_least(console, needed):
        console.print(
            Text("\n".join(a + "    " + b for a, b in zip(*pair, strict=True))), soft_wrap=True
        )
    return True


def print_side_by_side(
    console: Console,
    left: TruthTable,
    right: TruthTable,
    highlight: Collection[Cell],
    *,
    titles: tuple[str, str],
    marked: str,
) -> None:
    """Two tables next to each other (stacked if the terminal is too narrow); ``highlight``
    marks cells of the right-hand one, explained in the legend as ``marked``."""
    colors = colors_enabled(console)
    bg = highlight_style(console)
    # On a console that prints no style, the same text without rich's per-cell layout.
    if not (
        console.color_system is None and _print_plain_pair(console, left, right, highlight, titles)
    ):
        tables = [
            rich_table(left, title=titles[0], colors=colors, highlight_bg=bg),
            rich_table(right, highlight, title=titles[1], colors=colors, highlight_bg=bg),
        ]
        wide = console.options.update_width(1 << 20)
        needed = sum(console.measure(t, options=wide).maximum for t in tables) + 4
        if needed <= console.width or not console.is_terminal:
            with _at_least(console, needed):
                console.print(Columns(tables, padding=(0, 4)))
        else:
            for t in tables:
                console.print(t)
    used = Text()
    verdicts = dict.fromkeys([*verdicts_in(left), *verdicts_in(right)])
    for v in verdicts:
        used.append(v.value, style=STYLES[v] if colors else "")
        used.append(f" {v.meaning}   ")
    if highlight:
        used.append(" yellow " if colors else MARK, style=f"black {bg}" if colors else "")
        used.append(f" {marked}")
    console.print(used, soft_wrap=True)
