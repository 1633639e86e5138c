"""Local backends of services reflected to a peer: the join's part that fills BACKENDS.

* BACKENDS of X: addresses of every EndpointSlice (whoever manages it: the virtual kubelet filters
  by namespace, not by label) in namespaces whose NamespaceOffloading selects X, if X's virtual
  kubelet reflects the slice: its EndpointSlice reflector runs (not with ``--disable-ip-reflection``)
  and the annotation rules of ``pkg/virtualKubelet/reflection/exposition/endpointslice.go``
  ``ShouldSkipReflection`` admit it under the policy of X's VkOptionsTemplate (``reflection``).
  Only endpoints that run here are kept: not on a virtual node and inside the local pod CIDRs; any
  other address (a node's, a ClusterIP, a gateway's, a foreign one) is never opened, and is logged
  and counted (``ignored_endpoints``). Liqo does
  reflect endpoints on *other* providers' virtual nodes to X (``forge.EndpointToBeReflected``),
  which X would reach through us; DESIGN §1 admits only backends running in R, and FullPodToPod's
  ``full_access`` (the local pod CIDRs) does not admit them either, so neither mode opens transit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from ipaddress import IPv4Address

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import contribution
from peerwall.agent.kube.objects import (
    Obj,
    Slice,
    annotations_of,
    labels_of,
    offloaded_to,
    read_slice,
    v4,
)
from peerwall.agent.kube.offloaded_pods import OffloadedPods
from peerwall.agent.kube.peers import Peers
from peerwall.agent.kube.reflection import Reflection
from peerwall.compile.membership import memberships
from peerwall.compile.state import SetKind
from peerwall.settings import KubeSettings

__all__ = ["Backends"]

log = logging.getLogger("peerwall.agent.kube")


class Backends:
    """EndpointSlices, with what decides whether a peer may reach their endpoints: the
    namespace's offloading, the Service's annotations, the provider's reflection, and which pods
    are Liqo's gateways."""

    def __init__(
        self,
        desired: DesiredState,
        settings: KubeSettings,
        peers: Peers,
        pods: OffloadedPods,
        reflection: Reflection,
    ) -> None:
        self.desired = desired
        self.settings = settings
        self.peers = peers
        self.pods = pods
        self.reflection = reflection
        self._offloading: dict[str, frozenset[str]] = {}
        self._services: dict[str, Mapping[str, str]] = {}
        self._slices: dict[str, Slice] = {}
        self._slices_by_ns: dict[str, set[str]] = defaultdict(set)
        self._gateway_pods: dict[str, frozenset[IPv4Address]] = {}
        """Pod key -> addresses of Liqo's gateway pods here."""
        self.ignored_endpoints: dict[str, frozenset[IPv4Address]] = {}
        """EndpointSlice key -> its endpoints that a peer would reach but that are not local pods
        (outside the local pod CIDRs, or a Liqo gateway): never opened."""
        self.ignored_endpoints_total = 0
        """How many times an endpoint was found so (for the metric)."""

    def on_offloading(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        ns = obj.get("metadata", {}).get("namespace", "")
        if obj.get("metadata", {}).get("name") != liqo.NAMESPACE_OFFLOADING:
            return
        peers = frozenset() if deleted else offloaded_to(obj)
        old = self._offloading.get(ns, frozenset())
        if peers == old:
            return
        log.info("namespace %s offloaded to: %s", ns, ", ".join(sorted(peers)) or "(nobody)")
        if peers:
            self._offloading[ns] = peers
        else:
            self._offloading.pop(ns, None)
        for s in list(self._slices_by_ns.get(ns, ())):
            self._contribute_slice(s)

    def on_service(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        old = self._services.get(k)
        if deleted:
            self._services.pop(k, None)
        else:
            self._services[k] = dict(annotations_of(obj))
        if self._services.get(k) == old:
            return
        ns, _, name = k.partition("/")
        for s in list(self._slices_by_ns.get(ns, ())):
            if self._slices[s].service == name:
                self._contribute_slice(s)

    def on_slice(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        ns = obj.get("metadata", {}).get("namespace", "")
        if deleted:
            self._slices.pop(k, None)
            self._slices_by_ns[ns].discard(k)
        else:
            self._slices[k] = read_slice(obj)
            self._slices_by_ns[ns].add(k)
        self._contribute_slice(k)

    def _contribute_slice(self, k: str) -> None:
        s = self._slices.get(k)
        new: dict[str, frozenset[IPv4Address]] = {}
        ignored: frozenset[IPv4Address] = frozenset()
        if s is not None and not (s.namespace == "default" and s.service == "kubernetes"):
            peers = [p for p in self._offloading.get(s.namespace, ()) if self.settings.serves(p)]
            service = self._services.get(f"{s.namespace}/{s.service}") if s.service else None
            peers = [
                p
                for p in peers
                if any(o.reflects(s.annotations, service) for o in self.reflection.of(p))
            ]
            if peers:
                here = {e.address for e in s.endpoints if e.node not in self.pods.virtual_nodes}
                gateways = frozenset().union(*self._gateway_pods.values())
                addrs = self.peers.local(here) - gateways
                new = {peer: addrs for peer, _ in memberships(reflected_to=peers)}
                if self.peers.local_pod_cidrs():
                    ignored = frozenset(here - addrs)
        self._ignore(k, ignored)
        contribution.replace(self.desired, f"endpointslice/{k}", SetKind.BACKENDS, new)

    def recontribute(self) -> None:
        """Every slice again (a fact every slice depends on changed)."""
        for s in list(self._slices):
            self._contribute_slice(s)

    def _ignore(self, k: str, ignored: frozenset[IPv4Address]) -> None:
        """Log and count endpoints that are not local pods as they start being ignored."""
        fresh = ignored - self.ignored_endpoints.get(k, frozenset())
        if fresh:
            self.ignored_endpoints_total += len(fresh)
            log.warning(
                "endpointslice %s: %s not a local pod (outside the local pod CIDRs %s, or a Liqo "
                "gateway): not opened",
                k,
                contribution.fmt(fresh),
                ", ".join(map(str, self.peers.local_pod_cidrs())),
            )
        if ignored:
            self.ignored_endpoints[k] = ignored
        else:
            self.ignored_endpoints.pop(k, None)

    def on_gateway_pod(self, k: str, obj: Obj, deleted: bool) -> None:
        is_gateway = labels_of(obj).get(liqo.GATEWAY_COMPONENT) == liqo.GATEWAY_POD
        before = self._gateway_pods.get(k, frozenset())
        # Its addresses whatever its phase (unlike pod_ips): a gateway that failed still holds
        # its address until it is deleted.
        status = obj.get("status") or {}
        values = [p.get("ip") for p in status.get("podIPs") or ()] + [status.get("podIP")]
        now = frozenset(a for a in map(v4, values) if a is not None)
        after = frozenset() if deleted or not is_gateway else now
        if after == before:
            return
        if after:
            self._gateway_pods[k] = after
        else:
            self._gateway_pods.pop(k, None)
        self.recontribute()
