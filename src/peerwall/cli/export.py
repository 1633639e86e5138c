"""``peerwall export``: the topology of live Liqo clusters, as a topology file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from peerwall.cli.options import Contexts, Kubeconfigs


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
