"""``peerwall``: the command line. Thin commands over the core; option parsing is in ``options``,
rendering in ``render``.

Every ``PeerwallError`` raised under any command (sub-groups included) is printed to stderr, one line
per problem and without a traceback, and the exit status is 2 (as for a usage error).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Sequence
from enum import Enum
from importlib import metadata
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from peerwall import settings
from peerwall.cli import agent, diff, lab, render
from peerwall.cli.options import (
    DEFAULT_MODE,
    ModeChoice,
    SetValues,
    TopologyFile,
    ValuesFile,
    load,
)
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.nft import render_replace
from peerwall.errors import PeerwallError, UnknownName
from peerwall.figures import matrix_html, matrix_svg, topology_svg
from peerwall.model import SecurityMode, Topology
from peerwall.policy import DESCRIPTIONS, Explanation, ModeOrigin, expect, explain_cell
from peerwall.values import MODE_KEY
from peerwall.verify.paths import trace

EXIT_ERROR = 2


class PeerwallGroup(TyperGroup):
    """Turns a ``PeerwallError`` from any subcommand into its message on stderr and status 2."""

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except PeerwallError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    cls=PeerwallGroup,
    name="peerwall",
    help="Liqo's connectivity security modes: decide, enforce with nftables, explain, verify.",
    epilog=(
        "Exit status, for every command: 0 ok; 1 a check failed (wrong cells, drift, a broken "
        "lab, a diff that loses access, a table too large to print); 2 bad input or an error. "
        "Shell completion: peerwall --install-completion."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("peerwall")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            version = "unknown"
        typer.echo(f"peerwall {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    max_input_size: Annotated[
        int | None,
        typer.Option(
            "--max-input-size",
            min=1,
            help="Bytes: the largest input read (topology, values, standard input, the agent's "
            "file); default $PEERWALL_MAX_INPUT_BYTES, else 128 MiB.",
        ),
    ] = None,
) -> None:
    """Liqo's connectivity security modes: decide, enforce with nftables, explain, verify."""
    settings.set_max_input_bytes(max_input_size)


# ---------------------------------------------------------------------------------------------
# Helpers


def suggest(name: str, valid: Sequence[str]) -> str:
    """`` (did you mean ...?)`` for near matches (case-insensitive), or the short list of choices."""
    by_lower: dict[str, str] = {}
    for v in valid:
        by_lower.setdefault(v.lower(), v)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    if close:
        return f" (did you mean {', '.join(by_lower[c] for c in close)}?)"
    if len(valid) <= 12:
        return f" (valid: {', '.join(valid)})"
    return f" (the topology has {len(valid)}; see 'peerwall matrix')"


def unknown(kind: str, name: str, valid: Sequence[str]) -> UnknownName:
    return UnknownName(f"unknown {kind} {name!r}{suggest(name, valid)}")


def mode_overrides(topology: Topology) -> int:
    """How many clusters and peering links set their own mode (they beat the global default)."""
    clusters = sum(c.security_mode is not None for c in topology.clusters)
    links = sum(m is not None for m in topology.links.values())
    return clusters + links


def matrix_title(topology: Topology, choice: ModeChoice) -> str:
    title = f"Connectivity matrix: {choice.describe()}"
    n = mode_overrides(topology)
    if n == 1:
        title += "; 1 cluster/peering setting in the topology overrides it"
    elif n:
        title += f"; {n} cluster/peering settings in the topology override it"
    return title


# ---------------------------------------------------------------------------------------------
# Commands


class TextOrJson(str, Enum):
    text = "text"
    json = "json"


def explanation_json(e: Explanation) -> dict[str, Any]:
    """An explanation as data (``explain --output json``)."""
    return {
        "source": e.source,
        "destination": e.destination,
        "verdict": e.verdict.value,
        "rule": e.rule,
        "reason": e.reason,
        "receiver": e.receiver,
        "peering": list(e.peering) if e.peering else None,
        "declared": e.declared or None,
        "mode": e.mode.mode.value if e.mode else None,
        "modeOrigin": e.mode.origin.value if e.mode else None,
        "backends": [explanation_json(b) for b in e.backends],
    }


class Output(str, Enum):
    table = "table"
    json = "json"
    json_classes = "json-classes"
    csv = "csv"
    markdown = "markdown"
    svg = "svg"
    html = "html"


