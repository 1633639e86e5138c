"""``peerwall lab …`` and ``peerwall demo``: the emulated virtual cluster on this machine.

Exit status, as everywhere: 0 ok; 1 a check failed (wrong cells, drift, a broken lab); 2 bad
input or an error. With ``--output json`` stdout carries the contract document and nothing else;
diagnostics go to stderr.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from peerwall.cli import render
from peerwall.cli.options import (
    SetValues,
    TopologyFile,
    ValuesFile,
    read_source,
    resolve_audit,
    resolve_mode,
)
from peerwall.errors import LabError, ModeInvalid
from peerwall.figures import probe_html
from peerwall.figures.flows import cell_title, drop_line, drops_by_cell, flows_page
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.lab import demo as demos
from peerwall.lab.drops import Follower, matches
from peerwall.lab.netns import list_namespaces
from peerwall.lab.probing import observe_lab
from peerwall.lab.state import lab_folder, list_labs, load_state
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import Comparison, Decider, expect
from peerwall.settings import MAX_PROBE_TIMEOUT, LabSettings, ProbeSettings
from peerwall.verify.observe import Observed

app = typer.Typer(no_args_is_help=True, help="Build, probe, inspect and remove the emulated lab.")
err = Console(stderr=True)

LabName = Annotated[
    str,
    typer.Option("--name", "-n", help="Lab name (namespaces are pw-NAME-…).", metavar="NAME"),
]


def _check_timeout(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= MAX_PROBE_TIMEOUT):
        raise typer.BadParameter(
            f"{value:g} is not a timeout: give seconds, more than 0 and at most {MAX_PROBE_TIMEOUT:g}"
        )
    return value


Timeout = Annotated[
    float,
    typer.Option(
        "--timeout",
        help=f"Seconds before a connection attempt counts as blocked (0 < T <= {MAX_PROBE_TIMEOUT:g}).",
        callback=_check_timeout,
    ),
]


class ProbeOutput(str, Enum):
    table = "table"
    json = "json"
    html = "html"


def _say(message: str) -> None:
    """Progress of long work: on a terminal only, so that a pipe or a log stays quiet."""
    if err.is_terminal:
        err.print(f"[dim]·[/dim] {message}")


@app.command()
def up(
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    name: LabName = "lab",
) -> None:
    """Build the topology as namespaces, veths, tunnels and nftables; replaces a lab of that name.

    Example: peerwall lab up -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    choice = resolve_mode(set_, values)
    # The lab records the text, so read it once (standard input cannot be read twice).
    source, text = read_source(file)
    topology = load_topology(text, source)
    audit = resolve_audit(set_, values)
    plan = labs.up(
        name, topology, text, source, choice.mode, LabSettings(), progress=_say, audit=audit
    )
    err.print(
        f"lab [bold]{name}[/bold] is up: {len(plan.namespaces())} namespaces, "
        f"{len(topology.clusters)} gateways, mode {choice.describe()}"
        f"{' (audited: would-drop is allowed and reported)' if audit else ''}. "
        f"Next: peerwall lab probe --name {name}"
    )


@app.command()
def apply(file: TopologyFile, name: LabName = "lab") -> None:
    """Swap the running lab's topology live: rewire only what changed; the agents converge.

    Supported edits: pods added, removed, relabelled or moved by offloading; selectors; namespaces
    offloaded to one more provider or fewer; peerings added or removed; modes of peerings and
    clusters; clusters added. The global default mode stays (see set-mode).

    Example: peerwall lab apply -f three-clusters-v2.yaml --name lab
    """
    source, text = read_source(file)
    topology = load_topology(text, source)
    changes, done = labs.apply(name, topology, text, source, LabSettings())
    err.print(
        f"lab {name}: {changes.summary() or 'no wiring change'}; agents converged in {done.seconds * 1000:.0f} ms"
    )
    for cluster, status in sorted(done.statuses.items()):
        tx = ", ".join(f"{k} {n}" for k, n in status["transactions"].items() if n)
        err.print(f"  agent {cluster}: transactions so far: {tx}")


@app.command()
def repair(name: LabName = "lab") -> None:
    """Have every gateway's agent read its table back and repair any drift now (each also does
    so by itself every 10 s); returns once all have checked.

    Example: peerwall lab repair --name lab
    """
    repaired = labs.repair(name, LabSettings())
    typer.echo(f"lab {name}: every gateway's table read back")
    for cluster, n in sorted(repaired.items()):
        typer.echo(f"  gateway {cluster}: " + ("drift repaired" if n else "in sync"))


@app.command()
def down(name: LabName = "lab") -> None:
    """Remove the lab: every pw-NAME-… namespace (and so every veth and rule) and its state.

    Example: peerwall lab down --name lab
    """
    gone = labs.down(name, LabSettings())
    err.print(
        f"lab {name}: removed {len(gone)} namespaces" if gone else f"lab {name}: nothing to remove"
    )


