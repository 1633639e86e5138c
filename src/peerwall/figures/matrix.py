"""Truth tables as figures: SVG in the look of the seed's matrices, and a self-contained HTML page.

Rows are sources, columns destinations. Header row and column are blue with white bold names; a
cell holds its verdict (YES green, NO red, PARTIAL orange, ERROR magenta), highlighted cells have
the seed's yellow background. Up to ``BIG_COLUMNS`` columns the cells are the seed's size with
whole words; past it they shrink to one-letter marks under rotated names, so a few hundred pods
still fit a screen width or two; past ``view.MAX_LINES`` the class view merges identical lines.

Every drawn cell carries ``data-source``, ``data-destination`` and ``data-verdict`` and, when
highlighted, the class ``differs``: tests, CSS and scripts find cells by name, not by position.
In the class view ``data-source``/``data-destination`` name the first member of the line, and
``data-cells``/``data-highlighted`` say how many table cells the drawn cell stands for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

from peerwall.figures import style
from peerwall.figures.markup import FONT, attrs, esc, fit, num, text_width
from peerwall.figures.view import Cell, Line, MatrixView, Shown, matrix_view
from peerwall.model.topology import Topology
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict

__all__ = [
    "BIG_COLUMNS",
    "HTML_CSS",
    "legend_html",
    "matrix_html",
    "matrix_svg",
    "page",
    "table_html",
]

BIG_COLUMNS = 24
"""Up to this many columns, cells are drawn at the seed's size with whole words."""

MARGIN = 12
TITLE_SIZE = 16
BAND = 24
"""Height of a column group band, and the font size of group labels is 12."""
GROUP_FONT = 12
BAND_COLUMN_MAX = 190
"""Row group labels wider than this are cut short (the full label is in the tooltip)."""


@dataclass(frozen=True)
class _Size:
    """Cell and header dimensions of one drawing mode."""

    big: bool
    cell_h: float
    header_h: float
    col_w: tuple[float, ...]
    row_w: float
    font: float

    @property
    def width(self) -> float:
        return sum(self.col_w)


def _sizes(view: MatrixView) -> _Size:
    if len(view.cols) <= BIG_COLUMNS:
        # The seed: 72 x 40 cells, 18 px Helvetica; wider where a name or a word needs it (a
        # PARTIAL is wider than the seed's cell).
        words = [
            max(
                (text_width(v.value, 18, bold=True) + 14 for row in view.grid
                 if (v := row[j].verdict) is not None),
                default=0.0,
            )
            for j in range(len(view.cols))
        ]  # fmt: skip
        col_w = tuple(
            max(72.0, text_width(c.label, 18, bold=True) + 20, words[j])
            for j, c in enumerate(view.cols)
        )
        row_w = max([72.0, *(text_width(r.label, 18, bold=True) + 24 for r in view.rows)])
        return _Size(True, 40, 40, _fit_groups(view.cols, col_w), row_w, 18)
    names = max((text_width(c.label, 12, bold=True) for c in view.cols), default=0)
    row_w = max([60.0, *(text_width(r.label, 12, bold=True) + 16 for r in view.rows)])
    col_w = _fit_groups(view.cols, (20.0,) * len(view.cols))
    return _Size(False, 20, names + 14, col_w, row_w, 12)


def _fit_groups(cols: Sequence[Line], col_w: tuple[float, ...]) -> tuple[float, ...]:
    """Column widths grown so that each group band's full label fits over its columns: a
    narrow group (one service) is not labelled by a fragment ("C2" for "services of C2")."""
    widths = list(col_w)
    for depth in (1, 2):
        for start, n, first in _runs(cols, depth):
            label = first.group.outer if depth == 1 else first.group.inner
            if not label:
                continue
            need = text_width(label[0], GROUP_FONT, bold=True) + 12
            have = sum(widths[start : start + n])
            if have < need:
                for k in range(start, start + n):
                    widths[k] += (need - have) / n
    return tuple(widths)


def _runs(lines: Sequence[Line], depth: int) -> list[tuple[int, int, Line]]:
    """Consecutive lines sharing a group (``depth`` 1: outer label, 2: outer and inner), as
    (first index, count, first line)."""
    out: list[tuple[int, int, Line]] = []
    for k, line in enumerate(lines):
        key = line.group.key[:depth]
        if out and lines[out[-1][0]].group.key[:depth] == key:
            start, n, first = out[-1]
            out[-1] = (start, n + 1, first)
        else:
            out.append((k, 1, line))
    return out


