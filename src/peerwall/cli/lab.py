"""``peerwall lab …`` and ``peerwall demo``: the emulated virtual cluster on this machine."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from peerwall.cli import render
from peerwall.cli.options import SetValues, TopologyFile, ValuesFile, read_source, resolve_mode
from peerwall.lab import build as labs
from peerwall.lab.netns import list_namespaces
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import expect
from peerwall.policy.truthtable import TruthTable
from peerwall.probe.run import CellResult, Observed, observe
from peerwall.settings import ProbeSettings

app = typer.Typer(no_args_is_help=True, help="Build, probe, inspect and remove the emulated lab.")
err = Console(stderr=True)

LabName = Annotated[
    str,
    typer.Option("--name", "-n", help="Lab name (namespaces are pw-NAME-…).", metavar="NAME"),
]
Timeout = Annotated[
    float, typer.Option("--timeout", help="Seconds before a connection attempt counts as blocked.")
]


class ProbeOutput(str, Enum):
    table = "table"
    json = "json"


def _say(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}")


@app.command()
def up(
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    name: LabName = "lab",
) -> None:
    """Build the topology as namespaces, veths, tunnels and nftables; replaces a lab of that name."""
    choice = resolve_mode(set_, values)
    # The lab records the text, so read it once (standard input cannot be read twice).
    source, text = read_source(file)
    topology = load_topology(text, source)
    plan = labs.up(name, topology, text, source, choice.mode, progress=_say)
    err.print(
        f"lab [bold]{name}[/bold] is up: {len(plan.namespaces())} namespaces, "
        f"{len(topology.clusters)} gateways, mode {choice.describe()}. "
        f"Next: peerwall lab probe --name {name}"
    )


@app.command()
def down(name: LabName = "lab") -> None:
    """Remove the lab: every pw-NAME-… namespace (and so every veth and rule) and its state."""
    gone = labs.down(name)
    err.print(
        f"lab {name}: removed {len(gone)} namespaces" if gone else f"lab {name}: nothing to remove"
    )


@app.command()
def status(name: Annotated[str | None, typer.Option("--name", "-n")] = None) -> None:
    """The labs that are up, their mode, and whether each gateway's rules match the desired ones."""
    states = [labs.load_state(name)] if name else labs.list_states()
    if not states:
        typer.echo("no lab is up")
        return
    for state in states:
        plan = state.plan()
        present = list_namespaces(plan.prefix)
        typer.echo(
            f"{state.name}: {state.source}, mode {state.mode}, "
            f"{len(present)}/{len(plan.namespaces())} namespaces"
        )
        for cluster, drifts in labs.gateway_drift(plan, SecurityMode(state.mode)).items():
            line = "in sync" if not drifts else f"{len(drifts)} difference(s)"
            typer.echo(f"  gateway {cluster}: {line}")
            for d in drifts:
                typer.echo(f"    {d}")


@app.command("set-mode")
def set_mode(set_: SetValues = None, values: ValuesFile = None, name: LabName = "lab") -> None:
    """Change the running lab's global default mode (set elements only: flows survive)."""
    choice = resolve_mode(set_, values)
    for cluster, o in labs.set_mode(name, choice.mode).items():
        what = "full replace" if o.full else f"+{o.added}/-{o.removed} set elements"
        err.print(
            f"{cluster}: {what if o.changed else 'already in sync'} ({o.seconds * 1000:.1f} ms)"
        )


@contextmanager
def _probe_progress(label: str) -> Iterator[Progress]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    ) as bar:
        yield bar


