"""``peerwall agent``: continuous enforcement in the gateway's network namespace it runs in."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from peerwall.cli.options import SetValues, ValuesFile, resolve_audit, resolve_mode
from peerwall.compile.state import FLOW_LOG_GROUP, FLOW_LOG_RATE, RING_SIZE
from peerwall.model.modes import MODE_KEY
from peerwall.values import AUDIT_KEY, parse_sets, set_values

if TYPE_CHECKING:
    from peerwall.agent.desired import DesiredState
    from peerwall.agent.kube.client import KubeApi
    from peerwall.agent.run import Source

# The agent, the data plane and the Kubernetes client are imported when the agent starts: the
# other commands (and --help) do not load them.

log = logging.getLogger("peerwall.agent")
REACH_TIMEOUT = 10.0
"""Seconds the first request to the API server may take before the agent gives up starting."""


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
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            "--kubeconfig",
            metavar="FILE",
            help="Kubernetes source: kubeconfig file (default: in-cluster, else $KUBECONFIG, else ~/.kube/config).",
            show_default=False,
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="NAME",
            help="Kubernetes source: kubeconfig context (default: its current one).",
            show_default=False,
        ),
    ] = None,
    resync_interval: Annotated[
        float,
        typer.Option("--resync-interval", help="Seconds between read-backs that repair drift."),
    ] = 10.0,
    metrics_address: Annotated[
        str,
        typer.Option(
            "--metrics-address",
            help="host:port of /metrics, /healthz, /readyz, /status ('' for none).",
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
    fail_closed_only: Annotated[
        bool,
        typer.Option(
            "--fail-closed-only",
            help="Install a fail-closed table (every tunnel dropped) if there is none, then exit: an init container, before any tunnel exists.",
        ),
    ] = False,
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

    import asyncio

    from peerwall.agent.run import Agent
    from peerwall.dataplane.conntrack import Conntrack
    from peerwall.dataplane.nft import LibNft
    from peerwall.settings import AgentSettings

    settings = AgentSettings(
        flows_ring=flows_ring,
        resync_interval=resync_interval,
        coalesce=coalesce_ms / 1000,
        metrics_address=metrics_address or None,
        status_file=str(status_file) if status_file else None,
    )
    if fail_closed_only:
        from peerwall.agent.enforcer import Enforcer
        from peerwall.compile.state import GatewayState

        pattern = tunnel_pattern or ("liqo-tunnel*" if source == "kubernetes" else "pwt-*")
        with LibNft() as nft:
            Enforcer(nft).fail_closed(GatewayState(cluster or "gateway", {}, pattern))
        return
    built: tuple[Source, DesiredState]
    if source == "kubernetes":
        built = _kubernetes(
            peer,
            set_,
            values,
            tunnel_pattern or "liqo-tunnel*",
            liqo_namespace,
            kubeconfig,
            context,
        )
    elif source.startswith("file:"):
        if not cluster:
            raise typer.BadParameter("the file source needs --cluster", param_hint="--cluster")
        built = _file(Path(source[5:]), cluster, set_, values, gateways, tunnel_pattern or "pwt-*")
    else:
        raise typer.BadParameter(
            f"{source!r}: use 'kubernetes' or 'file:TOPOLOGY.yaml'", param_hint="--source"
        )
    src, desired = built
    from peerwall.compile.state import FlowLog

    desired.flow_log = (
        FlowLog(FLOW_LOG_GROUP, flow_log_rate, 2 * flow_log_rate) if flow_log_rate else None
    )
    from peerwall.compile import names
    from peerwall.dataplane.nftevents import TableEvents
    from peerwall.errors import NftError

    nft = LibNft()
    flows = Conntrack()
    events: TableEvents | None
    try:
        events = TableEvents(names.FAMILY, names.TABLE)
    except NftError as e:
        log.warning("%s: drift is repaired at the resync only", e)
        events = None
    log.info("peerwall agent %d starting: source %s", os.getpid(), source)
    try:
        asyncio.run(Agent(src, desired, nft, flows, settings, events).run())
    except KeyboardInterrupt:
        pass
    finally:
        flows.close()
        nft.close()
        if events is not None:
            events.close()


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
    from peerwall.agent.desired import DesiredState
    from peerwall.agent.filesource import FileInputs, FileSource
    from peerwall.compile.state import CONNCHECK_PORT
    from peerwall.model import parse_mode

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
    kubeconfig: Path | None = None,
    context: str | None = None,
) -> tuple[Source, DesiredState]:
    from peerwall.agent.desired import DesiredState
    from peerwall.agent.kube.source import KubeSource
    from peerwall.settings import KubeSettings

    mode = resolve_mode(sets, values).mode
    from peerwall.compile.state import CONNCHECK_PORT

    desired = DesiredState("unknown", pattern, CONNCHECK_PORT)
    api = _kube_api(kubeconfig, context)
    settings = KubeSettings(
        default_mode=mode,
        default_audit=resolve_audit(sets, values),
        peer=peer or None,
        liqo_namespace=liqo_namespace,
    )
    return KubeSource(api, desired, settings), desired


def _fail(message: str) -> NoReturn:
    """One line on stderr and status 2: the agent cannot start (bad input or no cluster)."""
    typer.echo(f"peerwall agent: {message}", err=True)
    raise typer.Exit(2)


def _kube_api(kubeconfig: Path | None, context: str | None) -> KubeApi:
    """The API client, once a first request has reached the API server: without a usable
    kubeconfig or a reachable server, the agent says so in one line instead of starting to
    retry a source that cannot work (the supervisor, kubelet, restarts it with backoff)."""
    import asyncio

    from lightkube.core.exceptions import ConfigError

    from peerwall.agent.kube.client import KubeApi

    where = f"kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster or default kubeconfig"
    try:
        check = KubeApi.from_config(kubeconfig, context)
    except (ConfigError, ValueError, OSError) as e:
        _fail(f"no usable Kubernetes configuration ({where}): {e}; give --kubeconfig or --context")
    problem = asyncio.run(_unreachable(check))
    if problem is not None:
        _fail(f"cannot reach the Kubernetes API server ({where}): {problem}")
    return KubeApi.from_config(kubeconfig, context)


async def _unreachable(api: KubeApi) -> str | None:
    """Why a first request (``GET /version``) got no answer at all, or None if it got one
    (any status: a 401 or 403 is the source's to report, with the resource it concerns)."""
    import httpx2

    try:
        await api.http.get("/version", timeout=REACH_TIMEOUT)
    except httpx2.HTTPError as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    finally:
        await api.aclose()
    return None