def _members_title(line: Line, kind: str) -> str:
    if not line.merged:
        return line.name
    return f"{len(line.members)} {kind} alike: " + ", ".join(line.members)


def _cell_title(view: MatrixView, shown: Shown, baseline: str | None) -> str | None:
    if not view.compressed or shown.verdict is None:
        return None
    what = f"{shown.cells} cell{'s' if shown.cells != 1 else ''} {shown.verdict.value}"
    if shown.highlighted:
        what += f", {shown.highlighted} differ" + (f" from {baseline}" if baseline else "")
    return what


def _cell_classes(shown: Shown, mark: str) -> str:
    if shown.verdict is None:
        return "cell diagonal"
    out = f"cell {shown.verdict.value.lower()}"
    if shown.state:
        out += f" {mark}" + (" some" if shown.state == "some" else "")
    return out


def _cell_data(view: MatrixView, r: Line, c: Line, shown: Shown) -> dict[str, str | float | None]:
    data: dict[str, str | float | None] = {
        "data-source": r.name,
        "data-destination": c.name,
        "data-verdict": shown.verdict.value if shown.verdict else None,
    }
    if view.compressed:
        data["data-cells"] = shown.cells
        data["data-highlighted"] = shown.highlighted
    return data


# ---------------------------------------------------------------------------------------------
# SVG

_SVG_CSS = f"""
text {{ font-family: {FONT}; }}
.title {{ font-size: {TITLE_SIZE}px; font-weight: bold; fill: {style.INK}; }}
.head rect {{ fill: {style.HEADER}; stroke: #ffffff; stroke-opacity: 0.35; }}
.head text {{ fill: {style.HEADER_TEXT}; font-weight: bold; }}
.band rect {{ fill: {style.GROUP_INNER}; stroke: {style.GRID}; }}
.band text {{ fill: {style.INK}; font-size: {GROUP_FONT}px; font-weight: bold; }}
.band.outer rect {{ fill: {style.GROUP_OUTER}; stroke: #ffffff; stroke-opacity: 0.5; }}
.band.outer text {{ fill: #ffffff; }}
.band.offloaded rect {{ fill: {style.NAMESPACE}; }}
.cell rect {{ fill: #ffffff; stroke: {style.GRID}; }}
.small .cell rect {{ stroke: none; }}
.cell text {{ text-anchor: middle; }}
.small .cell text {{ font-weight: bold; }}
.cell.differs rect {{ fill: {style.HIGHLIGHT}; stroke: {style.HIGHLIGHT_BORDER}; }}
.cell.differs.some rect {{ fill: url(#some); }}
.small .cell.differs rect {{ stroke: none; }}
.yes text {{ fill: {style.VERDICT_COLOURS[Verdict.YES]}; }}
.no text {{ fill: {style.VERDICT_COLOURS[Verdict.NO]}; }}
.partial text {{ fill: {style.VERDICT_COLOURS[Verdict.PARTIAL]}; font-weight: bold; }}
.error text {{ fill: {style.VERDICT_COLOURS[Verdict.ERROR]}; font-weight: bold; }}
.grid line {{ stroke: {style.GRID}; stroke-width: 0.6; }}
.sep {{ stroke: {style.HEADER}; stroke-width: 2.5; }}
.sep.inner {{ stroke: {style.GRID}; stroke-width: 2; }}
.legend text {{ font-size: 13px; fill: {style.INK}; }}
.legend .word {{ font-weight: bold; }}
"""


def _text(
    x: float,
    y: float,
    text: str,
    size: float | None = None,
    *,
    anchor: str | None = "middle",
    cls: str | None = None,
    extra: str = "",
) -> str:
    a = attrs({"x": x, "y": y, "font-size": size, "text-anchor": anchor, "class": cls})
    return f"<text{a}{extra}>{esc(text)}</text>"


def _rect(x: float, y: float, w: float, h: float, **more: str | float | None) -> str:
    return f"<rect{attrs({'x': x, 'y': y, 'width': w, 'height': h, **more})}/>"


def _title(text: str | None) -> str:
    return f"<title>{esc(text)}</title>" if text else ""


