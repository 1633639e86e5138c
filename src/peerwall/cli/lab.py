"""``peerwall lab …`` and ``peerwall demo``: the emulated virtual cluster on this machine.

Exit status, as everywhere: 0 ok; 1 a check failed (wrong cells, drift, a broken lab); 2 bad
input or an error. With ``--output json`` stdout carries the contract document and nothing else;
diagnostics go to stderr.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from peerwall import model, policy
from peerwall.cli import complete, render
from peerwall.cli.options import (
    SetValues,
    TopologyFile,
    ValuesFile,
    read_source,
    resolve_audit,
    resolve_mode,
)
from peerwall.cli.selection import (
    ClusterFilter,
    FromFilter,
    NamespaceFilter,
    Selection,
    ToFilter,
    event_filter,
)
from peerwall.errors import LabError, ModeInvalid
from peerwall.model.modes import SecurityMode
from peerwall.settings import MAX_PROBE_TIMEOUT, LabSettings, ProbeSettings

if TYPE_CHECKING:
    from rich.progress import Progress

    from peerwall.lab.drops import Follower
    from peerwall.model import Topology
    from peerwall.policy import Comparison
    from peerwall.verify.observe import Observed

# The lab, the prober and the figures are imported by the commands that use them: `peerwall
# --help` and the commands that need no lab do not pay for them.

app = typer.Typer(no_args_is_help=True, help="Build, probe, inspect and remove the emulated lab.")


def err() -> Console:
    """Standard error as this command's environment has it now: a console kept from an earlier
    command of the same process (in-process runs, tests) would keep that command's width."""
    return Console(stderr=True)


LabName = Annotated[
    str,
    typer.Option(
        "--name",
        "-n",
        help="Lab name (namespaces are pw-NAME-…).",
        metavar="NAME",
        autocompletion=complete.lab_names,
    ),
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
        help=f"Seconds a connection attempt may take; one met by silence is tried once more for as long before it counts as blocked (0 < T <= {MAX_PROBE_TIMEOUT:g}).",
        callback=_check_timeout,
    ),
]


def need_root(command: str) -> None:
    """Every lab command works in network namespaces and nftables: without root, say so in one
    line (status 2) before anything half-works (a probe's PermissionError, a healthy lab that
    looks broken because its tables cannot be read)."""
    if os.geteuid() != 0:
        raise LabError(
            f"peerwall {command} needs root: the lab lives in network namespaces and nftables "
            "tables (run it with sudo)"
        )


def _say(message: str) -> None:
    """Progress of long work: on a terminal only, so that a pipe or a log stays quiet."""
    if err().is_terminal:
        err().print(f"[dim]·[/dim] {message}")


class Shape(str, Enum):
    simple = "simple"
    liqo = "liqo"


