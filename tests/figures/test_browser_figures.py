"""The figures in a real browser: Debian's Chromium, headless and off the network, driven by
Playwright. Each page must load without a console error, give a non-blank screenshot, and show
yellow exactly where the table says: for every drawn cell, its box comes from the DOM and the
screenshot's pixels near the box's four corners (clear of the centred word) are read back; the
cells whose pixels are yellow must be exactly the highlighted cells, every other cell white.

Missing Chromium, Playwright or Pillow fails these tests with how to install them (``make venv``
does); they never skip.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from figkit import SEED_DIFFERING, browser, scaled_topology  # noqa: F401  (browser: a fixture)

from peerwall.figures import matrix_html, matrix_svg, probe_html, topology_svg
from peerwall.figures import style as figure_style
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import TruthTable, Verdict, expect

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD

Cell = tuple[str, str]
RGB = tuple[int, int, int]


def rgb(hex_colour: str) -> RGB:
    h = hex_colour.lstrip("#")
    return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))


YELLOW = rgb(figure_style.HIGHLIGHT)
WHITE = (255, 255, 255)


def near(a: RGB, b: RGB, tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def seed() -> Topology:
    return load_topology((EXAMPLES / "seed.yaml").read_text(), "seed.yaml")


class Shot:
    """A loaded page: its console errors, its screenshot (Pillow image) and its cells' boxes."""

    def __init__(self, page: Any, errors: list[str], png: bytes) -> None:
        from PIL import Image

        self.page = page
        self.errors = errors
        self.image = Image.open(io.BytesIO(png)).convert("RGB")

    def boxes(self, selector: str) -> list[dict[str, Any]]:
        """Source, destination and box of each cell. An HTML cell is its td; an SVG cell's box is
        the row of its source's header crossed with the column of its destination's header (a
        small cell draws no rectangle unless highlighted), so the pixels read back also say that
        the cell is drawn where its row and column are."""
        return list(
            self.page.evaluate(
                """(selector) => {
                    const box = e => e.querySelector('rect').getBoundingClientRect();
                    const rows = {}, cols = {};
                    document.querySelectorAll('g[data-source]:not(.cell)').forEach(
                        e => { rows[e.getAttribute('data-source')] = box(e); });
                    document.querySelectorAll('g[data-destination]:not(.cell)').forEach(
                        e => { cols[e.getAttribute('data-destination')] = box(e); });
                    return Array.from(document.querySelectorAll(selector)).map(e => {
                        const s = e.getAttribute('data-source'), d = e.getAttribute('data-destination');
                        const r = e.tagName.toLowerCase() === 'td' ? e.getBoundingClientRect()
                            : {x: cols[d].x, width: cols[d].width, y: rows[s].y, height: rows[s].height};
                        return {s: s, d: d, x: r.x, y: r.y, w: r.width, h: r.height};
                    });
                }""",
                selector,
            )
        )

    def corners(self, box: dict[str, Any], inset: float) -> list[RGB]:
        x0, y0 = box["x"] + inset, box["y"] + inset
        x1, y1 = box["x"] + box["w"] - 1 - inset, box["y"] + box["h"] - 1 - inset
        return [self.image.getpixel((round(x), round(y))) for x in (x0, x1) for y in (y0, y1)]

    def non_blank(self) -> None:
        colours = self.image.getcolors(maxcolors=1 << 20) or []
        inked = sum(n for n, c in colours if not near(c, WHITE, 8))
        total = self.image.width * self.image.height
        assert len(colours) > 20, "the screenshot has almost no colours"
        assert inked > total * 0.02, f"only {inked} of {total} pixels are not white"