def _corner_arrow(x: float, y: float, w: float, h: float) -> str:
    """The seed's corner mark: an arrow bending from the row names up into the column names."""
    # Seed-sized whatever the corner's size (it grows with the group bands), hugging the headers.
    s = 1.0
    cx, cy = x + w - 36, y + h - 22
    d = (
        f"M {num(cx - 12 * s)} {num(cy + 18 * s)} L {num(cx - 12 * s)} {num(cy - 4 * s)} "
        f"L {num(cx + 10 * s)} {num(cy - 4 * s)}"
    )
    head = (
        f"M {num(cx + 8 * s)} {num(cy - 12 * s)} L {num(cx + 20 * s)} {num(cy - 4 * s)} "
        f"L {num(cx + 8 * s)} {num(cy + 4 * s)} Z"
    )
    return (
        f'<g class="corner">{_title("rows: sources; columns: destinations")}'
        f"{_rect(x, y, w, h, fill='#ffffff', stroke=style.GRID)}"
        f'<path d="{d}" fill="none" stroke="{style.HEADER}" stroke-width="{num(6 * s)}"/>'
        f'<path d="{head}" fill="{style.HEADER}"/></g>'
    )


def _legend_items(view: MatrixView, mark_text: str | None) -> list[tuple[str, str]]:
    """(kind of sample, text) pairs; the sample is drawn by the caller."""
    items = [(f"verdict:{v.value}", v.meaning) for v in view.verdicts()]
    if mark_text:
        items.append(("swatch", mark_text))
    if any(c.state == "some" for row in view.grid for c in row):
        items.append(("some", "some of the merged cells"))
    if view.compressed:
        items.append(("text:A +n", "n more alike, merged (hover for the names)"))
    items.append(("blank", "a pod to itself"))
    return items


def _legend_svg(
    view: MatrixView,
    x0: float,
    y0: float,
    max_w: float,
    baseline: str | None,
    mark_text: str | None,
    big: bool,
) -> tuple[str, float, float]:
    """The legend's markup, its width and height; it wraps at ``max_w``."""
    out = ['<g class="legend">']
    x, y, line_h, widest = x0, y0, 24.0, 0.0
    for kind, text in _legend_items(view, mark_text):
        if kind.startswith("verdict:"):
            v = Verdict(kind.split(":", 1)[1])
            sample = v.value if big else f"{style.VERDICT_MARKS[v]} {v.value}"
            sw = text_width(sample, 13, bold=True)
        elif kind.startswith("text:"):
            sample = kind.split(":", 1)[1]
            sw = text_width(sample, 13, bold=True)
        else:
            sample, sw = "", 28.0
        w = sw + 6 + text_width(text, 13) + 22
        if x > x0 and x + w > x0 + max_w:
            x, y = x0, y + line_h
        if kind.startswith("verdict:"):
            v = Verdict(kind.split(":", 1)[1])
            colour = style.VERDICT_COLOURS[v]
            out.append(_text(x, y + 16, sample, anchor=None, cls="word", extra=f' fill="{colour}"'))
        elif kind.startswith("text:"):
            out.append(_text(x, y + 16, sample, anchor=None, cls="word"))
        elif kind == "swatch":
            out.append(_rect(x, y + 3, 28, 18, fill=style.HIGHLIGHT, stroke=style.HIGHLIGHT_BORDER))
        elif kind == "some":
            out.append(_rect(x, y + 3, 28, 18, fill="url(#some)", stroke=style.HIGHLIGHT_BORDER))
        else:
            out.append(_rect(x, y + 3, 28, 18, fill="#ffffff", stroke=style.GRID))
        out.append(_text(x + sw + 6, y + 16, text, anchor=None))
        widest = max(widest, x + w - x0)
        x += w
    out.append("</g>")
    return "".join(out), widest, y + line_h - y0