@app.command()
def up(
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    name: LabName = "lab",
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Rebuild the lab if one of that name exists (else: refused)."
        ),
    ] = False,
    shape: Annotated[
        Shape,
        typer.Option(
            "--shape",
            help="simple: one gateway per cluster, agents on the file source; liqo: Liqo v1's "
            "gateway per peer, an emulated API server per cluster, agents on --source kubernetes "
            "(cluster names must be Liqo cluster IDs: lowercase).",
        ),
    ] = Shape.simple,
) -> None:
    """Build the topology as namespaces, veths, tunnels and nftables.

    A lab of that name that exists already is refused unless --replace is given.

    Example: peerwall lab up -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    need_root("lab up")
    from peerwall.lab import build as labs

    choice = resolve_mode(set_, values)
    # The lab records the text, so read it once (standard input cannot be read twice).
    source, text = read_source(file)
    topology = model.load_topology(text, source)
    audit = resolve_audit(set_, values)
    plan = labs.up(
        name,
        topology,
        text,
        source,
        choice.mode,
        LabSettings(),
        progress=_say,
        replace=replace,
        audit=audit,
        shape=shape.value,
    )
    if shape is Shape.liqo:
        from peerwall.lab import liqo

        err().print(
            f"lab [bold]{name}[/bold] is up in Liqo's shape: {len(liqo.namespaces(plan))} "
            f"namespaces, {len(liqo.gateways(plan))} gateways (one per peer) with their agents, "
            f"{len(topology.clusters)} API servers, mode {choice.describe()}. "
            f"Next: peerwall lab kubeconfig {topology.clusters[0].name} --name {name}; "
            f"peerwall lab probe --name {name}"
        )
        return
    err().print(
        f"lab [bold]{name}[/bold] is up: {len(plan.namespaces())} namespaces, "
        f"{len(topology.clusters)} gateways, mode {choice.describe()}"
        f"{' (audited: would-drop is allowed and reported)' if audit else ''}. "
        f"Next: peerwall lab probe --name {name}"
    )


@app.command()
def kubeconfig(
    cluster: Annotated[str, typer.Argument(help="The cluster (its Liqo cluster ID).")],
    name: LabName = "lab",
) -> None:
    """Print a kubeconfig (an admin's) for a cluster's API server in a Liqo-shaped lab.

    Example: peerwall lab kubeconfig c1 > c1.kubeconfig && kubectl --kubeconfig c1.kubeconfig get pods -A
    """
    need_root("lab kubeconfig")
    from peerwall.lab import liqo
    from peerwall.lab.state import load_state

    settings = LabSettings()
    state = load_state(name, settings)
    if state.shape != liqo.SHAPE:
        raise LabError(
            f"lab {name} has the simple shape, without API servers: build it with "
            "lab up --shape liqo"
        )
    plan = state.plan(settings)
    if cluster not in plan.topology.cluster_by_name:
        known = ", ".join(c.name for c in plan.topology.clusters)
        raise LabError(f"lab {name} has no cluster {cluster!r} (its clusters: {known})")
    path = liqo.kubeconfig_path(plan, settings, cluster)
    try:
        sys.stdout.write(path.read_text())
    except FileNotFoundError:
        raise LabError(
            f"lab {name}: the API server of {cluster} is not serving (no {path}); see "
            "peerwall lab status"
        ) from None


@app.command()
def apply(file: TopologyFile, name: LabName = "lab") -> None:
    """Swap the running lab's topology live: rewire only what changed; the agents converge.

    Supported edits: pods added, removed, relabelled or moved by offloading; selectors; namespaces
    offloaded to one more provider or fewer; peerings added or removed; modes of peerings and
    clusters; clusters added. The global default mode stays (see set-mode).

    Example: peerwall lab apply -f three-clusters.yaml --name lab
    """
    need_root("lab apply")
    from peerwall.lab import build as labs

    source, text = read_source(file)
    topology = model.load_topology(text, source)
    changes, done = labs.apply(name, topology, text, source, LabSettings())
    err().print(
        f"lab {name}: {changes.summary() or 'no wiring change'}; agents converged in {done.seconds * 1000:.0f} ms"
    )
    for cluster, status in sorted(done.statuses.items()):
        tx = ", ".join(f"{k} {n}" for k, n in status["transactions"].items() if n)
        err().print(f"  agent {cluster}: transactions so far: {tx}")


@app.command()
def repair(name: LabName = "lab") -> None:
    """Have every gateway's agent read its table back and repair any drift now (each also does
    so by itself every 10 s); returns once all have checked.

    Example: peerwall lab repair --name lab
    """
    need_root("lab repair")
    from peerwall.lab import build as labs

    repaired = labs.repair(name, LabSettings())
    typer.echo(f"lab {name}: every gateway's table read back")
    for cluster, n in sorted(repaired.items()):
        typer.echo(f"  gateway {cluster}: " + ("drift repaired" if n else "in sync"))


@app.command()
def down(name: LabName = "lab") -> None:
    """Remove the lab: every pw-NAME-… namespace (and so every veth and rule) and its state.

    Example: peerwall lab down --name lab
    """
    need_root("lab down")
    from peerwall.lab import build as labs

    gone = labs.down(name, LabSettings())
    err().print(
        f"lab {name}: removed {len(gone)} namespaces" if gone else f"lab {name}: nothing to remove"
    )


class StatusOutput(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"


@app.command()
def status(
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", metavar="NAME", autocompletion=complete.lab_names),
    ] = None,
    output: Annotated[
        StatusOutput, typer.Option("--output", "-o", help="table, json or yaml.")
    ] = StatusOutput.table,
) -> None:
    """The labs that are up, their mode, and whether each gateway's rules match the desired ones.

    Exits 1 if a gateway drifted or a lab is broken (each lab is reported on its own).

    Example: peerwall lab status --output json
    """
    need_root("lab status")
    from peerwall.lab.state import list_labs, load_state

    settings = LabSettings()
    listings = list_labs(settings)
    if name is not None:
        listings = [entry for entry in listings if entry.name == name]
        if not listings:
            load_state(name, settings)  # raises the usual "no lab named ..." error
    reports = [_lab_report(entry, settings) for entry in listings]
    if output is not StatusOutput.table:
        render.write_document({"labs": reports}, sys.stdout, output.value)
    elif not reports:
        typer.echo("no lab is up")
    for r in reports if output is StatusOutput.table else ():
        if r["problem"] and r["source"] is None:
            typer.echo(f"{r['name']}: {r['problem']}")
            continue
        typer.echo(
            f"{r['name']}: {r['source']}, mode {r['mode']}, "
            f"{r['namespaces']['present']}/{r['namespaces']['expected']} namespaces"
            + (f", {r['shape']} shape" if r.get("shape", "simple") != "simple" else "")
        )
        for cluster, server in r.get("servers", {}).items():
            up = "serving" if server["running"] and server["kubeconfig"] else "DOWN"
            typer.echo(f"  API server {cluster}: {up}")
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
    from peerwall.lab import agents
    from peerwall.lab import build as labs
    from peerwall.lab.netns import list_namespaces

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
        wanted = plan.namespaces()
        if state.shape == "liqo":
            from peerwall.lab import liqo

            wanted = liqo.namespaces(plan)
        missing = sorted(set(wanted) - set(present))
        report["namespaces"] = {"present": len(wanted) - len(missing), "expected": len(wanted)}
        report["shape"] = state.shape
        if missing:
            more = " …" if len(missing) > 5 else ""
            report.update(problem=f"broken: missing {', '.join(missing[:5])}{more}", failed=True)
            return report
        if state.shape == "liqo":
            found = liqo.report(plan, settings)
            report.update(
                gateways=found["gateways"],
                agents=found["agents"],
                servers=found["servers"],
                failed=report["failed"] or found["failed"],
            )
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
    decider = policy.Decider(topology, mode)
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
    need_root("lab set-mode")
    from peerwall.lab import build as labs
    from peerwall.lab.state import load_state

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
    err().print(f"enforced in {done.seconds * 1000:.0f} ms")
    for cluster, status in sorted(done.statuses.items()):
        tx = ", ".join(f"{k} {n}" for k, n in status["transactions"].items() if n)
        err().print(f"  agent {cluster}: transactions so far: {tx}")
    topology = load_state(name, settings).topology(settings)
    audited = " (audited: what segregation would drop is let through and reported)"
    typer.echo(f"lab {name}: global default mode {choice.describe()}{audited if audit else ''}")
    for line in describe_modes(topology, choice.mode):
        typer.echo(f"  {line}")


class Bars:
    """Progress bars on stderr, when it is a terminal: one bar at a time, each started by
    ``bars(label)`` (which returns its callback) and erased by ``stop()``. A live bar redraws its
    line, so whatever else goes to the terminal (a table and its title) is printed only after
    ``stop()``: otherwise the next redraw overwrites it."""

    def __init__(self) -> None:
        self._live: Progress | None = None

    def __call__(self, label: str) -> Callable[[int, int], None] | None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        if not err().is_terminal:
            return None
        self.stop()
        bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=err(),
            transient=True,
        )
        bar.start()
        self._live = bar
        task = bar.add_task(label, total=None)
        return lambda done, total: bar.update(task, completed=done, total=total)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


@contextmanager
def _progress_bar() -> Iterator[Bars]:
    """Bars for a command; none is left on the terminal when the command ends, however."""
    bars = Bars()
    try:
        yield bars
    finally:
        bars.stop()


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


class ProbeOutput(str, Enum):
    table = "table"
    json = "json"
    yaml = "yaml"
    html = "html"


JunitFile = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        metavar="FILE",
        help="Also write JUnit XML to FILE: one test case per cell, for CI systems.",
        show_default=False,
    ),
]
ForceTable = Annotated[
    bool,
    typer.Option(
        "--force-table",
        help=f"Print tables even past {render.MAX_TABLE_DESTINATIONS} destinations.",
    ),
]


def refuse_large_table(sources: int, destinations: int, hint: str) -> None:
    """Past the width a terminal can show, refuse before any work (exit 1), as ``matrix`` does."""
    if destinations > render.MAX_TABLE_DESTINATIONS:
        err().print(render.too_large(sources, destinations, "table", hint), highlight=False)
        raise typer.Exit(1)


@app.command()
def probe(
    name: LabName = "lab",
    output: Annotated[
        ProbeOutput, typer.Option("--output", "-o", help="table, json, yaml or html.")
    ] = ProbeOutput.table,
    timeout: Timeout = 1.0,
    junit: JunitFile = None,
    force_table: ForceTable = False,
    sources: FromFilter = None,
    destinations: ToFilter = None,
    clusters: ClusterFilter = None,
    namespaces: NamespaceFilter = None,
) -> None:
    """Probe every cell with real TCP connections; compare with the computed table (exit 1 if wrong).

    --from, --to, --cluster and --namespace probe, show and compare only some cells.

    Example: peerwall lab probe --output json > observed.json
    """
    need_root("lab probe")
    from peerwall.cli.junit import Suite, write_junit
    from peerwall.figures import probe_html
    from peerwall.lab.probing import observe_lab
    from peerwall.lab.state import lab_folder, load_state

    settings = LabSettings()
    state = load_state(name, settings)
    plan = state.plan(settings)
    if state.shape == "liqo":
        # The API servers are the truth there (kubectl edits them): the table expected is the
        # one of the topology they hold, and the nodes' kube-proxy follows it (as a real one
        # watches the EndpointSlices), before the probes.
        from peerwall.lab import liqo
        from peerwall.lab.plan import LabPlan

        plan = LabPlan(
            name, liqo.api_topology(plan, settings, state.topology_text(settings), state.source)
        )
        liqo.resync_kube(plan, settings)
        settings = liqo.probe_settings(settings)
    mode = SecurityMode(state.mode)
    selection = Selection.of(sources, destinations, clusters, namespaces)
    expected = selection.apply(
        plan.topology,
        policy.expect(plan.topology, mode, force=enforced_baseline(plan.topology, state)).table,
    )
    if output is ProbeOutput.table and not force_table:
        refuse_large_table(
            len(expected.sources),
            len(expected.destinations),
            "use --output json or --junit FILE, narrow it with --from/--to/--cluster/--namespace, "
            "or --force-table",
        )
    follower = _drops_follower(plan, settings) if output is ProbeOutput.html else None
    with _progress_bar() as progress:
        observed = observe_lab(
            plan,
            state.mode,
            settings,
            ProbeSettings(timeout=timeout),
            progress(f"probing lab {name}"),
            lab_folder(name, settings),
            only=(expected.sources, expected.destinations) if selection else None,
        )
    wrong = expected.compare(observed.table)
    if junit is not None:
        write_junit(junit, [Suite(f"lab probe {name} ({state.mode})", expected, observed)])
    json_out = output is not ProbeOutput.table  # stdout carries the document and nothing else
    if output is ProbeOutput.json:
        from peerwall.policy.tablejson import write_json

        write_json(observed.table, sys.stdout)
    elif output is ProbeOutput.yaml:
        render.write_yaml(observed.table.to_dict(), sys.stdout)
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
    report = err() if json_out else Console()
    report_wrong(observed, wrong, report)
    total = len(expected.sources) * len(expected.destinations) - len(
        set(expected.sources).intersection(expected.destinations)
    )
    report.print(f"{total - len(wrong)} correct, {len(wrong)} wrong", highlight=False)
    if wrong:
        raise typer.Exit(1)


def _drops_follower(plan: Any, settings: LabSettings) -> Follower | None:
    """A follower past every agent's current events, so that only the probes' drops show;
    None if the agents do not answer (the page is drawn without drops)."""
    if not settings.agents:
        return None
    from peerwall.lab.drops import Follower

    follower = Follower(plan, [c.name for c in plan.topology.clusters])
    try:
        follower.poll()
    except LabError as e:
        err().print(f"drops not shown: {e}")
        return None
    return follower


def _recent_drops(follower: Follower | None) -> dict[tuple[str, str], str]:
    """The probes' drops by cell (reports arrive within milliseconds; give them a moment)."""
    if follower is None:
        return {}
    from peerwall.figures.flows import cell_title, drops_by_cell

    time.sleep(DROPS_SETTLE)
    try:
        events = follower.poll()
    except LabError as e:
        err().print(f"drops not shown: {e}")
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
    yaml = "yaml"
    html = "html"


