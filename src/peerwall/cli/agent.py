"""``peerwall agent``: continuous enforcement in the gateway's network namespace it runs in."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from peerwall.agent.desired import DesiredState
from peerwall.agent.filesource import FileInputs, FileSource
from peerwall.agent.flowevents import RING_SIZE
from peerwall.agent.run import Agent, AgentSettings, Source
from peerwall.cli.options import SetValues, ValuesFile, resolve_audit, resolve_mode
from peerwall.compile.state import CONNCHECK_PORT, FLOW_LOG_GROUP, FLOW_LOG_RATE, FlowLog
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.nft import LibNft
from peerwall.model import parse_mode
from peerwall.values import AUDIT_KEY, MODE_KEY, parse_sets, set_values

log = logging.getLogger("peerwall.agent")


def agent(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="Where the state comes from: 'kubernetes' (a Liqo v1 cluster) or 'file:TOPOLOGY.yaml' (re-read on change).",
        ),
    ],
    cluster: Annotated[
        str | None,
        typer.Option("--cluster", help="File source: the cluster whose gateway this is."),
    ] = None,
    peer: Annotated[
        str | None,
        typer.Option(
            "--peer",
            envvar="PEERWALL_PEER",
            help="Kubernetes source: the one peer this gateway serves (its cluster ID); default: every peer.",
        ),
    ] = None,
    set_: SetValues = None,
    values: ValuesFile = None,
    gateways: Annotated[
        Path | None,
        typer.Option("--gateways", help="File source: JSON {peer: tunnel address of its gateway}."),
    ] = None,
    tunnel_pattern: Annotated[
        str | None,
        typer.Option(
            "--tunnel-pattern",
            help="nft wildcard of every tunnel interface (default: liqo-tunnel* with kubernetes, pwt-* with a file).",
        ),
    ] = None,
    liqo_namespace: Annotated[
        str, typer.Option("--liqo-namespace", help="Kubernetes source: Liqo's namespace.")
    ] = "liqo",
    resync_interval: Annotated[
        float,
        typer.Option("--resync-interval", help="Seconds between read-backs that repair drift."),
    ] = 10.0,
    metrics_address: Annotated[
        str,
        typer.Option(
            "--metrics-address", help="host:port of /metrics, /healthz, /readyz ('' for none)."
        ),
    ] = "0.0.0.0:9090",
    status_file: Annotated[
        Path | None,
        typer.Option("--status-file", help="Write a JSON status there after every change."),
    ] = None,
    coalesce_ms: Annotated[
        float,
        typer.Option(
            "--coalesce-ms",
            help="Milliseconds a first event may wait for others to share its transaction (0: none; events queued meanwhile share it anyway).",
        ),
    ] = 0.0,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning, error.")
    ] = "info",
    flow_log_rate: Annotated[
        int,
        typer.Option(
            "--flow-log-rate",
            help=f"Dropped packets per second each drop rule reports to the agent, limited in the kernel (burst: twice as many; 0: drops are not reported). Default {FLOW_LOG_RATE}.",
        ),
    ] = FLOW_LOG_RATE,
    flows_ring: Annotated[
        int, typer.Option("--flows-ring", help="Explained drops /flows keeps (the newest).")
    ] = RING_SIZE,
) -> None:
    """Keep this gateway's nftables table equal to the desired state, continuously.

    Runs in the gateway's network namespace (a sidecar of Liqo's gateway pod, or `ip netns exec`
    in the lab). Fail-closed until the state is known; incremental afterwards; repairs drift.

    Example: peerwall agent --source kubernetes --peer=$PEERWALL_PEER --set=networking.securityMode=IntraClusterTrafficSegregation
    """
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not 0 < resync_interval <= 3600:
        raise typer.BadParameter(
            "give seconds, more than 0 and at most 3600", param_hint="--resync-interval"
        )
    if not 0 <= coalesce_ms <= 1000:
        raise typer.BadParameter("give milliseconds, 0 to 1000", param_hint="--coalesce-ms")
    if not 0 <= flow_log_rate <= 100_000:
        raise typer.BadParameter(
            "give packets per second, 0 to 100000", param_hint="--flow-log-rate"
        )
    if not 1 <= flows_ring <= 1_000_000:
        raise typer.BadParameter("give a number of events, 1 to 1000000", param_hint="--flows-ring")
    settings = AgentSettings(
        flows_ring=flows_ring,
        resync_interval=resync_interval,
        coalesce=coalesce_ms / 1000,
        metrics_address=metrics_address or None,
        status_file=str(status_file) if status_file else None,
    )
    nft = LibNft()
    flows = Conntrack()
    built: tuple[Source, DesiredState]
    if source == "kubernetes":
        built = _kubernetes(peer, set_, values, tunnel_pattern or "liqo-tunnel*", liqo_namespace)
    elif source.startswith("file:"):
        if not cluster:
            raise typer.BadParameter("the file source needs --cluster", param_hint="--cluster")
        built = _file(Path(source[5:]), cluster, set_, values, gateways, tunnel_pattern or "pwt-*")
    else:
        raise typer.BadParameter(
            f"{source!r}: use 'kubernetes' or 'file:TOPOLOGY.yaml'", param_hint="--source"
        )
    src, desired = built
    desired.flow_log = (
        FlowLog(FLOW_LOG_GROUP, flow_log_rate, 2 * flow_log_rate) if flow_log_rate else None
    )
    log.info("peerwall agent %d starting: source %s", os.getpid(), source)
    try:
        asyncio.run(Agent(src, desired, nft, flows, settings).run())
    except KeyboardInterrupt:
        pass
    finally:
        flows.close()
        nft.close()


def _forced_mode(sets: list[str] | None) -> str | None:
    return parse_sets(sets or ()).get(MODE_KEY)


def _file(
    topology: Path,
    cluster: str,
    sets: list[str] | None,
    values: Path | None,
    gateways: Path | None,
    pattern: str,
) -> tuple[Source, DesiredState]:
    if not topology.is_file():
        raise typer.BadParameter(f"{topology}: no such file", param_hint="--source")
    forced = _forced_mode(sets)
    audit = set_values(sets or ()).get(AUDIT_KEY)
    inputs = FileInputs(
        topology,
        cluster,
        values,
        gateways,
        forced_mode=parse_mode(forced, f"--set {MODE_KEY}") if forced else None,
        forced_audit=audit if isinstance(audit, bool) else None,
        tunnel_pattern=pattern,
    )
    desired = DesiredState(cluster, pattern, CONNCHECK_PORT)
    return FileSource(inputs, desired), desired


def _kubernetes(
    peer: str | None,
    sets: list[str] | None,
    values: Path | None,
    pattern: str,
    liqo_namespace: str,
) -> tuple[Source, DesiredState]:
    from peerwall.agent.kube.client import KubeApi
    from peerwall.agent.kube.model import Settings
    from peerwall.agent.kube.source import KubeSource

    mode = resolve_mode(sets, values).mode
    desired = DesiredState("unknown", pattern, CONNCHECK_PORT)
    api = KubeApi.from_config()
    settings = Settings(
        default_mode=mode,
        default_audit=resolve_audit(sets, values),
        peer=peer or None,
        liqo_namespace=liqo_namespace,
    )
    return KubeSource(api, desired, settings), desired