def _svg_document(
    view: MatrixView, title: str | None, baseline: str | None, mark: str, mark_text: str | None
) -> str:
    size = _sizes(view)
    grouped = view.grouped
    # Row band columns: outer (cluster) and inner (namespace), sized to their widest label.
    outer_w = inner_w = 0.0
    if grouped:
        outer_w = min(
            BAND_COLUMN_MAX,
            max(
                (
                    text_width(r.group.outer[-1], GROUP_FONT, bold=True) + 16
                    for r in view.rows
                    if r.group.outer
                ),
                default=0,
            ),
        )
        inner_w = min(
            BAND_COLUMN_MAX,
            max(
                (
                    text_width(r.group.inner[0], GROUP_FONT, bold=True) + 16
                    for r in view.rows
                    if r.group.inner
                ),
                default=0,
            ),
        )
    title_h = TITLE_SIZE + 14 if title else 0
    bands_h = 2 * BAND if grouped else 0
    x_cells = MARGIN + outer_w + inner_w + size.row_w
    y_cells = MARGIN + title_h + bands_h + size.header_h
    col_x = [x_cells]
    for w in size.col_w:
        col_x.append(col_x[-1] + w)
    row_y = [y_cells + k * size.cell_h for k in range(len(view.rows) + 1)]
    right = col_x[-1]
    bottom = row_y[-1]

    body: list[str] = []
    if title:
        body.append(_text(MARGIN, MARGIN + TITLE_SIZE, title, anchor=None, cls="title"))

    # Corner, over the row headers (and row bands) and below the column bands.
    body.append(_corner_arrow(MARGIN, MARGIN + title_h, x_cells - MARGIN, bands_h + size.header_h))

    # Column bands.
    if grouped:
        y_band = MARGIN + title_h
        body.append('<g class="bands columns">')
        for start, n, first in _runs(view.cols, 1):
            x, w = col_x[start], col_x[start + n] - col_x[start]
            g = first.group
            h: float = BAND if g.inner else 2 * BAND
            label = fit(g.outer, w - 8, GROUP_FONT, bold=True) if g.outer else ""
            body.append(
                f'<g class="band outer">{_title(g.outer[0] if g.outer else "")}{_rect(x, y_band, w, h)}'
                f"{_text(x + w / 2, y_band + h / 2 + 4, label)}</g>"
            )
        for start, n, first in _runs(view.cols, 2):
            g = first.group
            if not g.inner:
                continue
            x, w = col_x[start], col_x[start + n] - col_x[start]
            label = fit(g.inner, w - 8, GROUP_FONT, bold=True)
            cls = "band inner offloaded" if g.offloaded else "band inner"
            body.append(
                f'<g class="{cls}">{_title(g.inner[0])}{_rect(x, y_band + BAND, w, BAND)}'
                f"{_text(x + w / 2, y_band + BAND + BAND / 2 + 4, label)}</g>"
            )
        body.append("</g>")

    # Column headers.
    y_head = y_cells - size.header_h
    body.append('<g class="head columns">')
    for k, c in enumerate(view.cols):
        x, w = col_x[k], size.col_w[k]
        tip = _title(_members_title(c, "destinations"))
        if size.big:
            label = _text(x + w / 2, y_head + size.header_h / 2 + 6, c.label, size.font)
        else:
            # Rotated names read bottom-up, their ends aligned just above the cells.
            tx, ty = x + w / 2 + 4, y_cells - 7
            label = _text(
                tx,
                ty,
                c.label,
                size.font,
                anchor="start",
                extra=f' transform="rotate(-90 {num(tx)} {num(ty)})"',
            )
        body.append(
            f"<g{attrs({'data-destination': c.name})}>{tip}{_rect(x, y_head, w, size.header_h)}{label}</g>"
        )
    body.append("</g>")

    # Row bands.
    if grouped:
        x_outer, x_inner = MARGIN, MARGIN + outer_w
        body.append('<g class="bands rows">')
        for start, n, first in _runs(view.rows, 1):
            y, h = row_y[start], row_y[start + n] - row_y[start]
            g = first.group
            w = outer_w if g.inner else outer_w + inner_w
            label = fit(g.outer[::-1], w - 8, GROUP_FONT, bold=True) if g.outer else ""
            body.append(
                f'<g class="band outer">{_title(g.outer[0] if g.outer else "")}{_rect(x_outer, y, w, h)}'
                f"{_text(x_outer + w / 2, y + h / 2 + 4, label)}</g>"
            )
        for start, n, first in _runs(view.rows, 2):
            g = first.group
            if not g.inner:
                continue
            y, h = row_y[start], row_y[start + n] - row_y[start]
            label = fit(g.inner, inner_w - 8, GROUP_FONT, bold=True)
            cls = "band inner offloaded" if g.offloaded else "band inner"
            body.append(
                f'<g class="{cls}">{_title(g.inner[0])}{_rect(x_inner, y, inner_w, h)}'
                f"{_text(x_inner + inner_w / 2, y + h / 2 + 4, label)}</g>"
            )
        body.append("</g>")

    # Row headers.
    x_head = x_cells - size.row_w
    body.append('<g class="head rows">')
    for k, r in enumerate(view.rows):
        y = row_y[k]
        tip = _title(_members_title(r, "sources"))
        baseline_y = y + size.cell_h / 2 + (6 if size.big else 4)
        body.append(
            f"<g{attrs({'data-source': r.name})}>{tip}{_rect(x_head, y, size.row_w, size.cell_h)}"
            f"{_text(x_head + size.row_w / 2, baseline_y, r.label, size.font)}</g>"
        )
    body.append("</g>")

    # Cells. Small cells draw a background only when highlighted, and the grid as lines.
    body.append(f'<g class="cells{"" if size.big else " small"}" font-size="{num(size.font)}">')
    if not size.big:
        body.append(_rect(x_cells, y_cells, right - x_cells, bottom - y_cells, fill="#ffffff"))
    for i, (r, row) in enumerate(zip(view.rows, view.grid, strict=True)):
        y = row_y[i]
        ty = y + size.cell_h / 2 + (6 if size.big else 4)
        for j, (c, shown) in enumerate(zip(view.cols, row, strict=True)):
            x, w = col_x[j], size.col_w[j]
            cls = _cell_classes(shown, mark)
            data = attrs(_cell_data(view, r, c, shown))
            tip = _title(_cell_title(view, shown, baseline))
            rect = _rect(x, y, w, size.cell_h) if size.big or shown.state else ""
            word = ""
            if shown.verdict is not None:
                text = shown.verdict.value if size.big else style.VERDICT_MARKS[shown.verdict]
                word = _text(x + w / 2, ty, text, anchor=None)
            body.append(f'<g class="{cls}"{data}>{tip}{rect}{word}</g>')
    body.append("</g>")
    if not size.big:
        body.append('<g class="grid">')
        for x in col_x:
            body.append(f"<line{attrs({'x1': x, 'y1': y_cells, 'x2': x, 'y2': bottom})}/>")
        for y in row_y:
            body.append(f"<line{attrs({'x1': x_cells, 'y1': y, 'x2': right, 'y2': y})}/>")
        body.append("</g>")

    # Group separators over the cells.
    if grouped:
        for depth, cls in ((2, "sep inner"), (1, "sep")):
            for start, _, _ in _runs(view.cols, depth)[1:]:
                x = col_x[start]
                body.append(
                    f'<line class="{cls}"{attrs({"x1": x, "y1": y_cells, "x2": x, "y2": bottom})}/>'
                )
            for start, _, _ in _runs(view.rows, depth)[1:]:
                y = row_y[start]
                body.append(
                    f'<line class="{cls}"{attrs({"x1": x_cells, "y1": y, "x2": right, "y2": y})}/>'
                )

    legend, legend_w, legend_h = _legend_svg(
        view, MARGIN, bottom + 14, max(600.0, right - MARGIN), baseline, mark_text, size.big
    )
    body.append(legend)
    width = (
        max(
            right,
            MARGIN + legend_w,
            MARGIN + (text_width(title, TITLE_SIZE, bold=True) if title else 0),
        )
        + MARGIN
    )
    height = bottom + 14 + legend_h + MARGIN
    defs = (
        '<defs><pattern id="some" width="8" height="8" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        f'<rect width="8" height="8" fill="#ffffff"/><rect width="4" height="8" fill="{style.HIGHLIGHT}"/>'
        "</pattern></defs>"
    )
    head = (
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        f"{attrs({'width': width, 'height': height, 'viewBox': f'0 0 {num(width)} {num(height)}'})}>"
        f"{_title(title)}<style>{_SVG_CSS}</style>{defs}"
        f"{_rect(0, 0, width, height, fill='#ffffff')}"
    )
    return head + "".join(body) + "</svg>\n"