@pytest.fixture
def shoot(browser: Any, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    pages = []

    def load(name: str, text: str) -> Shot:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        size = {"width": 1400, "height": 900}
        m = re.search(r'<svg[^>]* width="([\d.]+)" height="([\d.]+)"', text)
        if name.endswith(".svg") and m:
            size = {"width": int(float(m[1])) + 1, "height": int(float(m[2])) + 1}
        page = browser.new_page(viewport=size)
        pages.append(page)
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        page.goto(path.as_uri(), wait_until="load")
        if not name.endswith(".svg"):
            # A screenshot of the whole page: the viewport grows to the document.
            w, h = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            page.set_viewport_size({"width": max(w, 400), "height": min(h, 8000)})
        return Shot(page, errors, page.screenshot(timeout=60_000))

    yield load
    for page in pages:
        page.close()


def yellow_cells(shot: Shot, selector: str, inset: float = 5) -> set[Cell]:
    """Cells whose four corners are the highlight's yellow; every other cell must be white."""
    boxes = shot.boxes(selector)
    assert boxes, f"no cell matches {selector}"
    yellow, other = set(), {}
    for box in boxes:
        pixels = shot.corners(box, inset)
        cell = (box["s"], box["d"])
        if all(near(p, YELLOW, 10) for p in pixels):
            yellow.add(cell)
        elif not all(near(p, WHITE, 6) for p in pixels):
            other[cell] = pixels
    some = dict(list(other.items())[:5])
    assert not other, f"{len(other)} cells neither yellow nor white, e.g. {some}"
    return yellow


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
def test_seed_svg_is_yellow_exactly_on_the_seven_cells(seed, shoot, grouped):
    seg, full = expect(seed, SEG).table, expect(seed, force=FULL).table
    text = matrix_svg(seg, full, FULL.value, "segregation", topology=seed if grouped else None)
    shot = shoot("seed.svg", text)
    assert shot.errors == []
    shot.non_blank()
    assert yellow_cells(shot, "g.cell") == SEED_DIFFERING
    # The header row and column are the seed's blue.
    head = shot.page.evaluate(
        """() => { const r = document.querySelector('g[data-destination="P1"]:not(.cell) rect')
                       .getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; }"""
    )
    assert all(near(p, rgb(figure_style.HEADER), 6) for p in shot.corners(head, 3))


def test_seed_html_is_yellow_exactly_on_the_seven_cells(seed, shoot):
    seg, full = expect(seed, SEG).table, expect(seed, force=FULL).table
    shot = shoot("seed.html", matrix_html(seg, full, FULL.value, "segregation", topology=seed))
    assert shot.errors == []
    shot.non_blank()
    assert yellow_cells(shot, "td.cell") == SEED_DIFFERING


def test_small_cells_of_a_larger_table_are_yellow_where_they_differ(shoot):
    t = scaled_topology(40, 3)
    seg, full = expect(t, SEG).table, expect(t, force=FULL).table
    differing = seg.differing(full)
    assert 0 < len(differing) < len(seg.sources) * len(seg.destinations)
    shot = shoot("scaled.svg", matrix_svg(seg, full, FULL.value, "40 pods", topology=t))
    assert shot.errors == []
    shot.non_blank()
    assert yellow_cells(shot, "g.cell", inset=3) == differing


def test_probe_page_marks_the_wrong_cells(seed, shoot):
    computed = expect(seed, SEG).table
    cells = {(s, d): v for s, d, v in computed.cells()}
    cells["P1", "P5"] = Verdict.YES
    cells["P4", "S1"] = Verdict.ERROR
    observed = TruthTable.from_cells(
        computed.security_mode, computed.sources, computed.destinations, cells
    )
    wrong = {
        (m.source, m.destination): ("seen", ["nc -z 10.0.0.1 8080"])
        for m in computed.compare(observed).mismatches()
    }
    shot = shoot("probe.html", probe_html(computed, observed, wrong, topology=seed))
    assert shot.errors == []
    shot.non_blank()
    for side in ("computed", "observed"):
        assert yellow_cells(shot, f".side.{side} td.cell") == set(wrong)


def test_topology_figure_renders_with_every_pod_inside_the_cluster_it_runs_in(seed, shoot):
    for name, t in (
        ("seed", seed),
        ("three", load_topology((EXAMPLES / "three-clusters.yaml").read_text(), "t")),
        ("six", scaled_topology(36, 6)),
    ):
        shot = shoot(f"{name}-topology.svg", topology_svg(t, FULL))
        assert shot.errors == []
        shot.non_blank()
        boxes = shot.page.evaluate(
            """() => ({
                clusters: Object.fromEntries(Array.from(document.querySelectorAll('g.cluster')).map(
                    g => { const r = g.querySelector('rect').getBoundingClientRect();
                           return [g.getAttribute('data-cluster'), [r.left, r.top, r.right, r.bottom]]; })),
                pods: Array.from(document.querySelectorAll('g.pod')).map(g => {
                    const r = g.getBoundingClientRect(), t = g.querySelector(':scope > text').getBoundingClientRect();
                    return [g.getAttribute('data-pod'), g.getAttribute('data-cluster'),
                            [r.left, r.top, r.right, r.bottom], [t.left, t.top, t.right, t.bottom]]; }),
            })"""
        )
        assert sorted(p[0] for p in boxes["pods"]) == sorted(p.name for p in t.pods)
        for pod, cluster, box, _ in boxes["pods"]:
            c = boxes["clusters"][cluster]
            assert c[0] <= box[0] and c[1] <= box[1] and box[2] <= c[2] and box[3] <= c[3], (
                pod,
                cluster,
            )
        # Pod names never overlap one another (real font, real layout).
        labels = [(p[0], p[3]) for p in boxes["pods"]]
        for i, (a, ra) in enumerate(labels):
            for b, rb in labels[i + 1 :]:
                overlap = (
                    min(ra[2], rb[2]) - max(ra[0], rb[0]) > 0.5
                    and min(ra[3], rb[3]) - max(ra[1], rb[1]) > 0.5
                )
                assert not overlap, (name, a, b)
        # The second cluster's orange border is there (the seed's C2).
        if len(t.clusters) > 1:
            colours = {c for _, c in shot.image.getcolors(maxcolors=1 << 20) or []}
            assert any(near(c, rgb(figure_style.CLUSTER_COLOURS[1]), 12) for c in colours)


# --- labels that fit, cells that link (issue 20.2) --------------------------------------------


@pytest.fixture(scope="module")
def three() -> Topology:
    return load_topology((EXAMPLES / "three-clusters.yaml").read_text(), "three-clusters.yaml")


def test_svg_group_labels_are_whole_and_partial_stays_in_its_cell(three, shoot):
    """Each column band shows its whole label ("services of C2", not "C2") inside its box, and
    every word of a cell (PARTIAL is the widest) lies inside its column, as the browser lays
    them out."""
    seg, full = expect(three, SEG).table, expect(three, force=FULL).table
    shot = shoot("three.svg", matrix_svg(seg, full, FULL.value, "three", topology=three))
    assert shot.errors == []
    bands = shot.page.evaluate(
        """() => Array.from(document.querySelectorAll('.bands.columns g.band')).map(g => {
               const r = g.querySelector('rect').getBoundingClientRect();
               const t = g.querySelector('text').getBoundingClientRect();
               return {full: g.querySelector('title').textContent,
                       shown: g.querySelector('text').textContent,
                       rect: [r.left, r.right], text: [t.left, t.right]};
           })"""
    )
    labels = {b["shown"] for b in bands}
    assert {"services of C1", "services of C2", "batch", "default"} <= labels
    for b in bands:
        assert b["shown"] == b["full"], b
        assert b["rect"][0] <= b["text"][0] and b["text"][1] <= b["rect"][1], b
    words = shot.page.evaluate(
        """() => {
               const cols = {};
               document.querySelectorAll('.head.columns g[data-destination]').forEach(g => {
                   const r = g.querySelector('rect').getBoundingClientRect();
                   cols[g.getAttribute('data-destination')] = [r.left, r.right];
               });
               return Array.from(document.querySelectorAll('g.cell text')).map(t => {
                   const r = t.getBoundingClientRect();
                   return {word: t.textContent, col: cols[t.parentNode.getAttribute('data-destination')],
                           box: [r.left, r.right]};
               });
           }"""
    )
    assert any(w["word"] == "PARTIAL" for w in words)
    for w in words:
        assert w["col"][0] + 2 <= w["box"][0] and w["box"][1] <= w["col"][1] - 2, w


def test_html_cells_link_to_their_explanation(seed, shoot):
    """Clicking a cell goes to the explanation of that cell, on the same page."""
    from peerwall.policy import explain_cell

    seg, full = expect(seed, SEG).table, expect(seed, force=FULL).table

    def why(s: str, d: str) -> str:
        return explain_cell(seed, s, d, SEG).render()

    page_text = matrix_html(seg, full, FULL.value, "segregation", topology=seed, explain=why)
    shot = shoot("why.html", page_text)
    assert shot.errors == []
    linked = shot.page.evaluate(
        "() => Array.from(document.querySelectorAll('td.cell')).filter(td => td.textContent)"
        ".every(td => td.querySelector('a.why'))"
    )
    assert linked
    bands = shot.page.evaluate(
        "() => Array.from(document.querySelectorAll('th.band')).map(th => th.textContent)"
    )
    assert "services of C2" in bands
    for source, destination, rule in (
        ("P4", "P1", "segregation-denied"),
        ("P1", "S3", "service-absent"),
    ):
        shot.page.click(f'td[data-source="{source}"][data-destination="{destination}"] a')
        target = shot.page.evaluate(
            """() => { const t = document.querySelector(':target');
                       const r = t.getBoundingClientRect();
                       return {s: t.getAttribute('data-source'), d: t.getAttribute('data-destination'),
                               text: t.textContent, top: r.top, inView: r.top >= 0 && r.top < innerHeight}; }"""
        )
        assert (target["s"], target["d"]) == (source, destination)
        assert f"{source} -> {destination}: {seg[source, destination].value}" in target["text"]
        assert rule in target["text"]
        assert target["inView"], target


# --- explained drops (issue 19) ---------------------------------------------------------------


def seed_drops(seed: Topology) -> list[dict[str, Any]]:
    """The events an agent reports for the seed's seven cells, dropped (C2's side) or would-drop
    (C1's side), explained as the decision procedure says."""
    from peerwall.policy.explain import explain_cell

    out = []
    for k, (s, d) in enumerate(sorted(SEED_DIFFERING)):
        here = seed.pod_by_name[d].physical
        out.append(
            {
                "time": f"2026-12-07T03:00:0{k}.000000+00:00",
                "cluster": here,
                "peer": seed.pod_by_name[s].physical,
                "hook": "forward",
                "verdict": "dropped" if here == "C2" else "would-drop",
                "reason": "segregation-denied",
                "src": {"address": f"10.0.0.{k}", "name": s, "kind": "pod", "cluster": None},
                "dst": {"address": f"10.244.0.{k}", "name": d, "kind": "pod", "cluster": here},
                "protocol": "tcp",
                "port": 8080,
                "explanation": explain_cell(seed, s, d, SEG).reason,
                "mode": SEG.value,
                "seq": k + 1,
            }
        )
    return out


RED = (0xC6, 0x28, 0x28)


def test_probe_page_outlines_the_cells_with_drops_and_explains_them_on_hover(seed, shoot):
    from peerwall.figures.flows import cell_title, drops_by_cell

    computed = expect(seed, SEG).table
    events = seed_drops(seed)
    drops = {cell: cell_title(found) for cell, found in drops_by_cell(events).items()}
    shot = shoot("probe-drops.html", probe_html(computed, computed, {}, drops=drops))
    assert shot.errors == []
    shot.non_blank()
    outlined = set()
    for box in shot.boxes(".side.observed td.cell"):
        if all(near(p, RED, 12) for p in shot.corners(box, 1)):
            outlined.add((box["s"], box["d"]))
    assert outlined == SEED_DIFFERING
    titles = shot.page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('.side.observed td.noted'))
               .map(e => [e.dataset.source + '>' + e.dataset.destination, e.title]))"""
    )
    assert set(titles) == {f"{s}>{d}" for s, d in SEED_DIFFERING}
    for e in events:
        assert e["explanation"] in titles[f"{e['src']['name']}>{e['dst']['name']}"]
    # The computed side has no drops: nothing outlined there.
    assert (
        shot.page.evaluate("() => document.querySelectorAll('.side.computed td.noted').length") == 0
    )


def test_flows_page_shows_each_cell_red_dropped_or_yellow_would_drop(seed, shoot):
    from peerwall.figures.flows import flows_page

    events = seed_drops(seed)
    shot = shoot("flows.html", flows_page(events, "drops"))
    assert shot.errors == []
    colours = {"drop": rgb("#fde0dc"), "would": rgb("#fff3cd")}
    seen: dict[str, set[Cell]] = {"drop": set(), "would": set()}
    for kind, colour in colours.items():
        for box in shot.boxes(f"table.flows td.{kind}"):
            assert all(near(p, colour, 8) for p in shot.corners(box, 3)), box
            seen[kind].add((box["s"], box["d"]))
    assert seen["drop"] == {
        (e["src"]["name"], e["dst"]["name"]) for e in events if e["verdict"] == "dropped"
    }
    assert seen["would"] == {
        (e["src"]["name"], e["dst"]["name"]) for e in events if e["verdict"] == "would-drop"
    }
    hover = shot.page.evaluate(
        "() => Array.from(document.querySelectorAll('table.flows td[title]')).map(e => e.title)"
    )
    assert len(hover) == 7 and all("segregation-denied" in t for t in hover)
