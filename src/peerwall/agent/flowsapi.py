"""``/flows``: the agent's ring of explained drops, over whichever HTTP server the agent runs.

One function from a query string to (status, body, content type), so it fits any server:

- ``/flows``: the newest events, JSON lines (``application/x-ndjson``), oldest first;
- ``/flows?since=SEQ``: only events after ``SEQ`` (each event carries its ``seq``): a client
  follows the stream by asking again with the last ``seq`` it saw (``peerwall lab drops --follow``);
- ``/flows?limit=N``: at most the newest N;
- ``/flows?format=html``: a small self-contained page, the events as a matrix of sources and
  destinations, each cell's recent drops and their explanation on hover.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

from peerwall.agent.flowevents import FlowRing

Response = tuple[int, bytes, str]


def flows_route(ring: FlowRing, title: Callable[[], str]) -> Callable[[str], Response]:
    """The handler of ``/flows`` for ``ring``; ``title`` names the gateway on the HTML page."""

    def handle(query: str) -> Response:
        params = parse_qs(query)
        try:
            since = int(params.get("since", ["0"])[0])
            limit = int(params.get("limit", ["0"])[0])
        except ValueError:
            return 400, b"since and limit are integers\n", "text/plain"
        if since < 0 or limit < 0:
            return 400, b"since and limit are 0 or more\n", "text/plain"
        events = ring.since(since, limit or None)
        if params.get("format", [""])[0] == "html":
            # Imported when a page is asked for: the figures cost every agent's start otherwise.
            from peerwall.figures.flows import flows_page

            page = flows_page([e.to_json() for e in events], title())
            return 200, page.encode(), "text/html; charset=utf-8"
        body = "".join(json.dumps(e.to_json(), separators=(",", ":")) + "\n" for e in events)
        return 200, body.encode(), "application/x-ndjson"

    return handle