def matrix_svg(
    table: TruthTable,
    highlight: Collection[Cell] | TruthTable = (),
    baseline_name: str | None = None,
    title: str | None = None,
    *,
    topology: Topology | None = None,
    compress: bool | None = None,
) -> str:
    """The table as a standalone SVG document.

    ``highlight`` is a set of cells or a baseline table (then: the cells of
    ``table.differing(baseline)``, computed per class so large tables stay fast), explained in the
    legend as "differs from ``baseline_name``". With ``topology``, rows and columns are grouped by
    cluster and namespace.
    ``compress`` forces (True) or forbids (False) the class view; None decides by size.
    """
    view = matrix_view(table, highlight, topology=topology, compress=compress)
    mark_text = (
        f"differs from {baseline_name}" if baseline_name else ("highlighted" if highlight else None)
    )
    return _svg_document(view, title, baseline_name, "differs", mark_text)


# ---------------------------------------------------------------------------------------------
# HTML

HTML_CSS = f"""
body {{ font-family: {FONT}; color: {style.INK}; margin: 16px; }}
h1 {{ font-size: 18px; }}
h2 {{ font-size: 16px; margin: 0 0 8px; }}
.scroll {{ overflow: auto; max-width: 100%; max-height: 90vh; }}
table.matrix {{ border-collapse: separate; border-spacing: 0; font-size: 18px; }}
table.matrix th, table.matrix td {{ border-right: 1px solid {style.GRID}; border-bottom: 1px solid {style.GRID}; }}
table.matrix thead {{ position: sticky; top: 0; z-index: 2; }}
table.matrix thead th {{ background: {style.HEADER}; color: #ffffff; padding: 8px 10px; white-space: nowrap; }}
table.matrix thead th.band {{ font-size: 12px; padding: 4px 2px; background: {style.GROUP_OUTER}; }}
table.matrix thead th.band.inner {{ background: {style.GROUP_INNER}; color: {style.INK}; }}
table.matrix thead th.band.inner.offloaded {{ background: {style.NAMESPACE}; }}
table.matrix th.corner {{ background: #ffffff; color: {style.HEADER}; font-size: 28px; left: 0; position: sticky; z-index: 3; }}
table.matrix tbody th {{ background: {style.HEADER}; color: #ffffff; padding: 8px 12px; position: sticky; left: 0; white-space: nowrap; z-index: 1; }}
table.matrix tbody tr.group th {{ background: {style.GROUP_INNER}; color: {style.INK}; font-size: 12px; text-align: left; padding: 3px 8px; }}
table.matrix tbody tr.group.offloaded th {{ background: {style.NAMESPACE}; }}
table.matrix tbody tr.group td {{ background: {style.GROUP_INNER}; height: auto; }}
table.matrix td {{ text-align: center; min-width: 52px; height: 39px; padding: 0 8px; background: #ffffff; }}
table.matrix.small {{ font-size: 12px; }}
table.matrix.small td {{ min-width: 18px; height: 18px; padding: 0; font-weight: bold; }}
table.matrix.small thead th.name {{ writing-mode: vertical-rl; transform: rotate(180deg); padding: 6px 2px; font-size: 12px; }}
table.matrix.small tbody th {{ padding: 0 8px; font-size: 12px; }}
table.matrix td.yes {{ color: {style.VERDICT_COLOURS[Verdict.YES]}; }}
table.matrix td.no {{ color: {style.VERDICT_COLOURS[Verdict.NO]}; }}
table.matrix td.partial {{ color: {style.VERDICT_COLOURS[Verdict.PARTIAL]}; font-weight: bold; }}
table.matrix td.error {{ color: {style.VERDICT_COLOURS[Verdict.ERROR]}; font-weight: bold; }}
table.matrix td.differs {{ background: {style.HIGHLIGHT}; box-shadow: inset 0 0 0 1px {style.HIGHLIGHT_BORDER}; }}
table.matrix td.differs.some {{ background: repeating-linear-gradient(45deg, {style.HIGHLIGHT} 0 4px, #ffffff 4px 8px); }}
table.matrix td.wrong {{ background: {style.HIGHLIGHT}; box-shadow: inset 0 0 0 3px {style.WRONG}; }}
table.matrix td.wrong a {{ color: inherit; text-decoration: none; }}
.legend {{ font-size: 13px; margin: 10px 0 18px; display: flex; flex-wrap: wrap; gap: 6px 22px; align-items: center; }}
.legend .word {{ font-weight: bold; }}
.swatch {{ display: inline-block; width: 26px; height: 16px; vertical-align: middle; border: 1px solid {style.HIGHLIGHT_BORDER}; background: {style.HIGHLIGHT}; margin-right: 6px; }}
.swatch.some {{ background: repeating-linear-gradient(45deg, {style.HIGHLIGHT} 0 4px, #ffffff 4px 8px); }}
.swatch.wrong {{ box-shadow: inset 0 0 0 3px {style.WRONG}; }}
.swatch.blank {{ background: #ffffff; border-color: {style.GRID}; }}
table.matrix td a.why {{ color: inherit; text-decoration: none; display: block; }}
table.matrix td a.why:hover {{ text-decoration: underline; }}
.explanations {{ margin-top: 18px; }}
.explanations div {{ margin: 0 0 10px; padding: 4px 8px; border-left: 4px solid {style.GRID}; }}
.explanations div:target {{ border-left-color: {style.HEADER}; background: {style.HIGHLIGHT}; }}
.explanations h3 {{ font-size: 14px; margin: 2px 0; }}
.explanations pre {{ margin: 2px 0; font-size: 12px; white-space: pre-wrap; }}
"""