@app.command()
def matrix(
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        Output,
        typer.Option(
            "--output",
            "-o",
            help="Output format; json is the contract, json-classes its compact form.",
        ),
    ] = Output.table,
    force_table: Annotated[
        bool,
        typer.Option(
            "--force-table",
            help=f"Print a table even past {render.MAX_TABLE_DESTINATIONS} destinations.",
        ),
    ] = False,
) -> None:
    """The expected connectivity matrix: rows are source pods, columns destinations.

    Highlighted cells differ from FullPodToPod: yellow, * without colours, bold in markdown.

    The json output is the truth table contract; svg and html draw it like the seed's figures.

    Example: peerwall matrix -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    topology, choice = load(file, set_, values)
    table = expect(topology, choice.mode).table
    if output is Output.json:
        table.write_json(sys.stdout)
        return
    if output is Output.json_classes:
        # The compact contract (docs/json-classes.md): classes and one verdict per class pair.
        table.write_json_classes(sys.stdout)
        return
    if output is Output.csv:
        render.write_csv(table, sys.stdout)
        return
    # Figures group and compress large tables themselves; only text tables have a width limit.
    too_large = len(table.destinations) > render.MAX_TABLE_DESTINATIONS
    if too_large and not force_table and output in (Output.table, Output.markdown):
        typer.echo(
            f"{len(table.sources)} sources x {len(table.destinations)} destinations is too large "
            f"for a readable {output.value}: use --output csv or --output json (or --force-table "
            "to print it anyway).",
            err=True,
        )
        raise typer.Exit(1)
    baseline = SecurityMode.FULL_POD_TO_POD
    if output in (Output.svg, Output.html):
        # Figures take the baseline table and compare per class: fast for any size.
        draw = matrix_svg if output is Output.svg else matrix_html
        base = expect(topology, baseline, force=baseline).table
        title = matrix_title(topology, choice)
        sys.stdout.write(draw(table, base, baseline.value, title, topology=topology))
        return
    highlight = table.differing(expect(topology, baseline, force=baseline).table)
    title = matrix_title(topology, choice)
    if output is Output.markdown:
        caption = f"{title}. **Bold**: differs from {baseline.value}."
        render.write_markdown(table, sys.stdout, highlight, caption=caption)
        return
    render.print_table(Console(), table, highlight, title=title, baseline=baseline.value)


class FigureOutput(str, Enum):
    svg = "svg"


@app.command("topology")
def topology_cmd(
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        FigureOutput, typer.Option("--output", "-o", help="Output format.")
    ] = FigureOutput.svg,
) -> None:
    """The virtual cluster as a figure on standard output: clusters, namespaces, pods, services,
    and the mode each side of each peering enforces.

    Example: peerwall topology -f seed.yaml > seed.svg
    """
    topology, choice = load(file, set_, values)
    sys.stdout.write(topology_svg(topology, choice.mode))


SourceArg = Annotated[str, typer.Argument(metavar="SRC", help="Source pod.", show_default=False)]
DestinationArg = Annotated[
    str,
    typer.Argument(metavar="DST", help="Pod, service, Internet or API server.", show_default=False),
]


def check_cell(topology: Topology, source: str, destination: str) -> None:
    """Both names exist and the source is a pod, or an error that suggests near matches."""
    if source in topology.destinations and source not in topology.pod_by_name:
        raise UnknownName(
            f"{source!r} is not a pod; sources are pods{suggest('', topology.sources)}"
        )
    if source not in topology.pod_by_name:
        raise unknown("source pod", source, topology.sources)
    if destination not in topology.destinations:
        raise unknown("destination", destination, topology.destinations)


def _default_mode_used(e: Explanation) -> bool:
    here = e.mode is not None and e.mode.origin is ModeOrigin.DEFAULT
    return here or any(_default_mode_used(b) for b in e.backends)


@app.command()
def explain(
    source: SourceArg,
    destination: DestinationArg,
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text or json.")
    ] = TextOrJson.text,
) -> None:
    """Why SRC can or cannot connect to DST: the rule, the receiver, the peering and the mode.

    Example: peerwall explain -f seed.yaml P4 P1 --set networking.securityMode=IntraClusterTrafficSegregation
    """
    topology, choice = load(file, set_, values)
    check_cell(topology, source, destination)
    e = explain_cell(topology, source, destination, choice.mode)
    if output is TextOrJson.json:
        json.dump(explanation_json(e), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    typer.echo(e.render())
    if _default_mode_used(e):
        typer.echo(f"global default ({MODE_KEY}): {choice.describe()}")


@app.command("trace")
def trace_cmd(
    source: SourceArg,
    destination: DestinationArg,
    file: TopologyFile,
    set_: SetValues = None,
    values: ValuesFile = None,
) -> None:
    """Walk a packet from SRC to DST through the compiled gateway rulesets, hook by hook.

    No kernel needed: it shows which rule of which gateway accepts, translates or drops it.

    Example: peerwall trace -f seed.yaml P1 P4 --set networking.securityMode=IntraClusterTrafficSegregation
    """
    topology, choice = load(file, set_, values)
    check_cell(topology, source, destination)
    typer.echo(trace(topology, choice.mode, source, destination).explain())


@app.command()
def modes(
    output: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text or json.")
    ] = TextOrJson.text,
) -> None:
    """The security modes, with what each allows; * marks the default.

    Example: peerwall modes --output json
    """
    if output is TextOrJson.json:
        doc = [
            {
                "mode": m.value,
                "default": m is DEFAULT_MODE,
                "description": DESCRIPTIONS[m].removeprefix("default: "),
            }
            for m in SecurityMode
        ]
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    width = max(len(m.value) for m in SecurityMode)
    for m in SecurityMode:
        mark = "*" if m is DEFAULT_MODE else " "
        description = DESCRIPTIONS[m].removeprefix("default: ")
        typer.echo(f"{mark} {m.value:<{width}}  {description}")
    typer.echo(f"(* default; select with --set {MODE_KEY}=MODE)")


@app.command()
def rules(
    file: TopologyFile,
    cluster: Annotated[
        str,
        typer.Option("--cluster", "-c", metavar="CLUSTER", help="Gateway to compile for."),
    ],
    set_: SetValues = None,
    values: ValuesFile = None,
) -> None:
    """The nftables table (inet peerwall) of one cluster's gateway, as an nft script.

    The script replaces the table in one transaction whether or not it exists, so `nft -f` can
    apply it any number of times, after any other peerwall script.

    Example: peerwall rules -f seed.yaml --cluster C1 | nft -f -
    """
    topology, choice = load(file, set_, values)
    if cluster not in topology.cluster_by_name:
        raise unknown("cluster", cluster, [c.name for c in topology.clusters])
    sys.stdout.write(render_replace(build(gateway_state(topology, cluster, choice.mode))))


# ---------------------------------------------------------------------------------------------
# The lab: emulated clusters in network namespaces (root only).

app.add_typer(lab.app, name="lab", help="Build, probe, inspect and remove the emulated lab.")
app.command("demo")(lab.demo)
app.command("agent")(agent.agent)
app.command("diff")(diff.diff)


def main() -> None:
    """Console-script entry point (``peerwall``)."""
    app()
