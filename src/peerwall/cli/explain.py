"""``peerwall explain`` and ``peerwall trace``: why one source can or cannot reach one destination,
by the rules and by a packet walked through the compiled rulesets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from peerwall.cli import complete, render
from peerwall.cli.options import (
    Contexts,
    InputFile,
    Kubeconfigs,
    SetValues,
    TextOrJson,
    TopologyFile,
    ValuesFile,
    load,
    load_input,
)
from peerwall.cli.suggest import suggest, unknown
from peerwall.errors import UnknownName
from peerwall.model.modes import MODE_KEY

if TYPE_CHECKING:
    from peerwall.model import Topology
    from peerwall.policy import Explanation


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
