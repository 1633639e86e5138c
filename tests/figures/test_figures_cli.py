"""The command line's figures: matrix --output svg|html and topology --output svg."""

from __future__ import annotations

from pathlib import Path

from figkit import SEED_DIFFERING, classes, parse_html, parse_svg, self_contained, svg_cells
from typer.testing import CliRunner

from peerwall.cli.main import app

SEED = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples" / "seed.yaml"
SEG = "networking.securityMode=IntraClusterTrafficSegregation"


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_matrix_svg():
    root = parse_svg(run("matrix", "-f", str(SEED), "--set", SEG, "--output", "svg"))
    differing = {
        (c.get("data-source"), c.get("data-destination"))
        for c in svg_cells(root)
        if "differs" in classes(c)
    }
    assert differing == SEED_DIFFERING
    title = root.find("{http://www.w3.org/2000/svg}title")
    assert title is not None and "IntraClusterTrafficSegregation (from --set)" in (title.text or "")


def test_matrix_html():
    text = run("matrix", "-f", str(SEED), "--set", SEG, "-o", "html")
    self_contained(text)
    tags = parse_html(text).tags
    differing = {
        (a["data-source"], a["data-destination"])
        for tag, a in tags
        if tag == "td" and "differs" in (a.get("class") or "").split()
    }
    assert differing == SEED_DIFFERING


def test_matrix_svg_full_pod_to_pod_highlights_nothing():
    root = parse_svg(run("matrix", "-f", str(SEED), "-o", "svg"))
    assert not [c for c in svg_cells(root) if "differs" in classes(c)]


def test_topology_svg():
    root = parse_svg(run("topology", "-f", str(SEED), "--set", SEG))
    modes = {d.get("data-mode") for d in root.iter() if "direction" in classes(d)}
    assert modes == {"IntraClusterTrafficSegregation"}
    assert run("topology", "-f", str(SEED), "--output", "svg").startswith("<svg")


def test_topology_errors_like_every_command(tmp_path):
    result = CliRunner().invoke(app, ["topology", "-f", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.output
