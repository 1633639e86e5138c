"""``peerwall rules``: one gateway's nftables table, as an nft script."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from peerwall.cli import complete
from peerwall.cli.options import SetValues, TopologyFile, ValuesFile, load, resolve_audit
from peerwall.cli.suggest import unknown


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