@app.command()
def drops(
    name: LabName = "lab",
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new drops until interrupted.")
    ] = False,
    sources: FromFilter = None,
    destinations: ToFilter = None,
    clusters: ClusterFilter = None,
    namespaces: NamespaceFilter = None,
    output: Annotated[
        DropsOutput,
        typer.Option(
            "--output",
            "-o",
            help="table, json (one event per line), yaml (one document per event) or html.",
        ),
    ] = DropsOutput.table,
) -> None:
    """The drops every gateway's agent saw, newest last: who, what, and why (from the policy).

    --from and --to take names, patterns or addresses (a spoofed source has no name);
    --cluster and --namespace keep the events whose ends are in them.

    Example: peerwall lab drops --name lab --from P1 --to P5 -o json
    """
    need_root("lab drops")
    from peerwall.figures.flows import drop_line, flows_page
    from peerwall.lab.drops import Follower
    from peerwall.lab.state import load_state

    settings = LabSettings()
    plan = load_state(name, settings).plan(settings)
    keep = event_filter(plan.topology, Selection.of(sources, destinations, clusters, namespaces))
    follower = Follower(plan, [c.name for c in plan.topology.clusters])
    if output is DropsOutput.html:
        if follow:
            raise typer.BadParameter("an HTML page cannot follow", param_hint="--follow")
        events = [e for e in follower.poll() if keep(e)]
        sys.stdout.write(flows_page(events, f"lab {name}: recent drops"))
        return
    while True:
        for event in follower.poll():
            if not keep(event):
                continue
            if output is DropsOutput.json:
                sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            elif output is DropsOutput.yaml:
                sys.stdout.write("---\n")
                render.write_yaml(event, sys.stdout)
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
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            metavar="NAME",
            help="Lab name (default: demo and 8 random hex digits, a lab of this run's own).",
            show_default=False,
        ),
    ] = None,
    timeout: Timeout = 1.0,
    junit: JunitFile = None,
    force_table: ForceTable = False,
) -> None:
    """Bring the seed topology up, probe it under each mode, show the observed tables, tear down.

    Exits 0 only if every observed table equals the computed one. With --set, only that mode runs.

    The lab is the demo's own (refused if the name is taken), locked from up to down.

    Example: peerwall demo --set networking.securityMode=IntraClusterTrafficSegregation
    """
    need_root("demo")
    from peerwall.cli.junit import Suite, write_junit
    from peerwall.lab import demo as demos

    if file is None:
        from importlib import resources

        source = "seed-topology.yaml (bundled)"
        text = resources.files("peerwall").joinpath("examples/seed.yaml").read_text()
    else:
        source, text = read_source(file)
    topology: Topology = model.load_topology(text, source)
    modes = [resolve_mode(set_, values).mode] if (set_ or values) else list(SecurityMode)
    if not force_table:
        refuse_large_table(
            len(topology.sources),
            len(topology.destinations),
            "run lab up and lab probe --output json (or --junit FILE), or give --force-table",
        )
    console = Console()
    started = time.perf_counter()
    failures = 0
    suites = []
    with _progress_bar() as progress:
        runs = demos.run(
            name or demos.fresh_name(),
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
            progress.stop()  # a live bar would overwrite the table's title
            suites.append(Suite(f"demo {r.mode.value}", r.expected, r.observed))
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
    if junit is not None:
        write_junit(junit, suites)
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
