"""A probe run as one self-contained HTML page: computed and observed tables side by side, the
wrong cells marked in both and linked to their entry below, where each has what the probes saw and
the commands that repeat them by hand. Inline CSS, no script, nothing fetched: the page can be
attached to a bug report or a CI run as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from peerwall.figures.markup import esc
from peerwall.figures.matrix import HTML_CSS, legend_html, page, table_html
from peerwall.figures.view import Cell, matrix_view
from peerwall.model.topology import Topology
from peerwall.policy.truthtable import TruthTable

__all__ = ["probe_html"]

_CSS_EXTRA = """
.tables { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.tables > div { max-width: 100%; }
.tables table.matrix { font-size: 15px; }
.tables table.matrix td { height: 32px; min-width: 44px; }
.summary { font-size: 15px; margin: 4px 0 16px; }
.summary .bad { color: #c62828; font-weight: bold; }
.summary .good { color: #1e7b34; font-weight: bold; }
ol.wrong { padding-left: 22px; }
ol.wrong li { margin-bottom: 14px; }
ol.wrong .cell { font-weight: bold; }
ol.wrong .detail { margin: 4px 0; font-size: 14px; }
pre.reproduce { background: #f4f6f8; border: 1px solid #d8dee4; border-radius: 4px; padding: 6px 8px;
  margin: 3px 0; font-size: 13px; white-space: pre-wrap; word-break: break-all; }
p.note { font-size: 13px; color: #5f6b7a; }
table.matrix td.noted { box-shadow: inset 0 0 0 3px #c62828; cursor: help; }
ul.drops { font-size: 13px; padding-left: 18px; }
ul.drops li { margin-bottom: 6px; white-space: pre-wrap; }
"""


def _verdict(table: TruthTable, cell: Cell) -> str:
    v = table.get(*cell)
    return v.value if v is not None else "absent"


def probe_html(
    computed: TruthTable,
    observed: TruthTable,
    wrong: Mapping[tuple[str, str], tuple[str, Sequence[str]]],
    *,
    title: str | None = None,
    topology: Topology | None = None,
    note: str | None = None,
    drops: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """The page. ``wrong`` maps each wrong (source, destination) to (detail, reproducers): what
    the probes saw, and shell commands that repeat them. ``note`` (e.g. how to read a
    reproducer's outcome) is printed under the list. ``drops`` maps a cell to its recent drops
    and their explanation (``figures.flows.cell_title``): the observed table outlines those
    cells in red with that text on hover, and lists them at the end."""
    title = title or "peerwall probe: observed vs computed"
    src_rank = {s: i for i, s in enumerate(computed.sources)}
    dst_rank = {d: j for j, d in enumerate(computed.destinations)}
    unknown = len(src_rank) + len(dst_rank)
    cells = sorted(
        wrong,
        key=lambda c: (src_rank.get(c[0], unknown), dst_rank.get(c[1], unknown), c),
    )
    anchors = {cell: f"#wrong-{k}" for k, cell in enumerate(cells)}
    total = sum(1 for _ in computed.cells())
    body = [f"<h1>{esc(title)}</h1>"]
    status = (
        f'<span class="bad">{len(cells)} wrong</span>'
        if cells
        else '<span class="good">0 wrong</span>'
    )
    body.append(f'<p class="summary">{total} cells: {total - len(cells)} correct, {status}.</p>')
    body.append('<div class="tables">')
    for name, table in (("computed", computed), ("observed", observed)):
        view = matrix_view(table, cells, topology=topology)
        body.append(f'<div class="side {name}"><h2>{esc(name)}: {esc(table.security_mode)}</h2>')
        notes = drops if name == "observed" else None
        html = table_html(view, mark="wrong", links=anchors, notes=notes)
        body.append(f'<div class="scroll">{html}</div>')
        items = [("wrong", "observed differs from computed (wrong)")] if cells else []
        body.append(legend_html(view, items) + "</div>")
    body.append("</div>")
    if cells:
        body.append('<h2>Wrong cells</h2><ol class="wrong">')
        for k, cell in enumerate(cells):
            detail, reproducers = wrong[cell]
            s, d = cell
            body.append(
                f'<li id="wrong-{k}" data-source="{esc(s)}" data-destination="{esc(d)}">'
                f'<span class="cell">{esc(s)} → {esc(d)}</span>: computed '
                f"{esc(_verdict(computed, cell))}, observed {esc(_verdict(observed, cell))}"
                f'<p class="detail">{esc(detail)}</p>'
            )
            body.extend(f'<pre class="reproduce">{esc(cmd)}</pre>' for cmd in reproducers)
            body.append("</li>")
        body.append("</ol>")
        if note:
            body.append(f'<p class="note">{esc(note)}</p>')
    if drops:
        body.append(
            '<h2>Recent drops</h2><p class="note">Outlined in red in the observed table; '
            "hover a cell for its drops and why.</p>"
        )
        body.append('<ul class="drops">')
        for (s, d), text in sorted(drops.items()):
            body.append(
                f'<li data-source="{esc(s)}" data-destination="{esc(d)}">'
                f"<b>{esc(s)} → {esc(d)}</b>: {esc(text)}</li>"
            )
        body.append("</ul>")
    return page(title, body, HTML_CSS + _CSS_EXTRA)
