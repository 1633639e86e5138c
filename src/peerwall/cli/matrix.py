"""``peerwall matrix`` and ``peerwall topology``: the expected connectivity as a table or a figure,
and the virtual cluster as a figure."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from peerwall.cli import render
from peerwall.cli.options import (
    Contexts,
    InputFile,
    Kubeconfigs,
    ModeChoice,
    SetValues,
    ValuesFile,
    load_input,
)
from peerwall.cli.selection import (
    ClusterFilter,
    FromFilter,
    NamespaceFilter,
    Selection,
    ToFilter,
)
from peerwall.model.modes import SecurityMode

if TYPE_CHECKING:
    from peerwall.model import Topology

# The compiler and the figures are imported by the commands that use them.


def mode_overrides(topology: Topology) -> int:
    """How many clusters and peering links set their own mode (they beat the global default)."""
    clusters = sum(c.security_mode is not None for c in topology.clusters)
    links = sum(m is not None for m in topology.links.values())
    return clusters + links


def matrix_title(topology: Topology, choice: ModeChoice, selection: Selection | None = None) -> str:
    title = f"Connectivity matrix: {choice.describe()}"
    if selection:
        title += f"; only {selection.describe()}"
    n = mode_overrides(topology)
    if n == 1:
        title += "; 1 cluster/peering setting in the topology overrides it"
    elif n:
        title += f"; {n} cluster/peering settings in the topology override it"
    return title


class Output(str, Enum):
    table = "table"
    json = "json"
    json_classes = "json-classes"
    yaml = "yaml"
    csv = "csv"
    markdown = "markdown"
    svg = "svg"
    html = "html"


def matrix(
    file: InputFile = None,
    kubeconfig: Kubeconfigs = None,
    context: Contexts = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        Output,
        typer.Option(
            "--output",
            "-o",
            help="Output format; json is the contract (yaml the same document), json-classes its compact form.",
        ),
    ] = Output.table,
    force_table: Annotated[
        bool,
        typer.Option(
            "--force-table",
            help=f"Print a table even past {render.MAX_TABLE_DESTINATIONS} destinations.",
        ),
    ] = False,
    sources: FromFilter = None,
    destinations: ToFilter = None,
    clusters: ClusterFilter = None,
    namespaces: NamespaceFilter = None,
) -> None:
    """The expected connectivity matrix: rows are source pods, columns destinations.

    Highlighted cells differ from FullPodToPod: yellow, * without colours, bold in markdown.

    The json output is the truth table contract; svg and html draw it like the seed's figures.

    --from, --to, --cluster and --namespace keep only some sources and destinations.

    --kubeconfig reads the topology from live Liqo clusters (docs/kubernetes.md).

    Example: peerwall matrix -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation
    """
    from peerwall.policy import expect, explain_cell
    from peerwall.policy.tablejson import write_json, write_json_classes

    topology, choice = load_input(file, kubeconfig, context, set_, values)
    selection = Selection.of(sources, destinations, clusters, namespaces)
    table = selection.apply(topology, expect(topology, choice.mode).table)
    if output is Output.json:
        write_json(table, sys.stdout)
        return
    if output is Output.yaml:
        render.write_yaml(table.to_dict(), sys.stdout)
        return
    if output is Output.json_classes:
        # The compact contract (docs/json-classes.md): classes and one verdict per class pair.
        write_json_classes(table, sys.stdout)
        return
    if output is Output.csv:
        render.write_csv(table, sys.stdout)
        return
    # Figures group and compress large tables themselves; only text tables have a width limit.
    too_large = len(table.destinations) > render.MAX_TABLE_DESTINATIONS
    if too_large and not force_table and output in (Output.table, Output.markdown):
        hint = "use --output csv or --output json (or --force-table to print it anyway)"
        typer.echo(
            render.too_large(len(table.sources), len(table.destinations), output.value, hint),
            err=True,
        )
        raise typer.Exit(1)
    baseline = SecurityMode.FULL_POD_TO_POD
    if output in (Output.svg, Output.html):
        # Figures take the baseline table and compare per class: fast for any size.
        from peerwall.figures import matrix_html, matrix_svg

        base = selection.apply(topology, expect(topology, baseline, force=baseline).table)
        title = matrix_title(topology, choice, selection)
        if output is Output.svg:
            figure = matrix_svg(table, base, baseline.value, title, topology=topology)
        else:

            def why(source: str, destination: str) -> str:
                return explain_cell(topology, source, destination, choice.mode).render()

            figure = matrix_html(table, base, baseline.value, title, topology=topology, explain=why)
        sys.stdout.write(figure)
        return
    highlight = table.differing(
        selection.apply(topology, expect(topology, baseline, force=baseline).table)
    )
    title = matrix_title(topology, choice, selection)
    if output is Output.markdown:
        caption = f"{title}. **Bold**: differs from {baseline.value}."
        render.write_markdown(table, sys.stdout, highlight, caption=caption)
        return
    render.print_table(Console(), table, highlight, title=title, baseline=baseline.value)


class FigureOutput(str, Enum):
    svg = "svg"


def topology_cmd(
    file: InputFile = None,
    kubeconfig: Kubeconfigs = None,
    context: Contexts = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        FigureOutput, typer.Option("--output", "-o", help="Output format.")
    ] = FigureOutput.svg,
) -> None:
    """The virtual cluster as a figure on standard output: clusters, namespaces, pods, services,
    and the mode each side of each peering enforces.

    Past 400 pods, pods alike (same home, cluster, namespace and services) are one icon each.

    Example: peerwall topology -f seed.yaml > seed.svg
    """
    from peerwall.figures import topology_svg
    from peerwall.figures.topology import MAX_PODS as TOPOLOGY_MAX_PODS

    err = Console(stderr=True)
    with working(err, f"reading {file or 'the clusters'}"):
        topology, choice = load_input(file, kubeconfig, context, set_, values)
    n = len(topology.pods)
    merged = " (pods alike merged)" if n > TOPOLOGY_MAX_PODS else ""
    with working(err, f"drawing {n:,} pods{merged}"):
        figure = topology_svg(topology, choice.mode)
    sys.stdout.write(figure)


@contextmanager
def working(err: Console, what: str) -> Iterator[None]:
    """A spinner saying what is being done, on a terminal only (a pipe or a log stays quiet)."""
    if not err.is_terminal:
        yield
        return
    with err.status(what):
        yield