MAX_EXPLAINED = 2500
"""Up to this many drawn cells, a page explains each one below the table (each cell links to its
explanation); past it the page would be mostly explanations, and says how to get one."""


def _group_label(line: Line) -> str:
    g = line.group
    parts = [g.outer[0]] if g.outer else []
    if g.inner:
        parts.append(g.inner[0])
    return " · ".join(parts)


def table_html(
    view: MatrixView,
    *,
    mark: str = "differs",
    baseline: str | None = None,
    links: dict[Cell, str] | None = None,
    link_class: str | None = None,
    notes: Mapping[Cell, str] | None = None,
) -> str:
    """A view as an HTML ``<table>`` (no page around it). Highlighted cells get class ``mark``;
    ``links`` makes a cell a link (e.g. to its entry further down the page); a cell with a note
    (e.g. its recent drops and why) gets class ``noted`` and the note as its hover text."""
    small = len(view.cols) > BIG_COLUMNS
    grouped = view.grouped
    out = [f'<table class="matrix{" small" if small else ""}"><thead>']
    corner = f'<th class="corner" rowspan="{3 if grouped else 1}" title="rows: sources; columns: destinations">↱</th>'
    if grouped:
        # Small cells must stay small: there band labels are cut to the width of the columns
        # they span (their full text is the tooltip).
        column_w = 20 if small else 64
        out.append("<tr>" + corner)

        # Big cells may widen to a label (as the SVG does): a narrow group keeps its full name.
        def band(labels: tuple[str, ...], n: int) -> str:
            return labels[0] if not small else fit(labels, n * column_w - 8, 12, bold=True)

        for _start, n, first in _runs(view.cols, 1):
            g = first.group
            label = band(g.outer, n) if g.outer else ""
            span = attrs(
                {
                    "colspan": n if n > 1 else None,
                    "rowspan": None if g.inner else 2,
                    "title": g.outer[0] if g.outer else None,
                }
            )
            out.append(f'<th class="band outer"{span}>{esc(label)}</th>')
        out.append("</tr><tr>")
        for _start, n, first in _runs(view.cols, 2):
            g = first.group
            if not g.inner:
                continue
            cls = "band inner offloaded" if g.offloaded else "band inner"
            span = attrs({"colspan": n if n > 1 else None, "title": g.inner[0]})
            label = band(g.inner, n)
            out.append(f'<th class="{cls}"{span}>{esc(label)}</th>')
        out.append("</tr><tr>")
    else:
        out.append("<tr>" + corner)
    for c in view.cols:
        tip = _members_title(c, "destinations") if c.merged else None
        out.append(
            f'<th class="name"{attrs({"data-destination": c.name, "title": tip})}>{esc(c.label)}</th>'
        )
    out.append("</tr></thead><tbody>")
    width = len(view.cols) + 1
    previous: tuple[str, str] | None = None
    for r, row in zip(view.rows, view.grid, strict=True):
        if grouped and r.group.key != previous:
            previous = r.group.key
            cls = "group offloaded" if r.group.offloaded else "group"
            out.append(
                f'<tr class="{cls}"><th>{esc(_group_label(r))}</th><td colspan="{width - 1}"></td></tr>'
            )
        tip = _members_title(r, "sources") if r.merged else None
        out.append(
            f"<tr{attrs({'data-source': r.name})}><th{attrs({'title': tip})}>{esc(r.label)}</th>"
        )
        for c, shown in zip(view.cols, row, strict=True):
            cls = _cell_classes(shown, mark)
            note = (notes or {}).get((r.name, c.name))
            if note is not None:
                cls += " noted"
            title = note if note is not None else _cell_title(view, shown, baseline)
            data = attrs({**_cell_data(view, r, c, shown), "title": title})
            word = ""
            if shown.verdict is not None:
                word = esc(style.VERDICT_MARKS[shown.verdict] if small else shown.verdict.value)
                href = (links or {}).get((r.name, c.name))
                if href:
                    word = f"<a{attrs({'href': href, 'class': link_class})}>{word}</a>"
            out.append(f'<td class="{cls}"{data}>{word}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def legend_html(view: MatrixView, items: Sequence[tuple[str, str]]) -> str:
    """Verdicts used, then ``items`` as (swatch class, text), then the class view's notes."""
    small = len(view.cols) > BIG_COLUMNS
    parts = []
    for v in view.verdicts():
        sample = f"{style.VERDICT_MARKS[v]} {v.value}" if small else v.value
        colour = style.VERDICT_COLOURS[v]
        parts.append(
            f'<span><span class="word" style="color: {colour}">{esc(sample)}</span> {esc(v.meaning)}</span>'
        )
    for cls, text in items:
        parts.append(f'<span><span class="swatch {cls}"></span>{esc(text)}</span>')
    if any(c.state == "some" for row in view.grid for c in row):
        parts.append('<span><span class="swatch some"></span>some of the merged cells</span>')
    if view.compressed:
        parts.append(
            '<span><span class="word">A +n</span> n more alike, merged (hover for the names)</span>'
        )
    parts.append('<span><span class="swatch blank"></span>a pod to itself</span>')
    return '<div class="legend">' + "".join(parts) + "</div>"


def page(title: str | None, body: Iterator[str] | Sequence[str], css: str = HTML_CSS) -> str:
    """A self-contained HTML document: inline CSS, no script, nothing fetched."""
    head = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title or 'peerwall')}</title><style>{css}</style></head><body>"
    )
    return head + "".join(body) + "</body></html>\n"


