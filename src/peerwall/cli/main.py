"""``peerwall``: the command line. Thin commands over the core; option parsing is in ``options``,
rendering in ``render``.

Every ``PeerwallError`` raised under any command (sub-groups included) is printed to stderr, one line
per problem and without a traceback, and the exit status is 2 (as for a usage error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup, TyperOption

from peerwall import settings
from peerwall.cli import agent, complete, diff, lab, liqo, render
from peerwall.cli.options import (
    DEFAULT_MODE,
    Contexts,
    InputFile,
    Kubeconfigs,
    ModeChoice,
    SetValues,
    TopologyFile,
    ValuesFile,
    load,
    load_input,
    resolve_audit,
)
from peerwall.cli.selection import (
    ClusterFilter,
    FromFilter,
    NamespaceFilter,
    Selection,
    ToFilter,
)
from peerwall.cli.suggest import suggest, unknown
from peerwall.errors import PeerwallError, UnknownName
from peerwall.model.modes import SecurityMode
from peerwall.values import MODE_KEY

if TYPE_CHECKING:
    from peerwall.model import Topology
    from peerwall.policy import Explanation

# The compiler, the figures and the packet tracer are imported by the commands that use them, so
# that `peerwall --help` and `peerwall modes` start fast.

EXIT_ERROR = 2


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value: its help line shows none (typer 0.29 shows ``<bool>``, which reads
    as if ``--force-table true`` were expected)."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


class PeerwallGroup(TyperGroup):
    """Turns a ``PeerwallError`` from any subcommand into its message on stderr and status 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if COMPLETE_VAR in os.environ:  # the shell asks for completions: typer's shell classes
            from typer._completion_classes import completion_init

            completion_init()
        return super().main(*args, **kwargs)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """A bare ``--install-completion`` / ``--show-completion`` means the current shell (the
        option's value is optional, which typer's options cannot say)."""
        if ctx.parent is None:
            args = list(args)
            for i, word in enumerate(args):
                if word in COMPLETION_OPTIONS and (i + 1 == len(args) or args[i + 1][:1] == "-"):
                    args.insert(i + 1, DETECT)
                    break
        return super().parse_args(ctx, args)

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
        "Shell completion: peerwall --install-completion [bash|zsh|fish|powershell]."
    ),
    no_args_is_help=True,
    # Typer's own --install-completion is a flag that installs for the shell it detects (the
    # parent process): `--install-completion zsh` from bash installed bash. Ours takes the shell.
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("peerwall")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            version = "unknown"
        typer.echo(f"peerwall {version}")
        raise typer.Exit()


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
DETECT = "current"
"""What a bare --install-completion / --show-completion means: the shell it runs under."""


def _shell(value: str) -> str | None:
    """The shell named (or, for an empty value, the current one), or a usage error."""
    if value == DETECT:
        from typer._completion_shared import _get_shell_name

        return _get_shell_name()
    if value not in SHELLS:
        raise typer.BadParameter(f"{value!r}: give one of {', '.join(SHELLS)}")
    return value


def _install_completion(ctx: typer.Context, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import install

    completion_init()
    shell, path = install(shell=_shell(value))
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell")
    raise typer.Exit()


def _show_completion(ctx: typer.Context, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    shell = _shell(value) or ""
    typer.echo(get_completion_script(prog_name="peerwall", complete_var=COMPLETE_VAR, shell=shell))
    raise typer.Exit()


COMPLETE_VAR = "_PEERWALL_COMPLETE"
COMPLETION_OPTIONS = ("--install-completion", "--show-completion")


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    install_completion: Annotated[
        str | None,
        typer.Option(
            "--install-completion",
            metavar="[SHELL]",
            callback=_install_completion,
            expose_value=False,
            is_eager=True,
            help="Install completion for SHELL: bash, zsh, fish or powershell (default: the current shell).",
            show_default=False,
        ),
    ] = None,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            metavar="[SHELL]",
            callback=_show_completion,
            expose_value=False,
            is_eager=True,
            help="Print the completion script for SHELL (default: the current shell).",
            show_default=False,
        ),
    ] = None,
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


# ---------------------------------------------------------------------------------------------
# Commands


class TextOrJson(str, Enum):
    text = "text"
    json = "json"
    yaml = "yaml"


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
    yaml = "yaml"
    csv = "csv"
    markdown = "markdown"
    svg = "svg"
    html = "html"


@app.command()
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


@app.command("topology")
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


