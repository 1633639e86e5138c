"""``peerwall diff``: what a change would block before it is switched on (a CI gate).

``--accept FILE`` lets a gate pass an intended loss: FILE lists the cells that may be lost (the
``changes`` of a ``diff -o json`` document, or a list of ``SRC -> DST`` cells), and the gate
passes when exactly those cells lose access.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from peerwall.cli.options import (
    Contexts,
    InputFile,
    Kubeconfigs,
    SetValues,
    ValuesFile,
    read_input,
    read_text,
    read_topology,
    resolve_mode,
)
from peerwall.cli.render import name_list, write_document
from peerwall.cli.selection import (
    ClusterFilter,
    FromFilter,
    NamespaceFilter,
    Selection,
    ToFilter,
)
from peerwall.errors import ModeInvalid, PeerwallError, Problem, TopologyInvalid, UnknownName

if TYPE_CHECKING:
    from peerwall.model import Topology
    from peerwall.policy import Expected, Explanation
    from peerwall.policy.whatif import Change

EXIT_LOSES = 1
Cell = tuple[str, str]


class DiffOutput(str, Enum):
    text = "text"
    json = "json"
    yaml = "yaml"
    markdown = "markdown"


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
    file: InputFile = None,
    kubeconfig: Kubeconfigs = None,
    context: Contexts = None,
    after_file: Annotated[
        Path | None,
        typer.Option(
            "--after", metavar="FILE2", help="The topology after the change (default: FILE)."
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
        DiffOutput,
        typer.Option(
            "--output", "-o", help="text, json, yaml or markdown (a pull-request comment)."
        ),
    ] = DiffOutput.text,
    accept: Annotated[
        Path | None,
        typer.Option(
            "--accept",
            metavar="FILE",
            help="Cells that may lose access (diff -o json output, or a list of 'SRC -> DST'): exit 0 if exactly they do.",
            show_default=False,
        ),
    ] = None,
    sources: FromFilter = None,
    destinations: ToFilter = None,
    clusters: ClusterFilter = None,
    namespaces: NamespaceFilter = None,
) -> None:
    """The cells a change would alter, each explained before and after; exits 1 if access is lost.

    Before: FILE under the global default mode (the built-in one, or --values). After: --after
    FILE2 (or FILE again) with --set and --peering applied. Exit 1 when access is lost (a cell
    goes YES -> PARTIAL or NO, or PARTIAL -> NO), 0 when nothing is lost (cells that appear, open
    up, or disappear with their pod or service), 2 on bad input. With --accept FILE: exit 0 when
    the cells lost are exactly those FILE lists, 1 otherwise. --from, --to, --cluster and
    --namespace keep only some cells.

    With --kubeconfig (instead of -f), before is the live clusters' topology: --after FILE2
    says what changing them to FILE2 would alter.

    Example: peerwall diff -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    from peerwall.model import parse_mode
    from peerwall.policy import expect
    from peerwall.policy.whatif import changes, with_peering_mode

    before_choice = resolve_mode(None, values)
    after_choice = resolve_mode(set_, values)
    if destinations and len(destinations) == 1 and Path(destinations[0]).is_file():
        raise UnknownName(
            f"--to {destinations[0]}: --to keeps destinations; the topology after the change "
            "is --after FILE2"
        )
    accepted = read_accepted(accept) if accept is not None else None
    file_name, before_topology = read_input(file, kubeconfig, context)
    after_topology = read_topology(after_file) if after_file is not None else before_topology
    for spec in peering or ():
        a, b, mode_text = _peering(spec)
        mode = parse_mode(mode_text, f"--peering {spec}")
        try:
            after_topology = with_peering_mode(after_topology, a, b, mode)
        except KeyError:
            raise UnknownName(
                f"--peering {spec}: {a} and {b} are not peered in the topology"
            ) from None
    selection = Selection.of(sources, destinations, clusters, namespaces)
    before = _select(selection, expect(before_topology, before_choice.mode), after_topology)
    after = _select(selection, expect(after_topology, after_choice.mode), before_topology)
    found = changes(before, after)
    lost = sum(c.cells for c in found if c.loses)
    total = sum(c.cells for c in found)
    described = (
        f"{file_name}, default mode {before_choice.describe()}",
        f"{after_file or file_name}, default mode {after_choice.describe()}"
        + (f", peerings {', '.join(peering)}" if peering else ""),
    )
    if selection:
        described = (described[0], described[1] + f"; only {selection.describe()}")
    if accepted is not None and selection:  # accepted cells the filters leave out are not judged
        srcs = {*before.table.sources, *after.table.sources}
        dsts = {*before.table.destinations, *after.table.destinations}
        accepted = frozenset(c for c in accepted if c[0] in srcs and c[1] in dsts)
    gate = Gate.of(found, accepted) if accepted is not None else None
    if output in (DiffOutput.json, DiffOutput.yaml):
        doc: dict[str, Any] = {
            "before": described[0],
            "after": described[1],
            "cells": total,
            "lost": lost,
            "changes": [_change_json(c) for c in found],
        }
        if gate is not None:
            doc["accept"] = gate.to_dict(str(accept))
        write_document(doc, sys.stdout, output.value)
    elif output is DiffOutput.markdown:
        sys.stdout.write(markdown(described, found, total, lost, gate, accept))
    else:
        typer.echo(f"before: {described[0]}\nafter:  {described[1]}")
        if not found:
            typer.echo("no cell changes")
        else:
            typer.echo(f"{total} cell(s) change, {lost} of them lose access:")
        for c in found:
            _print_change(c, gate)
        if gate is not None:
            for line in gate.summary(str(accept)):
                typer.echo(line)
    if (gate is not None and not gate.passes) or (gate is None and lost):
        raise typer.Exit(EXIT_LOSES)


