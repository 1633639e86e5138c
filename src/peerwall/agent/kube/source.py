"""The Kubernetes source: watches a Liqo v1 cluster and feeds a ``DesiredState``.

One reflector per selection below, all into one ``LiqoJoin``. ``synced`` is set once every
initial list has been handed over: until then the agent stays fail-closed, since a half-listed
cluster would allow less (or, for a mode not yet read, more) than it should. ``changed`` is set
after every event; the agent clears it and takes the desired state's netted changes.

In sidecar mode (``KubeSettings.peer``) the selections that can be narrowed to the one peer are
filtered by the API server; virtual nodes never are (a backend on *any* provider's virtual node is
not a local backend), nor the cluster-wide kinds that are few (ForeignCluster, PeeringSecurity).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import heap
from peerwall.agent.kube.client import KubeApi
from peerwall.agent.kube.join import LiqoJoin, PodRole
from peerwall.agent.kube.watch import QUIET_TIMEOUT, Backoff, Reflector, WatchSpec
from peerwall.settings import KubeSettings

__all__ = ["IgnoredEndpoints", "KubeSource", "watch_specs"]

log = logging.getLogger("peerwall.agent.kube")


def watch_specs(settings: KubeSettings) -> list[tuple[WatchSpec, PodRole | None]]:
    """Every selection the source watches (with, for pods, which of the two it is)."""
    ns = settings.liqo_namespace
    peer = settings.peer
    remote = f"{liqo.REMOTE_CLUSTER_ID}={peer}" if peer else liqo.REMOTE_CLUSTER_ID
    shadow = f"{liqo.MANAGED_BY}={liqo.MANAGED_BY_SHADOWPOD}"
    if peer:
        shadow += f",{liqo.ORIGIN}={peer}"
    specs: list[tuple[WatchSpec, PodRole | None]] = [
        (WatchSpec(liqo.CONFIGMAP, ns, fields=f"metadata.name={liqo.CLUSTER_ID_CONFIGMAP}"), None),
        (WatchSpec(liqo.FOREIGN_CLUSTER), None),
        (WatchSpec(liqo.CONFIGURATION, labels=remote), None),
        (WatchSpec(liqo.GATEWAY_SERVER, labels=remote), None),
        (WatchSpec(liqo.GATEWAY_CLIENT, labels=remote), None),
        (WatchSpec(liqo.PEERING_SECURITY), None),
        (WatchSpec(liqo.NODE, labels=f"{liqo.TYPE_LABEL}={liqo.VIRTUAL_NODE}"), None),
        (WatchSpec(liqo.POD, labels=shadow), PodRole.SHADOW),
        (WatchSpec(liqo.POD, labels=f"{liqo.LOCAL_OFFLOADED_POD}=true"), PodRole.REMOTE),
        # Every gateway pod (other peers' too): never a backend.
        (
            WatchSpec(liqo.POD, labels=f"{liqo.GATEWAY_COMPONENT}={liqo.GATEWAY_POD}"),
            PodRole.GATEWAY,
        ),
        (WatchSpec(liqo.NAMESPACE, labels=remote), None),
        (
            WatchSpec(
                liqo.NAMESPACE_OFFLOADING_KIND, fields=f"metadata.name={liqo.NAMESPACE_OFFLOADING}"
            ),
            None,
        ),
        (WatchSpec(liqo.SERVICE), None),
        # Every slice, whoever manages it: the virtual kubelet reflects by namespace.
        (WatchSpec(liqo.ENDPOINTSLICE), None),
        # Which slices each provider's virtual kubelet reflects (its policy, --disable-ip-reflection).
        (WatchSpec(liqo.VIRTUAL_NODE_KIND), None),
        (WatchSpec(liqo.VK_OPTIONS_TEMPLATE), None),
    ]
    if settings.pod_cidrs is None:
        specs.append(
            (WatchSpec(liqo.NETWORK, ns, f"{liqo.NETWORK_TYPE}={liqo.POD_CIDR_NETWORK}"), None)
        )
    if settings.api_server is None:
        specs.append((WatchSpec(liqo.IP, ns, f"{liqo.IP_TYPE}={liqo.API_SERVER_IP}"), None))
    return specs


class IgnoredEndpoints(Collector):
    """EndpointSlice endpoints a peer would have reached that are not local pods (outside the
    local pod CIDRs: a node, a ClusterIP, a gateway, a foreign address): never opened."""

    def __init__(self, join: LiqoJoin) -> None:
        self.join = join

    def collect(self) -> Iterator[Any]:
        # Scrapes run in the HTTP thread while the loop may change the dict: list() copies its
        # values in one step under the GIL, never iterating it while it changes.
        total = CounterMetricFamily(
            "peerwall_endpoints_ignored",
            "Endpoints found outside the local pod CIDRs in slices reflected to a peer.",
        )
        total.add_metric([], self.join.backends.ignored_endpoints_total)
        now = GaugeMetricFamily(
            "peerwall_endpoints_ignored_now", "Such endpoints in the slices as they are now."
        )
        now.add_metric([], sum(map(len, list(self.join.backends.ignored_endpoints.values()))))
        yield total
        yield now


class KubeSource:
    """Run with ``await source.run()`` (until cancelled)."""

    def __init__(
        self,
        api: KubeApi,
        desired: DesiredState,
        settings: KubeSettings,
        *,
        backoff: Backoff | None = None,
        timeout_seconds: int = 300,
        quiet_timeout: float = QUIET_TIMEOUT,
    ) -> None:
        self.api = api
        self.join = LiqoJoin(desired, settings)
        self.collectors: tuple[Collector, ...] = (IgnoredEndpoints(self.join),)
        """Metrics of the source, registered by the agent."""
        self.listed = asyncio.Event()
        self.changed = asyncio.Event()
        self.loaded_digest: str | None = None
        """No file, no digest (``run.Source``)."""
        self.reflectors = [
            Reflector(
                api,
                spec,
                self._handler(spec.kind, role, deleted=False),
                self._handler(spec.kind, role, deleted=True),
                backoff=backoff,
                timeout_seconds=timeout_seconds,
                quiet_timeout=quiet_timeout,
            )
            for spec, role in watch_specs(settings)
        ]
        self._named = [(str(r.spec), r) for r in self.reflectors]
        """Each reflector with its selection's name, made once: ``versions`` is read on every
        step of the agent (an event's path), and naming a selection builds strings."""

    def blind_seconds(self) -> float:
        """How long the source has been blind: since the oldest moment at which some selection
        was neither listed nor watched (a failed list, a broken or silent watch), 0 if every
        one is followed now. While blind, the last good state stays enforced."""
        now = time.monotonic()
        since = [r.blind_since for r in self.reflectors if r.blind_since is not None]
        return now - min(since) if since else 0.0

    @property
    def versions(self) -> dict[str, str]:
        """Each selection's resourceVersion: the last it listed at or was told of (event,
        bookmark); a selection not listed yet has none. The state the join holds includes the
        changes up to these versions (client-go's ``LastSyncResourceVersion``)."""
        return {name: r.resource_version for name, r in self._named if r.resource_version}

    @property
    def malformed(self) -> int:
        """Answers of the API server not taken (malformed list pages and watch events)."""
        return self.api.malformed

    def _handler(self, kind: liqo.Kind, role: PodRole | None, deleted: bool) -> Any:
        def handle(obj: dict[str, Any]) -> None:
            if deleted:
                self.join.remove(kind, obj, role)
            else:
                self.join.apply(kind, obj, role)
            self.changed.set()

        return handle

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for r in self.reflectors:
                group.create_task(r.run(), name=f"watch {r.spec}")
            group.create_task(self._wait_listed(), name="listed")

    async def _wait_listed(self) -> None:
        await asyncio.gather(*(r.listed.wait() for r in self.reflectors))
        m = self.join
        log.info(
            "synced: cluster %s, %d peer(s) %s",
            m.peers.cluster_id or "(unknown)",
            len(m.desired.peers),
            ", ".join(m.desired.peers) or "",
        )
        if not m.peers.local_pod_cidrs():
            log.warning("no local pod CIDR known (no pod-cidr Network): peers reach nothing")
        heap.trim()  # what decoding the lists left free in the C heap
        self.listed.set()
        self.changed.set()