SourceArg = Annotated[
    str,
    typer.Argument(
        metavar="SRC", help="Source pod.", show_default=False, autocompletion=complete.sources
    ),
]
DestinationArg = Annotated[
    str,
    typer.Argument(
        metavar="DST",
        help="Pod, service, Internet or API server.",
        show_default=False,
        autocompletion=complete.destinations,
    ),
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
    from peerwall.policy import ModeOrigin

    here = e.mode is not None and e.mode.origin is ModeOrigin.DEFAULT
    return here or any(_default_mode_used(b) for b in e.backends)


@app.command()
def explain(
    source: SourceArg,
    destination: DestinationArg,
    file: InputFile = None,
    kubeconfig: Kubeconfigs = None,
    context: Contexts = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    output: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text, json or yaml.")
    ] = TextOrJson.text,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Exit 1 unless the verdict is YES (NO or PARTIAL), as a check would."
        ),
    ] = False,
) -> None:
    """Why SRC can or cannot connect to DST: the rule, the receiver, the peering and the mode.

    With --check, the exit status is the answer: 0 for YES, 1 for NO or PARTIAL.

    Example: peerwall explain -f seed.yaml P4 P1 --set networking.securityMode=IntraClusterTrafficSegregation
    """
    from peerwall.policy import Verdict, explain_cell

    topology, choice = load_input(file, kubeconfig, context, set_, values)
    check_cell(topology, source, destination)
    e = explain_cell(topology, source, destination, choice.mode)
    if output is not TextOrJson.text:
        render.write_document(explanation_json(e), sys.stdout, output.value)
    else:
        typer.echo(e.render())
        if _default_mode_used(e):
            typer.echo(f"global default ({MODE_KEY}): {choice.describe()}")
    if check and e.verdict is not Verdict.YES:
        raise typer.Exit(1)


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
    from peerwall.verify.paths import trace

    topology, choice = load(file, set_, values)
    check_cell(topology, source, destination)
    typer.echo(trace(topology, choice.mode, source, destination).explain())


@app.command()
def modes(
    output: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text, json or yaml.")
    ] = TextOrJson.text,
) -> None:
    """The security modes, with what each allows; * marks the default.

    Example: peerwall modes --output json
    """
    from peerwall.policy.modes import DESCRIPTIONS

    if output is not TextOrJson.text:
        doc = [
            {
                "mode": m.value,
                "default": m is DEFAULT_MODE,
                "description": DESCRIPTIONS[m].removeprefix("default: "),
            }
            for m in SecurityMode
        ]
        render.write_document(doc, sys.stdout, output.value)
        return
    width = max(len(m.value) for m in SecurityMode)
    for m in SecurityMode:
        mark = "*" if m is DEFAULT_MODE else " "
        description = DESCRIPTIONS[m].removeprefix("default: ")
        typer.echo(f"{mark} {m.value:<{width}}  {description}")
    typer.echo(f"(* default; select with --set {MODE_KEY}=MODE)")


@app.command("export")
def export_cmd(
    kubeconfig: Kubeconfigs = None,
    context: Contexts = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the topology file there (default: standard output).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The topology of live Liqo clusters, as a topology file (docs/topology-format.md).

    Give one --kubeconfig per cluster (or one kubeconfig and one --context per cluster), every
    peer of every cluster included. The file is validated before it is written.

    Example: peerwall export --kubeconfig c1.yaml --kubeconfig c2.yaml -o clusters.yaml
    """
    import yaml

    from peerwall.agent.kube.snapshot import read_topology_document
    from peerwall.cli.options import cluster_refs
    from peerwall.model.load import topology_from_data

    if not kubeconfig:
        raise typer.BadParameter("give --kubeconfig FILE (one per cluster)")
    refs = cluster_refs(kubeconfig, context)
    doc = read_topology_document(refs)
    topology_from_data(doc, "clusters of " + "; ".join(map(str, refs)))
    header = "# Exported by peerwall from " + "; ".join(map(str, refs)) + "\n"
    text = header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        typer.echo(
            f"wrote {output}: {len(doc['clusters'])} clusters, {len(doc['pods'])} pods, "
            f"{len(doc['services'])} services",
            err=True,
        )


@app.command()
def rules(
    file: TopologyFile,
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster",
            "-c",
            metavar="CLUSTER",
            help="Gateway to compile for.",
            autocompletion=complete.clusters,
        ),
    ],
    set_: SetValues = None,
    values: ValuesFile = None,
) -> None:
    """The nftables table (inet peerwall) of one cluster's gateway, as an nft script.

    The script replaces the table in one transaction whether or not it exists, so `nft -f` can
    apply it any number of times, after any other peerwall script.

    Example: peerwall rules -f seed.yaml --cluster C1 | nft -f -
    """
    from peerwall.compile.build import build
    from peerwall.compile.desired import gateway_state
    from peerwall.nft.objects import render_replace

    topology, choice = load(file, set_, values)
    if cluster not in topology.cluster_by_name:
        raise unknown("cluster", cluster, [c.name for c in topology.clusters])
    audit = resolve_audit(set_, values)
    state = gateway_state(topology, cluster, choice.mode, audit=audit)
    sys.stdout.write(render_replace(build(state)))


# ---------------------------------------------------------------------------------------------
# The lab: emulated clusters in network namespaces (root only).

app.add_typer(lab.app, name="lab", help="Build, probe, inspect and remove the emulated lab.")
app.command("demo")(lab.demo)
app.command("agent")(agent.agent)
app.command("diff")(diff.diff)
app.add_typer(liqo.app, name="liqo", help="What peerwall derives from a Liqo installation.")


def main() -> None:
    """Console-script entry point (``peerwall``); ``python -m peerwall.cli`` is the same program
    (completion scripts and variables are named after it)."""
    app(prog_name="peerwall")
