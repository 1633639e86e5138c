"""Explained drops as one self-contained HTML page: a matrix of sources and destinations whose
cells count the recent drops between them, each cell's drops and their explanation on hover (its
``title``) and listed below. Inline CSS, no script, nothing fetched.

Events are the JSON of ``agent.flowevents.FlowEvent`` (``/flows``, ``peerwall lab drops -o
json``), so the page can be drawn from the agent, from the CLI, or from a saved file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peerwall.figures.markup import esc
from peerwall.figures.matrix import HTML_CSS, page

__all__ = ["cell_of", "cell_title", "drop_line", "drops_by_cell", "flows_page"]

_CSS = """
table.flows { border-collapse: collapse; font-size: 14px; margin: 8px 0 16px; }
table.flows th, table.flows td { border: 1px solid #d8dee4; padding: 4px 8px; text-align: center; }
table.flows th { background: #f4f6f8; }
table.flows td.drop { background: #fde0dc; color: #8e1b10; font-weight: bold; cursor: help; }
table.flows td.would { background: #fff3cd; color: #7a5a00; font-weight: bold; cursor: help; }
table.flows td.none { color: #b0b8c1; }
ul.events { font-size: 13px; padding-left: 18px; }
ul.events li { margin-bottom: 6px; }
ul.events .why { color: #3d4753; }
p.note { font-size: 13px; color: #5f6b7a; }
"""

MAX_PER_CELL = 5
"""Drops a cell's hover text lists (the newest); the count says how many there were."""


def _end(e: Mapping[str, Any]) -> str:
    name = e.get("name")
    return str(name) if name else str(e.get("address", "?"))


def cell_of(event: Mapping[str, Any]) -> tuple[str, str]:
    """(source, destination) of an event: the names, or the addresses where no name is known."""
    return _end(event["src"]), _end(event["dst"])


def drop_line(event: Mapping[str, Any]) -> str:
    """One event in a line: time, what, verdict, reason and why."""
    port = f"/{event['port']}" if event.get("port") is not None else ""
    src, dst = cell_of(event)
    return (
        f"{event['time']} {event['verdict']} {event['protocol']}{port} {src} -> {dst} "
        f"at {event['cluster']} ({event['hook']}, from {event['peer']}): "
        f"{event['reason']}: {event['explanation']}"
    )


def drops_by_cell(
    events: Sequence[Mapping[str, Any]],
) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    """Events grouped by (source, destination), oldest first within each cell."""
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for e in events:
        out.setdefault(cell_of(e), []).append(e)
    return out


def cell_title(events: Sequence[Mapping[str, Any]]) -> str:
    """A cell's hover text: how many, the newest few, and each distinct explanation."""
    newest = list(events)[-MAX_PER_CELL:]
    lines = [f"{len(events)} recent drop(s)"]
    lines += [drop_line(e) for e in reversed(newest)]
    return "\n".join(lines)


def flows_page(events: Sequence[Mapping[str, Any]], title: str) -> str:
    """The page for ``events`` (oldest first)."""
    cells = drops_by_cell(events)
    sources = sorted({s for s, _ in cells})
    destinations = sorted({d for _, d in cells})
    body = [f"<h1>{esc(title)}</h1>"]
    if not events:
        body.append('<p class="note">No drops recorded.</p>')
        return page(title, body, HTML_CSS + _CSS)
    body.append('<table class="flows"><tr><th>from \\ to</th>')
    body += [f"<th>{esc(d)}</th>" for d in destinations]
    body.append("</tr>")
    for s in sources:
        body.append(f"<tr><th>{esc(s)}</th>")
        for d in destinations:
            here = cells.get((s, d))
            if not here:
                body.append('<td class="none">·</td>')
                continue
            kind = "drop" if any(e["verdict"] == "dropped" for e in here) else "would"
            body.append(
                f'<td class="{kind}" title="{esc(cell_title(here))}" '
                f'data-source="{esc(s)}" data-destination="{esc(d)}">{len(here)}</td>'
            )
        body.append("</tr>")
    body.append("</table>")
    body.append(
        '<p class="note">Red: dropped; yellow: would be dropped (audit). '
        "Hover a cell for its drops and why.</p>"
    )
    body.append('<ul class="events">')
    for e in reversed(events):
        body.append(f"<li>{esc(drop_line(e))}</li>")
    body.append("</ul>")
    return page(title, body, HTML_CSS + _CSS)