def matrix_html(
    table: TruthTable,
    highlight: Collection[Cell] | TruthTable = (),
    baseline_name: str | None = None,
    title: str | None = None,
    *,
    topology: Topology | None = None,
    compress: bool | None = None,
    explain: Callable[[str, str], str] | None = None,
) -> str:
    """The table as a self-contained HTML page (sticky headers, so large tables stay readable).

    With ``explain`` (the text of ``peerwall explain SRC DST``), each cell links to its
    explanation, written below the table (a merged cell: that of its first cell)."""
    view = matrix_view(table, highlight, topology=topology, compress=compress)
    links: dict[Cell, str] = {}
    explained: list[str] = []
    drawn = sum(1 for row in view.grid for c in row if c.verdict is not None)
    if explain is not None and drawn <= MAX_EXPLAINED:
        for i, (r, row) in enumerate(zip(view.rows, view.grid, strict=True)):
            for j, (c, shown) in enumerate(zip(view.cols, row, strict=True)):
                if shown.verdict is None:
                    continue
                anchor = f"why-{i}-{j}"
                links[(r.name, c.name)] = f"#{anchor}"
                alike = f" (and {shown.cells - 1} more cells alike)" if shown.cells > 1 else ""
                explained.append(
                    f'<div id="{anchor}"{attrs({"data-source": r.name, "data-destination": c.name})}>'
                    f"<h3>{esc(r.name)} → {esc(c.name)}: {shown.verdict.value}{esc(alike)}</h3>"
                    f"<pre>{esc(explain(r.name, c.name))}</pre></div>"
                )
    items = []
    if baseline_name or isinstance(highlight, TruthTable) or highlight:
        items.append(("", f"differs from {baseline_name}" if baseline_name else "highlighted"))
    body = [f"<h1>{esc(title)}</h1>" if title else ""]
    if view.compressed:
        body.append(
            f"<p>{view.sources} sources × {view.destinations} destinations, shown as "
            f"{len(view.rows)} × {len(view.cols)} classes of identical rows and columns.</p>"
        )
    body += [
        '<div class="scroll">',
        table_html(view, baseline=baseline_name, links=links, link_class="why"),
        "</div>",
        legend_html(view, items),
    ]
    if explained:
        body += [
            '<section class="explanations"><h2>Why each cell (click a cell)</h2>',
            *explained,
            "</section>",
        ]
    elif explain is not None:
        body.append(
            f"<p>{drawn:,} cells: too many to explain on one page; "
            "<code>peerwall explain -f FILE SRC DST</code> explains any cell.</p>"
        )
    return page(title, body)
