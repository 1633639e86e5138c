"""``peerwall liqo``: what peerwall derives from a Liqo installation.

``peerwall liqo templates`` reads the installed Liqo's gateway templates and writes copies with the
agent added (``peerwall.agent.kube.gateway_templates``), to apply with ``kubectl apply -f DIR`` and
name in ``liqoctl network connect --gw-server-template-name … --gw-client-template-name …``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from peerwall.agent.kube.gateway_templates import (
    CLIENT_TEMPLATE,
    DEFAULT_TEMPLATE_NAMES,
    DERIVED_FROM,
    SERVER_TEMPLATE,
    AgentContainer,
    TemplateError,
    with_agent,
)
from peerwall.cli.options import (
    SetValues,
    TopologyFile,
    ValuesFile,
    read_source,
    resolve_audit,
    resolve_mode,
)

app = typer.Typer(no_args_is_help=True)


async def _read(
    kubeconfig: Path | None, context: str | None, namespace: str, names: dict[Any, str]
) -> list[dict[str, Any]]:
    from peerwall.agent.kube.client import KubeApi

    api = KubeApi.from_config(kubeconfig, context)
    try:
        found = []
        for kind, name in names.items():
            items, _ = await api.list(kind, namespace=namespace, fields=f"metadata.name={name}")
            if not items:
                raise TemplateError(f"no {kind.kind} {name!r} in namespace {namespace!r}")
            obj = items[0]
            obj.setdefault("apiVersion", kind.api_version)
            obj.setdefault("kind", kind.kind)
            found.append(obj)
        return found
    finally:
        await api.aclose()


@app.command("templates")
def templates(
    image: Annotated[
        str,
        typer.Option("--image", help="The agent image, e.g. registry.example.com/peerwall:0.1.0."),
    ],
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG)."
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="kubeconfig context (default: current).")
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", "-n", help="Liqo's namespace, where its templates are.")
    ] = "liqo",
    server_template: Annotated[
        str,
        typer.Option("--server-template", help="Liqo's WgGatewayServerTemplate to derive from."),
    ] = DEFAULT_TEMPLATE_NAMES[SERVER_TEMPLATE],
    client_template: Annotated[
        str,
        typer.Option("--client-template", help="Liqo's WgGatewayClientTemplate to derive from."),
    ] = DEFAULT_TEMPLATE_NAMES[CLIENT_TEMPLATE],
    suffix: Annotated[
        str, typer.Option("--suffix", help="Appended to each template's name to name its copy.")
    ] = "-peerwall",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Directory to write <name>.yaml into (default: stdout)."
        ),
    ] = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    pull_policy: Annotated[
        str, typer.Option("--pull-policy", help="imagePullPolicy of the agent container.")
    ] = "IfNotPresent",
) -> None:
    """Copy the installed Liqo's gateway templates with the peerwall agent added.

    Everything of Liqo's stays as the cluster has it (containers, arguments, images, scheduling,
    resources); only the agent container, its fail-closed init container and their /tmp volume are added. The copies are named
    <name>-peerwall; --set networking.securityMode is the mode of every peering that no
    PeeringSecurity names (networking.securityAudit its audit). Exit 1 if a template is missing or not a Liqo gateway template.

    Example: peerwall liqo templates --kubeconfig kc --image registry.example.com/peerwall:0.1.0 -o out/
    """
    import asyncio

    import yaml

    mode = resolve_mode(set_, values).mode
    agent = AgentContainer(
        image=image,
        pull_policy=pull_policy,
        security_mode=mode.value,
        security_audit=resolve_audit(set_, values),
        liqo_namespace=namespace,
    )
    names = {SERVER_TEMPLATE: server_template, CLIENT_TEMPLATE: client_template}
    try:
        originals = asyncio.run(_read(kubeconfig, context, namespace, names))
        copies = [with_agent(t, agent, suffix) for t in originals]
    except TemplateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if output is None:
        sys.stdout.write(yaml.safe_dump_all(copies, sort_keys=False, width=1000))
        return
    output.mkdir(parents=True, exist_ok=True)
    for c in copies:
        path = output / f"{c['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(c, sort_keys=False, width=1000))
        origin = c["metadata"]["labels"][DERIVED_FROM]
        typer.echo(f"wrote {path}: {c['kind']} {c['metadata']['name']}, from {origin}")


@app.command("emulate")
def emulate(
    file: TopologyFile,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR",
            help="Folder for the kubeconfigs (<cluster>.kubeconfig).",
        ),
    ],
) -> None:
    """Serve each cluster of FILE as Liqo v1 would leave it: one emulated API server per cluster.

    Each holds the objects Liqo and Kubernetes would hold once the topology is peered (foreign
    clusters, configurations, gateways, virtual nodes, namespace offloadings, shadow and offloaded
    pods, services, reflected slices), over TLS; real kubectl and peerwall's --kubeconfig views
    work against them. Only the API: no packets flow. Cluster names must be Liqo cluster IDs
    (lowercase). Runs until Ctrl-C; the kubeconfigs are removed then.

    Example: peerwall liqo emulate -f clusters.yaml -o kube/
    """
    import asyncio

    from peerwall.lab.apiserver.emulate import check_cluster_ids, serve
    from peerwall.model import load_topology

    source, text = read_source(file)
    topology = load_topology(text, source)
    check_cluster_ids(topology, source)

    def say(line: str) -> None:
        typer.echo(line)
        sys.stdout.flush()

    asyncio.run(serve(topology, output, say))
