"""docs/figures is generated: regenerating it from the bundled seed gives the same bytes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

DOCS = Path(__file__).resolve().parents[2] / "docs" / "figures"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_figures_generate", DOCS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_figures_are_what_the_code_draws():
    figures: dict[str, str] = generator().figures()
    assert set(figures) == {"seed-segregation.svg", "seed-topology.svg"}
    stale = [
        name
        for name, content in figures.items()
        if not (DOCS / name).is_file() or (DOCS / name).read_bytes() != content.encode("utf-8")
    ]
    assert not stale, f"{', '.join(stale)} out of date: run 'make figures' and commit the result"