@app.command()
def status(
    name: Annotated[str | None, typer.Option("--name", "-n")] = None,
    output: Annotated[
        ProbeOutput, typer.Option("--output", "-o", help="table or json.")
    ] = ProbeOutput.table,
) -> None:
    """The labs that are up, their mode, and whether each gateway's rules match the desired ones.

    Exits 1 if a gateway drifted or a lab is broken (each lab is reported on its own).

    Example: peerwall lab status --output json
    """
    settings = LabSettings()
    listings = list_labs(settings)
    if name is not None:
        listings = [entry for entry in listings if entry.name == name]
        if not listings:
            load_state(name, settings)  # raises the usual "no lab named ..." error
    reports = [_lab_report(entry, settings) for entry in listings]
    if output is ProbeOutput.json:
        json.dump({"labs": reports}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not reports:
        typer.echo("no lab is up")
    for r in reports if output is not ProbeOutput.json else ():
        if r["problem"] and r["source"] is None:
            typer.echo(f"{r['name']}: {r['problem']}")
            continue
        typer.echo(
            f"{r['name']}: {r['source']}, mode {r['mode']}, "
            f"{r['namespaces']['present']}/{r['namespaces']['expected']} namespaces"
        )
        if r["problem"]:
            typer.echo(f"  {r['problem']}")
        for cluster, drifts in r["gateways"].items():
            agent = r["agents"].get(cluster)
            who = "" if agent is None else f", agent {'up' if agent['running'] else 'DOWN'}"
            line = "in sync" if not drifts else f"{len(drifts)} difference(s)"
            typer.echo(f"  gateway {cluster}: {line}{who}")
            for d in drifts:
                typer.echo(f"    {d}")
    if any(r["failed"] for r in reports):
        raise typer.Exit(1)


def _lab_report(entry: Any, settings: LabSettings) -> dict[str, Any]:
    """One lab's state, drift and agents; never raises (one broken lab must not hide others)."""
    report: dict[str, Any] = {
        "name": entry.name,
        "source": None,
        "mode": None,
        "problem": entry.problem,
        "namespaces": {"present": 0, "expected": 0},
        "gateways": {},
        "agents": {},
        "failed": entry.state is None,
    }
    state = entry.state
    if state is None:
        return report
    report.update(source=state.source, mode=state.mode)
    try:
        plan = state.plan(settings)
        present = list_namespaces(plan.prefix)
        missing = sorted(set(plan.namespaces()) - set(present))
        report["namespaces"] = {
            "present": len(plan.namespaces()) - len(missing),
            "expected": len(plan.namespaces()),
        }
        if missing:
            more = " …" if len(missing) > 5 else ""
            report.update(problem=f"broken: missing {', '.join(missing[:5])}{more}", failed=True)
            return report
        gateways = labs.gateway_drift(plan, SecurityMode(state.mode), state.audit)
        for cluster, drifts in gateways.items():
            report["gateways"][cluster] = [str(d) for d in drifts]
            report["failed"] = report["failed"] or bool(drifts)
        if settings.agents:
            for c in plan.topology.clusters:
                running = agents.running(plan, settings, c.name)
                report["agents"][c.name] = {
                    "running": running,
                    **(agents.status(plan, settings, c.name) or {}),
                }
                report["failed"] = report["failed"] or not running
    except Exception as e:  # one broken lab must not hide the others
        report.update(problem=f"broken: {e}", failed=True)
    return report


def describe_modes(topology: Topology, mode: SecurityMode) -> list[str]:
    """One line per receiving cluster and peer: the mode it enforces, and where that comes from."""
    decider = Decider(topology, mode)
    lines = []
    for c in topology.clusters:
        for peer in topology.peers[c.name]:
            m = decider.mode(c.name, peer)
            lines.append(f"{c.name}: traffic from {peer}: {m.describe(c.name, peer)}")
    return lines


@app.command("set-mode")
def set_mode(set_: SetValues = None, values: ValuesFile = None, name: LabName = "lab") -> None:
    """Change the running lab's global default mode (set elements only: allowed flows survive).

    Example: peerwall lab set-mode --set networking.securityMode=IntraClusterTrafficSegregation
    """
    if not set_ and values is None:
        raise ModeInvalid(
            "lab set-mode: say which mode, e.g. --set networking.securityMode=FullPodToPod "
            "(or --values FILE)"
        )
    choice = resolve_mode(set_, values)
    if choice.origin == "built-in default":
        raise ModeInvalid(
            f"lab set-mode: {values} sets no networking.securityMode; say which mode, e.g. "
            "--set networking.securityMode=FullPodToPod"
        )
    settings = LabSettings()
    audit = resolve_audit(set_, values)
    done = labs.set_mode(name, choice.mode, settings, audit=audit)
    err.print(f"enforced in {done.seconds * 1000:.0f} ms")
    for cluster, status in sorted(done.statuses.items()):
        tx = ", ".join(f"{k} {n}" for k, n in status["transactions"].items() if n)
        err.print(f"  agent {cluster}: transactions so far: {tx}")
    topology = load_state(name, settings).topology(settings)
    audited = " (audited: what segregation would drop is let through and reported)"
    typer.echo(f"lab {name}: global default mode {choice.describe()}{audited if audit else ''}")
    for line in describe_modes(topology, choice.mode):
        typer.echo(f"  {line}")


@contextmanager
def _progress_bar() -> Iterator[Callable[[str], Callable[[int, int], None] | None]]:
    """A factory of progress callbacks, one bar per label; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _label: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    ) as bar:

        def factory(label: str) -> Callable[[int, int], None]:
            task = bar.add_task(label, total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        yield factory


READING_REPRODUCERS = (
    "outside a probe run nothing listens: 'Connection refused' means the packet got through, "
    "a timeout means it was dropped"
)


def report_wrong(observed: Observed, wrong: Comparison, out: Console) -> None:
    """Each wrong cell with what the probes saw and the commands that repeat them by hand."""
    for m in wrong.mismatches():
        cell = observed.cells[(m.source, m.destination)]
        exp = m.expected.value if m.expected else "-"
        got = m.observed.value if m.observed else "-"
        out.print(
            f"wrong: {m.source} -> {m.destination}: computed {exp}, observed {got}; {cell.detail()}",
            soft_wrap=True,
            highlight=False,
        )
        for cmd in cell.reproducers:
            out.print(f"  reproduce: {cmd}", soft_wrap=True, highlight=False)
    if wrong:
        out.print(f"  ({READING_REPRODUCERS})", soft_wrap=True)


def report_not_dialled(observed: Observed, out: Console) -> None:
    """The cells that are NO without a probe, because there is nothing to dial where the source
    runs (a service absent from that cluster, a destination without a route there): one line
    per cause, so that it stays short at any size."""
    groups: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for (source, destination), obs in observed.cells.items():
        if obs.cell.cause and not obs.results:
            sources, destinations = groups.setdefault(obs.cell.cause, ({}, {}))
            sources[source] = destinations[destination] = None
    if not groups:
        return
    out.print("not dialled (NO without a probe: nothing to dial where the source runs):")
    for cause, (sources, destinations) in groups.items():
        out.print(
            f"  {render.name_list(list(sources), 5)} -> "
            f"{render.name_list(list(destinations), 12)}: {cause}",
            soft_wrap=True,
            highlight=False,
        )


@app.command()
def probe(
    name: LabName = "lab",
    output: Annotated[ProbeOutput, typer.Option("--output", "-o")] = ProbeOutput.table,
    timeout: Timeout = 1.0,
) -> None:
    """Probe every cell with real TCP connections; compare with the computed table (exit 1 if wrong).

    Example: peerwall lab probe --output json > observed.json
    """
    settings = LabSettings()
    state = load_state(name, settings)
    plan = state.plan(settings)
    mode = SecurityMode(state.mode)
    follower = _drops_follower(plan, settings) if output is ProbeOutput.html else None
    with _progress_bar() as progress:
        observed = observe_lab(
            plan,
            state.mode,
            settings,
            ProbeSettings(timeout=timeout),
            progress(f"probing lab {name}"),
            lab_folder(name, settings),
        )
    expected = expect(plan.topology, mode, force=enforced_baseline(plan.topology, state)).table
    wrong = expected.compare(observed.table)
    json_out = output is not ProbeOutput.table  # stdout carries the document and nothing else
    if output is ProbeOutput.json:
        observed.table.write_json(sys.stdout)
    elif output is ProbeOutput.html:
        evidence = {
            (m.source, m.destination): (
                observed.cells[(m.source, m.destination)].detail(),
                list(observed.cells[(m.source, m.destination)].reproducers),
            )
            for m in wrong.mismatches()
        }
        sys.stdout.write(
            probe_html(
                expected,
                observed.table,
                evidence,
                title=f"lab {name}: observed by {observed.attempts} probes vs computed ({state.mode})",
                topology=plan.topology,
                note=READING_REPRODUCERS,
                drops=_recent_drops(follower),
            )
        )
    else:
        render.print_side_by_side(
            Console(),
            expected,
            observed.table,
            set(wrong.cells()),
            titles=(
                f"computed: {state.mode}",
                f"observed: {observed.attempts} probes in {observed.seconds:.1f} s",
            ),
            marked="observed differs from computed (wrong)",
        )
        report_not_dialled(observed, Console())
    report = err if json_out else Console()
    report_wrong(observed, wrong, report)
    total = len(expected.sources) * len(expected.destinations) - len(expected.sources)
    report.print(f"{total - len(wrong)} correct, {len(wrong)} wrong", highlight=False)
    if wrong:
        raise typer.Exit(1)


def _drops_follower(plan: Any, settings: LabSettings) -> Follower | None:
    """A follower past every agent's current events, so that only the probes' drops show;
    None if the agents do not answer (the page is drawn without drops)."""
    if not settings.agents:
        return None
    follower = Follower(plan, [c.name for c in plan.topology.clusters])
    try:
        follower.poll()
    except LabError as e:
        err.print(f"drops not shown: {e}")
        return None
    return follower


def _recent_drops(follower: Follower | None) -> dict[tuple[str, str], str]:
    """The probes' drops by cell (reports arrive within milliseconds; give them a moment)."""
    if follower is None:
        return {}
    time.sleep(DROPS_SETTLE)
    try:
        events = follower.poll()
    except LabError as e:
        err.print(f"drops not shown: {e}")
        return {}
    return {cell: cell_title(found) for cell, found in drops_by_cell(events).items()}


DROPS_SETTLE = 0.3
"""Seconds ``lab probe -o html`` waits after probing for the last drops to be reported."""


def enforced_baseline(topology: Topology, state: Any) -> SecurityMode | None:
    """Under a global audit that no peering turns off, nothing segregation would drop is dropped:
    the lab enforces FullPodToPod's table (and reports the rest as would-drop)."""
    if state.audit and all(p.security_audit is not False for p in topology.peerings):
        return SecurityMode.FULL_POD_TO_POD
    return None


class DropsOutput(str, Enum):
    table = "table"
    json = "json"
    html = "html"


@app.command()
def drops(
    name: LabName = "lab",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new drops until interrupted.")
    ] = False,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Only drops from this pod (name or address).", metavar="P"),
    ] = None,
    destination: Annotated[
        str | None,
        typer.Option("--to", help="Only drops to this pod, API server or address.", metavar="Q"),
    ] = None,
    output: Annotated[
        DropsOutput,
        typer.Option("--output", "-o", help="table, json (one event per line) or html."),
    ] = DropsOutput.table,
) -> None:
    """The drops every gateway's agent saw, newest last: who, what, and why (from the policy).

    Example: peerwall lab drops --name lab --from P1 --to P5 -o json
    """
    settings = LabSettings()
    plan = load_state(name, settings).plan(settings)
    follower = Follower(plan, [c.name for c in plan.topology.clusters])
    if output is DropsOutput.html:
        if follow:
            raise typer.BadParameter("an HTML page cannot follow", param_hint="--follow")
        events = [e for e in follower.poll() if matches(e, source, destination)]
        sys.stdout.write(flows_page(events, f"lab {name}: recent drops"))
        return
    while True:
        for event in follower.poll():
            if not matches(event, source, destination):
                continue
            if output is DropsOutput.json:
                sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            else:
                typer.echo(drop_line(event))
        sys.stdout.flush()
        if not follow:
            return
        time.sleep(FOLLOW_POLL)


