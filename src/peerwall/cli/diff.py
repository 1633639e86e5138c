"""``peerwall diff``: what a change would block before it is switched on (a CI gate)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from peerwall.cli.options import SetValues, TopologyFile, ValuesFile, read_topology, resolve_mode
from peerwall.cli.render import name_list
from peerwall.errors import ModeInvalid, UnknownName
from peerwall.model import parse_mode
from peerwall.policy import Explanation, expect
from peerwall.policy.whatif import Change, changes, with_peering_mode

EXIT_LOSES = 1


class DiffOutput(str, Enum):
    text = "text"
    json = "json"


def _peering(spec: str) -> tuple[str, str, str]:
    pair, sep, mode = spec.partition("=")
    a, colon, b = pair.partition(":")
    if not sep or not colon or not a or not b or not mode:
        raise ModeInvalid(
            f"--peering {spec!r}: expected A:B=MODE, e.g. C1:C2=IntraClusterTrafficSegregation"
        )
    return a.strip(), b.strip(), mode.strip()


def _why(e: Explanation | None) -> str:
    if e is None:
        return "the cell does not exist"
    where = (
        f" [{e.mode.describe(e.receiver, e.peering[0])}]"
        if e.mode and e.receiver and e.peering
        else ""
    )
    return f"{e.rule}: {e.reason}{where}"


def _json(e: Explanation | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "verdict": e.verdict.value,
        "rule": e.rule,
        "reason": e.reason,
        "receiver": e.receiver,
        "mode": e.mode.mode.value if e.mode else None,
        "modeOrigin": e.mode.origin.value if e.mode else None,
    }


def diff(
    file: TopologyFile,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", metavar="FILE2", help="The topology after the change (default: FILE)."
        ),
    ] = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    peering: Annotated[
        list[str] | None,
        typer.Option(
            "--peering",
            metavar="A:B=MODE",
            help="After the change, the connection between clusters A and B uses MODE (repeatable).",
        ),
    ] = None,
    output: Annotated[
        DiffOutput, typer.Option("--output", "-o", help="text or json.")
    ] = DiffOutput.text,
) -> None:
    """The cells a change would alter, each explained before and after; exits 1 if access is lost.

    Before: FILE under the global default mode (the built-in one, or --values). After: --to FILE2
    (or FILE again) with --set and --peering applied. Exit 1 when access is lost (a cell goes
    YES -> PARTIAL or NO, or PARTIAL -> NO), 0 when nothing is lost (cells that appear, open up,
    or disappear with their pod or service), 2 on bad input.

    Example: peerwall diff -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    before_choice = resolve_mode(None, values)
    after_choice = resolve_mode(set_, values)
    before_topology = read_topology(file)
    after_topology = read_topology(to) if to is not None else before_topology
    for spec in peering or ():
        a, b, mode_text = _peering(spec)
        mode = parse_mode(mode_text, f"--peering {spec}")
        try:
            after_topology = with_peering_mode(after_topology, a, b, mode)
        except KeyError:
            raise UnknownName(
                f"--peering {spec}: {a} and {b} are not peered in the topology"
            ) from None
    before = expect(before_topology, before_choice.mode)
    after = expect(after_topology, after_choice.mode)
    found = changes(before, after)
    lost = sum(c.cells for c in found if c.loses)
    total = sum(c.cells for c in found)
    described = (
        f"{file}, default mode {before_choice.describe()}",
        f"{to or file}, default mode {after_choice.describe()}"
        + (f", peerings {', '.join(peering)}" if peering else ""),
    )
    if output is DiffOutput.json:
        json.dump(
            {
                "before": described[0],
                "after": described[1],
                "cells": total,
                "lost": lost,
                "changes": [_change_json(c) for c in found],
            },
            sys.stdout,
            indent=1,
        )
        sys.stdout.write("\n")
    else:
        typer.echo(f"before: {described[0]}\nafter:  {described[1]}")
        if not found:
            typer.echo("no cell changes")
        else:
            typer.echo(f"{total} cell(s) change, {lost} of them lose access:")
        for c in found:
            _print_change(c)
    if lost:
        raise typer.Exit(EXIT_LOSES)


def _change_json(c: Change) -> dict[str, Any]:
    b = c.block
    return {
        "sources": list(b.sources),
        "destinations": list(b.destinations),
        "cells": c.cells,
        "before": b.expected.value if b.expected else None,
        "after": b.observed.value if b.observed else None,
        "losesAccess": c.loses,
        "explanation": {"before": _json(c.before), "after": _json(c.after)},
    }


def _print_change(c: Change) -> None:
    b = c.block
    old = b.expected.value if b.expected else "-"
    new = b.observed.value if b.observed else "-"
    mark = "  LOST" if c.loses else ""
    if c.cells == 1:
        m = next(b.mismatches())
        typer.echo(f"  {m.source} -> {m.destination}: {old} -> {new}{mark}")
    else:
        typer.echo(
            f"  {name_list(b.sources)} -> {name_list(b.destinations)} ({c.cells} cells): {old} -> {new}{mark}"
        )
        first = next(b.mismatches())
        typer.echo(f"    (explained for {first.source} -> {first.destination})")
    typer.echo(f"    before: {_why(c.before)}")
    typer.echo(f"    after:  {_why(c.after)}")
