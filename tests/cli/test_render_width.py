"""Rendering a table never changes the width of the console it was given."""

from __future__ import annotations

import io

from rich.console import Console

from labkit import seed_topology
from peerwall.cli import render
from peerwall.model import SecurityMode
from peerwall.policy import expect


def test_a_console_that_follows_columns_still_follows_it_after_a_wide_table(
    seed_text: str,
) -> None:
    # A console kept across commands of one process (an in-process run) is shared by every
    # later command: a table printed at COLUMNS=40 pinned it at 40, and the next command's lines
    # wrapped there whatever COLUMNS said (an in-process docs test failed that way). The console
    # reads its own environment here, so nothing else in the process can change the outcome.
    environ: dict[str, str] = {}
    console = Console(file=io.StringIO(), no_color=True, _environ=environ)
    table = expect(seed_topology(seed_text), SecurityMode.FULL_POD_TO_POD).table
    environ["COLUMNS"] = "40"
    assert console.width == 40
    render.print_table(console, table)
    render.print_side_by_side(console, table, table, set(), titles=("a", "b"), marked="x")
    environ["COLUMNS"] = "100"
    assert console.width == 100
    fixed = Console(file=io.StringIO(), width=70)
    render.print_table(fixed, table)
    assert fixed.width == 70