def _select(selection: Selection, expected: Expected, other: Topology) -> Expected:
    """The expected table restricted to the selection. A filter may name something only one side
    has (a pod the change adds): it is an error only if neither side has it."""
    if not selection:
        return expected
    try:
        names = selection.names(expected.topology)
    except PeerwallError:
        selection.names(other)  # raises if the other side has nothing either
        return dataclasses.replace(expected, table=expected.table.restrict((), ()))
    return dataclasses.replace(expected, table=expected.table.restrict(*names))


# --- the accept file --------------------------------------------------------------------------


def read_accepted(path: Path) -> frozenset[Cell]:
    """The cells ``path`` accepts to lose: every cell of the ``changes`` of a ``diff -o json``
    (or yaml) document that lose access, or every cell of a list whose items are ``SRC -> DST``,
    ``{source, destination}`` or ``{sources, destinations}``."""
    source = str(path)
    try:
        doc = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise TopologyInvalid(source, [Problem("", f"not JSON or YAML ({e})")]) from None
    if isinstance(doc, dict) and "changes" in doc:
        items, where = doc["changes"], "changes"
        if isinstance(items, list):
            items = [i for i in items if not isinstance(i, dict) or i.get("losesAccess", True)]
    else:
        items, where = doc, ""
    if not isinstance(items, list):
        raise TopologyInvalid(
            source,
            [
                Problem(
                    where,
                    "expected the output of 'peerwall diff -o json' or a list of cells "
                    "('SRC -> DST')",
                )
            ],
        )
    cells: set[Cell] = set()
    for i, item in enumerate(items):
        cells.update(_cells(item, source, f"{where}[{i}]" if where else f"[{i}]"))
    return frozenset(cells)


def _cells(item: object, source: str, where: str) -> Iterator[Cell]:
    if isinstance(item, str):
        src, arrow, dst = item.partition("->")
        if arrow and src.strip() and dst.strip():
            yield src.strip(), dst.strip()
            return
    elif isinstance(item, dict):
        srcs = item.get("sources", [item.get("source")])
        dsts = item.get("destinations", [item.get("destination")])
        if _names(srcs) and _names(dsts):
            yield from ((s, d) for s in srcs for d in dsts if s != d)
            return
    raise TopologyInvalid(
        source,
        [
            Problem(
                where,
                "expected 'SRC -> DST', {source, destination} or {sources, destinations}, "
                f"got {item!r:.60}",
            )
        ],
    )