FOLLOW_POLL = 0.5
"""Seconds between two reads of the agents' rings by ``lab drops --follow``."""


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

    Example: peerwall demo --set networking.securityMode=IntraClusterTrafficSegregation
    """
    if file is None:
        source = "seed-topology.yaml (bundled)"
        text = resources.files("peerwall").joinpath("examples/seed.yaml").read_text()
    else:
        source, text = read_source(file)
    topology: Topology = load_topology(text, source)
    modes = [resolve_mode(set_, values).mode] if (set_ or values) else list(SecurityMode)
    console = Console()
    started = time.perf_counter()
    failures = 0
    with _progress_bar() as progress:
        runs = demos.run(
            name,
            topology,
            text,
            source,
            modes,
            lab=LabSettings(),
            probe=ProbeSettings(timeout=timeout),
            say=_say,
            progress=progress,
        )
        for r in runs:
            render.print_table(
                console,
                r.observed.table,
                r.differs_from_full,
                title=f"{r.mode.value}: observed by {r.observed.attempts} TCP probes",
                baseline=SecurityMode.FULL_POD_TO_POD.value,
            )
            verdict = (
                "equal to the computed table"
                if not r.wrong
                else f"{len(r.wrong)} cells differ from the computed table"
            )
            console.print(
                f"{'[green]✓' if not r.wrong else '[red]✗'}[/] {r.mode.value}: {verdict}\n"
            )
            report_wrong(r.observed, r.wrong, console)
            failures += len(r.wrong)
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
