"""Shared by the figure tests: generated topologies of any size, SVG/HTML parsing helpers, and a
headless Chromium (Debian's, driven by Playwright) that never touches the network."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from peerwall.model import Topology, topology_from_data

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # Playwright adds --headless and a fresh --user-data-dir; these keep Chromium off the network.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = (
    "the browser tests need Debian's chromium and the Python packages playwright and Pillow: "
    "'make venv' installs them (apt-get install -y chromium; pip install -e '.[dev]'); "
    "never 'playwright install', which downloads a browser"
)

# The yellow cells of the seed's segregation figure.
SEED_DIFFERING = {
    ("P1", "P5"),
    ("P2", "P5"),
    ("P3", "P5"),
    ("P4", "P1"),
    ("P4", "P3"),
    ("P5", "P1"),
    ("P5", "P3"),
}


def scaled(pods: int, clusters: int = 3, *, namespaces: int = 2) -> dict[str, Any]:
    """A deterministic topology of ``pods`` pods over ``clusters`` clusters: K1 peers towards
    every other cluster and offloads ``namespaces`` namespaces to all of them; pods are spread
    round-robin over clusters and namespaces, a third of K1's offloaded ones run elsewhere; one
    service per (cluster, namespace) selects half its pods."""
    names = [f"K{i + 1}" for i in range(clusters)]
    data: dict[str, Any] = {
        "clusters": [
            {"name": n, "podCIDR": f"10.{100 + i}.0.0/16", "internet": f"I{i + 1}"}
            for i, n in enumerate(names)
        ],
        "peerings": [{"consumer": names[0], "provider": n} for n in names[1:]],
        "namespaces": [
            {"name": f"ns{k}", "cluster": names[0], "offloadedTo": names[1:]}
            for k in range(namespaces if clusters > 1 else 0)
        ],
        "pods": [],
        "services": [],
    }
    own = ["default", *(f"ns{k}" for k in range(namespaces if clusters > 1 else 0))]
    for i in range(pods):
        home = names[i % clusters]
        ns = own[(i // clusters) % len(own)] if home == names[0] else "default"
        pod: dict[str, Any] = {
            "name": f"pod-{i:04d}",
            "cluster": home,
            "namespace": ns,
            "labels": {"app": f"{home}-{ns}-{i % 2}"},
        }
        if ns != "default" and (i // clusters) % 2 == 0:
            pod["runsOn"] = names[1 + (i // clusters // 2) % (clusters - 1)]
        data["pods"].append(pod)
    for c in names:
        for ns in own if c == names[0] else ["default"]:
            data["services"].append(
                {
                    "name": f"svc-{c}-{ns}",
                    "cluster": c,
                    "namespace": ns,
                    "selector": {"app": f"{c}-{ns}-0"},
                }
            )
    return data


def scaled_topology(pods: int, clusters: int = 3, **kw: Any) -> Topology:
    return topology_from_data(scaled(pods, clusters, **kw), "scaled")


def parse_svg(text: str) -> ElementTree.Element:
    """Parse as XML (fails on anything not well-formed) and check it is an SVG document."""
    root = ElementTree.fromstring(text)
    assert root.tag == f"{SVG}svg"
    return root


def classes(el: ElementTree.Element) -> set[str]:
    return set(el.get("class", "").split())


def svg_cells(root: ElementTree.Element) -> list[ElementTree.Element]:
    return [el for el in root.iter(f"{SVG}g") if "cell" in classes(el)]


class _Html(HTMLParser):
    """Collects start tags with their attributes and checks that elements nest properly."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Html:
    """Parse; every element must be closed in order. Returns the parser with tags and text."""
    assert text.startswith("<!DOCTYPE html>")
    parser = _Html()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


def self_contained(text: str) -> None:
    """No script, no external resource of any kind."""
    p = parse_html(text)
    for tag, attrs in p.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for k, v in attrs.items():
            assert not (k.startswith("on")), k
            if k in ("src", "href") and v:
                assert v.startswith("#"), (k, v)
    assert not re.search(r"url\((?!#)", text), "CSS url() to a resource"
    assert "@import" not in text


# ---------------------------------------------------------------------------------------------
# The browser


def require_browser() -> None:
    """Fail, never skip, when the browser stack is missing: the Makefile installs it."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: {INSTALL_HINT}")
    try:
        import PIL  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"{exc}: {INSTALL_HINT}")


@pytest.fixture(scope="module")  # Playwright runs an event loop in this thread while it lives
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