def _names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


@dataclasses.dataclass(frozen=True)
class Gate:
    """The lost cells against the accepted ones."""

    lost_accepted: int
    not_accepted: tuple[Cell, ...]
    """Lost and not accepted: the gate fails."""
    not_lost: tuple[Cell, ...]
    """Accepted and not lost (the change is not the one accepted): the gate fails too."""

    @classmethod
    def of(cls, found: Iterable[Change], accepted: frozenset[Cell]) -> Gate:
        lost = [(m.source, m.destination) for c in found if c.loses for m in c.block.mismatches()]
        lost_set = set(lost)
        return cls(
            sum(cell in accepted for cell in lost),
            tuple(cell for cell in lost if cell not in accepted),
            tuple(sorted(accepted - lost_set)),
        )

    @property
    def passes(self) -> bool:
        return not self.not_accepted and not self.not_lost

    def summary(self, file: str) -> list[str]:
        if self.passes:
            return [f"accepted: the {self.lost_accepted} cell(s) lost are exactly those of {file}"]
        out = []
        if self.not_accepted:
            out.append(
                f"NOT ACCEPTED: {len(self.not_accepted)} lost cell(s) not in {file}: "
                + _cell_list(self.not_accepted)
            )
        if self.not_lost:
            out.append(
                f"NOT LOST: {len(self.not_lost)} cell(s) of {file} do not lose access: "
                + _cell_list(self.not_lost)
            )
        return out

    def to_dict(self, file: str) -> dict[str, Any]:
        return {
            "file": file,
            "passes": self.passes,
            "lostAccepted": self.lost_accepted,
            "lostNotAccepted": [list(c) for c in self.not_accepted],
            "acceptedNotLost": [list(c) for c in self.not_lost],
        }


def _cell_list(cells: tuple[Cell, ...], limit: int = 10) -> str:
    return name_list([f"{s} -> {d}" for s, d in cells], limit)


# --- markdown, for a pull-request comment -------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(
    described: tuple[str, str],
    found: list[Change],
    total: int,
    lost: int,
    gate: Gate | None,
    accept: Path | None,
) -> str:
    """The diff as a Markdown comment: a heading that says the outcome, a table of changes."""
    if gate is not None:
        verdict = "✅ only accepted losses" if gate.passes else "❌ losses not accepted"
    else:
        verdict = "❌ access lost" if lost else "✅ no access lost"
    lines = [
        f"### peerwall diff: {verdict}",
        "",
        f"**{total}** cell(s) change, **{lost}** of them lose access.",
        "",
        f"- before: {_md(described[0])}",
        f"- after: {_md(described[1])}",
        "",
    ]
    if found:
        lines += [
            "| sources | destinations | cells | before | after | lost | why, after |",
            "|---|---|--:|---|---|---|---|",
        ]
        for c in found:
            b = c.block
            old = b.expected.value if b.expected else "-"
            new = b.observed.value if b.observed else "-"
            lines.append(
                f"| {_md(name_list(b.sources))} | {_md(name_list(b.destinations))} | {c.cells} "
                f"| {old} | {new} | {'**LOST**' if c.loses else ''} | {_md(_why(c.after))} |"
            )
        lines.append("")
    if gate is not None and accept is not None:
        lines += [f"- {_md(line)}" for line in gate.summary(str(accept))]
        lines.append("")
    return "\n".join(lines)


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


def _print_change(c: Change, gate: Gate | None = None) -> None:
    b = c.block
    old = b.expected.value if b.expected else "-"
    new = b.observed.value if b.observed else "-"
    mark = "  LOST" if c.loses else ""
    if c.loses and gate is not None:
        refused = set(gate.not_accepted)
        mark += (
            " (not accepted)" if any(cell in refused for cell in _cells_of(c)) else " (accepted)"
        )
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


def _cells_of(c: Change) -> Iterator[Cell]:
    return ((m.source, m.destination) for m in c.block.mismatches())