def run_observe(plan: LabPlan, mode: str, settings: ProbeSettings, label: str) -> Observed:
    with _probe_progress(label) as bar:
        task = bar.add_task(label, total=None)
        return observe(
            plan,
            mode,
            probe=settings,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def report_wrong(observed: Observed, wrong: list[tuple[str, str]], settings: ProbeSettings) -> None:
    """Each wrong cell with what the probes saw and the commands that repeat them by hand."""
    for s, d in wrong:
        cell: CellResult = observed.cells[(s, d)]
        typer.echo(f"wrong: {s} -> {d}: observed {cell.verdict.value}; {cell.detail()}")
        for cmd in cell.reproducers(settings.timeout):
            typer.echo(f"  reproduce: {cmd}")
    if wrong:
        typer.echo(
            "  (outside a probe run nothing listens: 'Connection refused' means the packet got "
            "through, a timeout means it was dropped)"
        )


def compare(expected: TruthTable, observed: Observed) -> list[tuple[str, str]]:
    return [(m.source, m.destination) for m in expected.compare(observed.table)]


@app.command()
def probe(
    name: LabName = "lab",
    output: Annotated[ProbeOutput, typer.Option("--output", "-o")] = ProbeOutput.table,
    timeout: Timeout = 1.0,
) -> None:
    """Probe every cell with real TCP connections; compare with the computed table (exit 1 if wrong)."""
    state = labs.load_state(name)
    plan = state.plan()
    settings = ProbeSettings(timeout=timeout)
    observed = run_observe(plan, state.mode, settings, f"probing lab {name}")
    expected = expect(plan.topology, SecurityMode(state.mode)).table
    wrong = compare(expected, observed)
    if output is ProbeOutput.json:
        observed.table.write_json(sys.stdout)
    else:
        render.print_side_by_side(
            Console(),
            expected,
            observed.table,
            set(wrong),
            titles=(
                f"computed: {state.mode}",
                f"observed: {observed.probes} probes in {observed.seconds:.1f} s",
            ),
            marked="observed differs from computed (wrong)",
        )
    total = len(expected.sources) * len(expected.destinations) - len(expected.sources)
    report_wrong(observed, wrong, settings)
    print(
        f"{total - len(wrong)} correct, {len(wrong)} wrong",
        file=sys.stderr if output is ProbeOutput.json else sys.stdout,
    )
    if wrong:
        raise typer.Exit(1)


def demo(
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Topology (default: the seed's two clusters)."),
    ] = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    name: LabName = "demo",
    timeout: Timeout = 1.0,
) -> None:
    """Bring the seed topology up, probe it under each mode, show the observed tables, tear down.

    Exits 0 only if every observed table equals the computed one. With --set, only that mode runs.
    """
    if file is None:
        source = "seed-topology.yaml (bundled)"
        text = resources.files("peerwall").joinpath("examples/seed.yaml").read_text()
    else:
        source, text = read_source(file)
    topology: Topology = load_topology(text, source)
    modes = [resolve_mode(set_, values).mode] if (set_ or values) else list(SecurityMode)
    settings = ProbeSettings(timeout=timeout)
    console = Console()
    started = time.perf_counter()
    failures = 0
    tables: dict[SecurityMode, TruthTable] = {}
    with err.status("building the lab"):
        plan = labs.up(name, topology, text, source, modes[0], progress=_say)
    try:
        for mode in modes:
            if mode is not modes[0]:  # `up` already enforced the first one
                for cluster, o in labs.apply_modes(plan, mode).items():
                    if o.changed:
                        _say(
                            f"{cluster}: switched to {mode.value} with +{o.added}/-{o.removed} set elements"
                        )
            observed = run_observe(plan, mode.value, settings, f"probing under {mode.value}")
            wrong = compare(expect(topology, mode).table, observed)
            tables[mode] = observed.table
            full = tables.get(SecurityMode.FULL_POD_TO_POD)
            highlight = (
                observed.table.differing(full)
                if full and mode is not SecurityMode.FULL_POD_TO_POD
                else set()
            )
            render.print_table(
                console,
                observed.table,
                highlight,
                title=f"{mode.value}: observed by {observed.probes} TCP probes",
                baseline=SecurityMode.FULL_POD_TO_POD.value,
            )
            verdict = (
                "equal to the computed table"
                if not wrong
                else f"{len(wrong)} cells differ from the computed table"
            )
            console.print(f"{'[green]✓' if not wrong else '[red]✗'}[/] {mode.value}: {verdict}\n")
            report_wrong(observed, wrong, settings)
            failures += len(wrong)
    finally:
        with err.status("tearing the lab down"):
            labs.down(name)
    console.print(
        f"demo finished in {time.perf_counter() - started:.1f} s: "
        + (
            "every observed cell equals the computed one"
            if not failures
            else f"{failures} wrong cells"
        )
    )
    if failures:
        raise typer.Exit(1)
