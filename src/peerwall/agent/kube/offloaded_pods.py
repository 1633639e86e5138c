"""Offloaded pods, both ways: the join's part that fills OFFLOADED and API_CLIENTS.

Which set a pod's address joins is the rule of ``compile.membership``, shared with the file
source; what the join decides is which pods count (citations in ``peerwall.liqo``):

* OFFLOADED of consumer C: IPs of local pods labelled ``liqo.io/managed-by=shadowpod`` and
  ``offloading.liqo.io/origin=C`` *in a namespace labelled* ``liqo.io/remote-cluster-id=C`` (Liqo
  labels the namespaces it creates for C, and ordinary users cannot create pods there with a
  forged origin as easily as in their own namespace).
* API_CLIENTS of provider P: the consumer's pods on P's virtual nodes. Their local status IP is
  the *remapped* one (the virtual kubelet maps the remote IP from ``spec`` to ``status`` CIDRs,
  ``pkg/virtualKubelet/reflection/workload/podns.go`` ``MapPodIP``); their packets reach our
  forward hook with the original, so the IP is mapped back from ``status`` to ``spec``.
* Terminal pods (Succeeded/Failed) contribute nothing: their IPs may already belong to others
  (``objects.pod_ips``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from ipaddress import IPv4Address

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import contribution
from peerwall.agent.kube.objects import Obj, labels_of, pod_ips
from peerwall.agent.kube.peers import Peers
from peerwall.compile.membership import memberships
from peerwall.compile.state import SetKind
from peerwall.settings import KubeSettings

__all__ = ["OffloadedPods"]

log = logging.getLogger("peerwall.agent.kube")


@dataclass(frozen=True, slots=True)
class PodFacts:
    """What the join keeps of one pod: the facts its contribution is derived from, not the
    object (tens of thousands of pods: a slotted record of a shared string and packed addresses
    costs a fraction of a dict of dicts; issue 21)."""

    where: str
    """A shadow pod's namespace, or a remote pod's node."""
    origin: str | None
    """A shadow pod's ``offloading.liqo.io/origin`` label."""
    ips: bytes
    """``pod_ips``: its addresses packed, 4 bytes each (none once terminal): one small object
    where a tuple of integers is three."""

    @staticmethod
    def of(where: str, origin: str | None, pod: Obj) -> PodFacts:
        return PodFacts(where, origin, b"".join(a.packed for a in pod_ips(pod)))

    def addresses(self) -> frozenset[IPv4Address]:
        return frozenset(IPv4Address(self.ips[i : i + 4]) for i in range(0, len(self.ips), 4))


class OffloadedPods:
    """Pods a consumer offloaded here (OFFLOADED) and ours offloaded to a provider (API_CLIENTS),
    with the namespaces and virtual nodes that say whose they are."""

    def __init__(self, desired: DesiredState, settings: KubeSettings, peers: Peers) -> None:
        self.desired = desired
        self.settings = settings
        self.peers = peers
        self.virtual_nodes: dict[str, str] = {}
        """Virtual node -> its provider."""
        self._origin_ns: dict[str, str] = {}
        self._shadow: dict[str, PodFacts] = {}
        """Shadow pod key -> its namespace, origin and addresses."""
        self._shadow_by_ns: dict[str, set[str]] = defaultdict(set)
        self._remote: dict[str, PodFacts] = {}
        """Our offloaded pod's key -> its node and addresses."""
        self._remote_by_node: dict[str, set[str]] = defaultdict(set)

    # OFFLOADED: pods a consumer offloaded here.

    def on_shadow_pod(self, k: str, obj: Obj, deleted: bool) -> None:
        ns = obj.get("metadata", {}).get("namespace", "")
        labels = labels_of(obj)
        if deleted or labels.get(liqo.MANAGED_BY) != liqo.MANAGED_BY_SHADOWPOD:
            self._shadow.pop(k, None)
            self._shadow_by_ns[ns].discard(k)
        else:
            self._shadow[k] = PodFacts.of(ns, labels.get(liqo.ORIGIN), obj)
            self._shadow_by_ns[ns].add(k)
        self._contribute_shadow(k)

    def _contribute_shadow(self, k: str) -> None:
        pod = self._shadow.get(k)
        new: dict[str, frozenset[IPv4Address]] = {}
        if pod is not None:
            origin = pod.origin
            if self.settings.serves(origin) and self._origin_ns.get(pod.where) == origin:
                addrs = self.peers.local(pod.addresses())
                new = {peer: addrs for peer, _ in memberships(offloaded_by=str(origin))}
        contribution.replace(self.desired, f"pod/{k}", SetKind.OFFLOADED, new)

    def recontribute_shadow(self) -> None:
        """Every shadow pod again (the local pod CIDRs changed)."""
        for p in list(self._shadow):
            self._contribute_shadow(p)

    def on_namespace(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        origin = None if deleted else labels_of(obj).get(liqo.REMOTE_CLUSTER_ID)
        if origin == self._origin_ns.get(k):
            return
        if origin:
            self._origin_ns[k] = origin
        else:
            self._origin_ns.pop(k, None)
        for p in list(self._shadow_by_ns.get(k, ())):
            self._contribute_shadow(p)

    # API_CLIENTS: our pods running at a provider.

    def on_remote_pod(self, k: str, obj: Obj, deleted: bool) -> None:
        old = self._remote.get(k)
        if old is not None:
            self._remote_by_node[old.where].discard(k)
        if deleted or labels_of(obj).get(liqo.LOCAL_OFFLOADED_POD) != "true":
            self._remote.pop(k, None)
        else:
            node = obj.get("spec", {}).get("nodeName", "")
            self._remote[k] = PodFacts.of(node, None, obj)
            self._remote_by_node[node].add(k)
        self._contribute_remote(k)

    def _contribute_remote(self, k: str) -> None:
        pod = self._remote.get(k)
        new: dict[str, frozenset[IPv4Address]] = {}
        if pod is not None:
            provider = self.virtual_nodes.get(pod.where)
            remap = (
                self.peers.config_of(provider)
                if provider and self.settings.serves(provider)
                else None
            )
            if provider and remap is not None:
                seen = {remap.to_original(a) for a in pod.addresses()}
                addrs = frozenset(a for a in seen if a is not None)
                new = {peer: addrs for peer, _ in memberships(offloaded_to=provider)}
        contribution.replace(self.desired, f"pod/{k}", SetKind.API_CLIENTS, new)

    def recontribute_remote_of(self, provider: str) -> None:
        """Our pods on ``provider``'s virtual nodes again (its CIDR remapping changed)."""
        for node, p in list(self.virtual_nodes.items()):
            if p == provider:
                for k in list(self._remote_by_node.get(node, ())):
                    self._contribute_remote(k)

    def on_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> bool:
        """Whether the node's provider changed (it became or ceased to be a virtual node)."""
        labels = labels_of(obj)
        provider = labels.get(liqo.REMOTE_CLUSTER_ID)
        if deleted or labels.get(liqo.TYPE_LABEL) != liqo.VIRTUAL_NODE:
            provider = None
        if provider == self.virtual_nodes.get(k):
            return False  # a status update (heartbeat): nothing that matters here changed
        if provider is None:
            self.virtual_nodes.pop(k, None)
        else:
            log.info("virtual node %s: provider %s", k, provider)
            self.virtual_nodes[k] = provider
        for p in list(self._remote_by_node.get(k, ())):
            self._contribute_remote(p)
        return True
