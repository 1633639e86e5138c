"""Liqo's objects -> contributions to a ``DesiredState``: the Kubernetes source's join, no I/O.

What each object says is read by ``objects``; this module joins those facts across kinds.

``LiqoJoin.apply``/``remove`` take one watched object at a time, in whatever order the watches
deliver them, and keep the desired state equal to what the objects seen so far imply. Facts that
join several kinds (a consumer's pod on a virtual node needs the node's provider and that
provider's CIDR remapping; an EndpointSlice needs its namespace's offloading and its Service's
annotations) are recomputed for the objects a change touches, so the result does not depend on
the order of arrival.

Decisions on Liqo's semantics (citations in ``liqo``); which set a pod's address joins is the rule
of ``compile.membership``, shared with the file source:

* ``sources`` of a peer: its *original* pod CIDRs, ``Configuration.spec.remote.cidr.pod``: Liqo
  source-NATs the peer's traffic into the remapped CIDR only at postrouting, after our forward hook.
  ``masquerade``: the first address of its (original) primary external CIDR,
  ``spec.remote.cidr.external[0]``, which its nodes give NodePort/hostNetwork traffic (and, with
  ``fullMasquerade``, all of it); see ``liqo``.
* OFFLOADED of consumer C: IPs of local pods labelled ``liqo.io/managed-by=shadowpod`` and
  ``offloading.liqo.io/origin=C`` *in a namespace labelled* ``liqo.io/remote-cluster-id=C`` (Liqo
  labels the namespaces it creates for C, and ordinary users cannot create pods there with a
  forged origin as easily as in their own namespace).
* API_CLIENTS of provider P: the consumer's pods on P's virtual nodes. Their local status IP is
  the *remapped* one (the virtual kubelet maps the remote IP from ``spec`` to ``status`` CIDRs,
  ``pkg/virtualKubelet/reflection/workload/podns.go`` ``MapPodIP``); their packets reach our
  forward hook with the original, so the IP is mapped back from ``status`` to ``spec``.
* BACKENDS of X: addresses of every EndpointSlice (whoever manages it: the virtual kubelet filters
  by namespace, not by label) in namespaces whose NamespaceOffloading selects X, if X's virtual
  kubelet reflects the slice: its EndpointSlice reflector runs (not with ``--disable-ip-reflection``)
  and the annotation rules of ``pkg/virtualKubelet/reflection/exposition/endpointslice.go``
  ``ShouldSkipReflection`` admit it under the policy of X's VkOptionsTemplate. Only endpoints that
  run here are kept: not on a virtual node and inside the local pod CIDRs; any other address (a
  node's, a ClusterIP, a gateway's, a foreign one) is never opened, and is logged and counted
  (``ignored_endpoints``). Liqo does
  reflect endpoints on *other* providers' virtual nodes to X (``forge.EndpointToBeReflected``),
  which X would reach through us; DESIGN §1 admits only backends running in R, and FullPodToPod's
  ``full_access`` (the local pod CIDRs) does not admit them either, so neither mode opens transit.
* Terminal pods (Succeeded/Failed) contribute nothing: their IPs may already belong to others.
* A peer exists when a ForeignCluster names it and its Configuration gives its pod CIDRs. Its mode
  is its PeeringSecurity's, else the chart default; two PeeringSecurities that disagree, or one
  with an unknown mode, give IntraClusterTrafficSegregation (the stricter, fail-closed). It audits
  segregation if its PeeringSecurity's ``securityAudit`` says so, else as the chart's default;
  PeeringSecurities that disagree audit nothing (enforcing is the fail-closed side).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import shape
from peerwall.agent.kube.objects import (
    Obj,
    Remap,
    Slice,
    VkOptions,
    annotations_of,
    key_of,
    labels_of,
    offloaded_to,
    pod_ips,
    read_configuration,
    read_slice,
    tunnel_count,
    v4,
    v4_networks,
    valid_cluster_id,
    vk_options,
)
from peerwall.compile import names
from peerwall.compile.membership import memberships
from peerwall.compile.state import ApiServer, PeerState, SetKind
from peerwall.model.spec import SecurityMode
from peerwall.settings import KubeSettings

log = logging.getLogger("peerwall.agent.kube")


class PodRole(Enum):
    """Which of the two pod watches an event comes from."""

    SHADOW = "shadow"
    """Pods offloaded here by a consumer (provider side)."""
    REMOTE = "remote"
    """Our pods offloaded to a provider (consumer side)."""
    GATEWAY = "gateway"
    """Liqo's gateway pods here: never opened as backends."""


# --- the join ------------------------------------------------------------------------------------


def _fmt(addrs: Iterable[IPv4Address]) -> str:
    return ",".join(sorted(map(str, addrs), key=lambda s: tuple(map(int, s.split(".")))))


class LiqoJoin:
    """What the watched objects imply for one gateway, kept in a ``DesiredState``."""

    def __init__(self, desired: DesiredState, settings: KubeSettings) -> None:
        self.desired = desired
        self.settings = settings
        self.cluster_id: str | None = None
        self._networks: dict[str, tuple[IPv4Network, ...]] = {}
        self._api_ips: dict[str, IPv4Address] = {}
        self._foreign: dict[str, str] = {}
        self._configs: dict[str, tuple[str, Remap]] = {}
        self._gateways: dict[tuple[str, str], tuple[str, int]] = {}
        """(kind, key) -> (peer, number of tunnels) of each GatewayServer/GatewayClient."""
        self._masquerade: dict[str, IPv4Address] = {}
        """Configuration key -> the peer's masquerade source."""
        self._vnodes: dict[str, tuple[str, str]] = {}
        """VirtualNode key -> (provider, key of its VkOptionsTemplate)."""
        self._templates: dict[str, VkOptions] = {}
        self._gateway_pods: dict[str, frozenset[IPv4Address]] = {}
        """Pod key -> addresses of Liqo's gateway pods here."""
        self.ignored_endpoints: dict[str, frozenset[IPv4Address]] = {}
        """EndpointSlice key -> its endpoints that a peer would reach but that are not local pods
        (outside the local pod CIDRs, or a Liqo gateway): never opened."""
        self.ignored_endpoints_total = 0
        """How many times an endpoint was found so (for the metric)."""
        self._security: dict[str, tuple[str, SecurityMode | None]] = {}
        self._audits: dict[str, tuple[str, bool]] = {}
        """PeeringSecurity key -> (peer, its securityAudit), for those that set it."""
        self._virtual_nodes: dict[str, str] = {}
        self._origin_ns: dict[str, str] = {}
        self._offloading: dict[str, frozenset[str]] = {}
        self._services: dict[str, Mapping[str, str]] = {}
        self._shadow: dict[str, Obj] = {}
        self._shadow_by_ns: dict[str, set[str]] = defaultdict(set)
        self._remote: dict[str, Obj] = {}
        self._remote_by_node: dict[str, set[str]] = defaultdict(set)
        self._slices: dict[str, Slice] = {}
        self._slices_by_ns: dict[str, set[str]] = defaultdict(set)
        self._declared: dict[str, PeerState] = {}
        self._clashes: dict[str, str] = {}
        """Peers refused because they share a tunnel or a hash with another (logged once)."""

    # --- dispatch --------------------------------------------------------------------------

    def apply(self, kind: liqo.Kind, obj: Obj, role: PodRole | None = None) -> None:
        """An object was listed, added or modified. Pods come from two watches (``role``): one
        may report a pod deleted (it left its selector) while the other still holds it."""
        self._handle(kind, obj, False, role)

    def remove(self, kind: liqo.Kind, obj: Obj, role: PodRole | None = None) -> None:
        """An object was deleted (or found gone at a relist); ``obj`` is its last known state."""
        self._handle(kind, obj, True, role)

    def _handle(self, kind: liqo.Kind, obj: Obj, deleted: bool, role: PodRole | None) -> None:
        bad = shape.problem(kind.kind, obj)
        if bad is not None:
            # Unreadable: refused in one line, and what it contributed goes (``shape``).
            obj = shape.skeleton(obj)
            log.error("%s %s refused: %s; handled as deleted", kind.kind, key_of(obj), bad)
            deleted = True
            if kind == liqo.POD and role is None:
                k = key_of(obj)
                self._on_shadow_pod(k, obj, True)
                self._on_remote_pod(k, obj, True)
                return
        k = key_of(obj)
        handler = {
            liqo.CONFIGMAP: self._on_configmap,
            liqo.NETWORK: self._on_network,
            liqo.IP: self._on_ip,
            liqo.FOREIGN_CLUSTER: self._on_foreign,
            liqo.CONFIGURATION: self._on_configuration,
            liqo.GATEWAY_SERVER: self._on_gateway,
            liqo.GATEWAY_CLIENT: self._on_gateway,
            liqo.PEERING_SECURITY: self._on_security,
            liqo.NODE: self._on_node,
            liqo.NAMESPACE: self._on_namespace,
            liqo.NAMESPACE_OFFLOADING_KIND: self._on_offloading,
            liqo.SERVICE: self._on_service,
            liqo.ENDPOINTSLICE: self._on_slice,
            liqo.VIRTUAL_NODE_KIND: self._on_virtual_node,
            liqo.VK_OPTIONS_TEMPLATE: self._on_vk_template,
        }.get(kind)
        if handler is not None:
            handler(kind, k, obj, deleted)
        elif kind == liqo.POD:
            labels = labels_of(obj)
            if role is PodRole.SHADOW or (role is None and liqo.MANAGED_BY in labels):
                self._on_shadow_pod(k, obj, deleted)
            if role is PodRole.REMOTE or (role is None and liqo.LOCAL_OFFLOADED_POD in labels):
                self._on_remote_pod(k, obj, deleted)
            if role is PodRole.GATEWAY or (role is None and liqo.GATEWAY_COMPONENT in labels):
                self._on_gateway_pod(k, obj, deleted)
        else:
            raise ValueError(f"kind {kind.kind} is not watched")

    # --- identity, local CIDRs, API server, peers ---------------------------------------------

    def _on_configmap(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        cid = None if deleted else (obj.get("data") or {}).get(liqo.CLUSTER_ID_KEY)
        if cid and cid != self.cluster_id:
            log.info("local cluster ID: %s (configmap %s)", cid, k)
            self.cluster_id = cid
            self.desired.cluster = cid

    def _on_network(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        before = self.local_pod_cidrs()
        if deleted:
            self._networks.pop(k, None)
        else:
            spec = obj.get("spec") or {}
            self._networks[k] = v4_networks([spec.get("cidr")], f"network {k}")
        if self.local_pod_cidrs() == before:
            return
        log.info("local pod CIDRs: %s", ", ".join(map(str, self.local_pod_cidrs())) or "(none)")
        # Both the peers' full access and which endpoints are local depend on them.
        self._declare_peers()
        for s in list(self._slices):
            self._contribute_slice(s)
        for p in list(self._shadow):
            self._contribute_shadow(p)

    def _on_ip(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        ip = None if deleted else v4((obj.get("spec") or {}).get("ip"))
        if ip is None:
            self._api_ips.pop(k, None)
        else:
            self._api_ips[k] = ip
        self._declare_peers()

    def _on_foreign(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        cid = None if deleted else (obj.get("spec") or {}).get("clusterID")
        if cid and not valid_cluster_id(cid):
            # It names nftables objects: never let the API's text into a script unchecked.
            log.error(
                "foreigncluster %s: clusterID %r is not a valid cluster ID (1 to 63 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit): ignored",
                k,
                cid if isinstance(cid, str) else type(cid).__name__,
            )
            cid = None
        if cid:
            self._foreign[k] = cid
        else:
            self._foreign.pop(k, None)
        self._declare_peers()

    def _on_configuration(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        peer = labels_of(obj).get(liqo.REMOTE_CLUSTER_ID)
        old = self._configs.pop(k, None)
        self._masquerade.pop(k, None)
        if not deleted and peer:
            remap, masquerade = read_configuration(obj, f"configuration {k}")
            if masquerade is not None:
                self._masquerade[k] = masquerade
            self._configs[k] = (peer, remap)
        self._declare_peers()
        for p in {peer, old[0] if old else None} - {None}:
            self._recontribute_remote_of(str(p))

    def _on_gateway(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        peer = labels_of(obj).get(liqo.REMOTE_CLUSTER_ID)
        if deleted or not peer:
            self._gateways.pop((kind.kind, k), None)
        else:
            self._gateways[(kind.kind, k)] = (peer, tunnel_count(obj))
        self._declare_peers()

    def _on_security(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        spec = obj.get("spec") or {}
        peer = spec.get("clusterID")
        self._audits.pop(k, None)
        if deleted or not peer:
            self._security.pop(k, None)
        else:
            if isinstance(spec.get("securityAudit"), bool):
                self._audits[k] = (peer, spec["securityAudit"])
            try:
                mode: SecurityMode | None = SecurityMode(spec.get("securityMode"))
            except ValueError:
                log.error(
                    "peeringsecurity %s: unknown securityMode %r (valid: %s): enforcing %s",
                    k,
                    spec.get("securityMode"),
                    SecurityMode.valid_values(),
                    SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value,
                )
                mode = None
            self._security[k] = (peer, mode)
        self._declare_peers()

    def local_pod_cidrs(self) -> tuple[IPv4Network, ...]:
        if self.settings.pod_cidrs is not None:
            return self.settings.pod_cidrs
        return tuple(sorted({n for nets in self._networks.values() for n in nets}))

    def api_server(self) -> ApiServer | None:
        if self.settings.api_server is not None:
            return self.settings.api_server
        if not self._api_ips:
            return None
        # Several with apiServerAccessThroughEndpointSlices: one per endpoint of
        # default/kubernetes, each the address some offloaded pods are given.
        ips = sorted(set(self._api_ips.values()))
        return ApiServer(ips[0], self.settings.api_port, tuple(ips[1:]))

    def _mode(self, peer: str) -> SecurityMode:
        modes = [mode for p, mode in self._security.values() if p == peer]
        known = {m for m in modes if m is not None}
        if not modes:
            return self.settings.default_mode
        if len(known) == 1 and None not in modes:
            return known.pop()
        if len(known) > 1:
            log.error(
                "peer %s: PeeringSecurities disagree (%s): enforcing %s",
                peer,
                ", ".join(sorted(m.value for m in known)),
                SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value,
            )
        return SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION

    def _audit(self, peer: str) -> bool:
        said = {audit for p, audit in self._audits.values() if p == peer}
        if not said:
            return self.settings.default_audit
        return said == {True}

    def _config_of(self, peer: str) -> Remap | None:
        found = sorted((k, r) for k, (p, r) in self._configs.items() if p == peer)
        if not found:
            return None
        if len(found) > 1:
            tenant = [r for k, r in found if k.startswith(f"liqo-tenant-{peer}/")]
            log.warning(
                "peer %s: several Configurations (%s)", peer, ", ".join(k for k, _ in found)
            )
            if tenant:
                return tenant[0]
        return found[0][1]

    def _gateways_of(self, peer: str) -> tuple[IPv4Address, ...]:
        """The peer gateway's address on each tunnel: the client's if we are the server."""
        found = {(kind, n) for (kind, _), (p, n) in self._gateways.items() if p == peer}
        if len(found) != 1:
            return ()
        ((kind, n),) = found
        peer_is_server = kind == liqo.GATEWAY_CLIENT.kind
        return tuple(liqo.tunnel_ip(peer_is_server, i) for i in range(n))

    def _masquerade_of(self, peer: str) -> IPv4Address | None:
        found = sorted((k, a) for k, a in self._masquerade.items() if self._configs[k][0] == peer)
        tenant = [a for k, a in found if k.startswith(f"liqo-tenant-{peer}/")]
        candidates = tenant or [a for _, a in found]
        return candidates[0] if candidates else None

    def _wanted(self, peer: str | None) -> bool:
        return peer is not None and (self.settings.peer is None or peer == self.settings.peer)

    def _declare_peers(self) -> None:
        cidrs = self.local_pod_cidrs()
        api = self.api_server()
        full = list(cidrs)
        if api is not None:
            full += [IPv4Network(a) for a in api.addresses if not any(a in c for c in cidrs)]
        wanted: dict[str, PeerState] = {}
        for peer in sorted(set(self._foreign.values())):
            if not self._wanted(peer):
                continue
            remap = self._config_of(peer)
            if remap is None or not remap.original:
                continue  # no network configuration yet: no tunnel either
            tunnel = self.settings.tunnel(peer)
            gateways = self._gateways_of(peer)
            more = len(gateways) - 1 if tunnel == liqo.TUNNEL else 0
            wanted[peer] = PeerState(
                name=peer,
                tunnel=tunnel,
                mode=self._mode(peer),
                audit=self._audit(peer),
                sources=remap.original,
                full_access=tuple(full),
                api=api,
                gateway=gateways[0] if gateways else None,
                masquerade=self._masquerade_of(peer),
                more_tunnels=tuple(liqo.tunnel_name(i) for i in range(1, more + 1)),
                more_gateways=gateways[1 : more + 1],
            )
        # Two peers on one tunnel (no --peer in a gateway pod of one tunnel), or with one hash:
        # the last would win the tunnel or share the sets. Neither is enforced; the tunnel stays
        # unknown, and so fails closed.
        clash = names.clashes((p.name, p.tunnel) for p in wanted.values())
        if clash != self._clashes:
            for peer, why in sorted(clash.items()):
                log.error("peer %s refused: %s (run one agent per peer: --peer)", peer, why)
            self._clashes = clash
        for name in clash:
            del wanted[name]
        for name in [n for n in self._declared if n not in wanted]:
            log.info("peer %s removed", name)
            del self._declared[name]
            self.desired.remove_peer(name)
        for name, state in wanted.items():
            old = self._declared.get(name)
            if old == state:
                continue
            if old is None:
                log.info("peer %s declared: %s", name, _describe(state))
            else:
                log.info("peer %s changed: %s", name, _diff(old, state))
            self._declared[name] = state
            self.desired.upsert_peer(state)

    # --- contributions ---------------------------------------------------------------------

    def _replace(self, key: str, kind: SetKind, new: Mapping[str, frozenset[IPv4Address]]) -> None:
        """Make ``key``'s contributions to ``kind`` sets exactly ``new`` (peer -> addresses)."""
        old = {p: a for (p, k), a in self.desired.contributions(key).items() if k == kind}
        for peer in sorted(set(old) | set(new)):
            before, after = old.get(peer, frozenset()), new.get(peer, frozenset())
            if before == after:
                continue
            changes = []
            if after - before:
                changes.append(f"+{_fmt(after - before)}")
            if before - after:
                changes.append(f"-{_fmt(before - after)}")
            log.info("%s: %s(%s) %s", key, kind.value, peer, " ".join(changes))
            self.desired.contribute(key, peer, kind, after)

    def _local(self, addrs: Iterable[IPv4Address]) -> frozenset[IPv4Address]:
        cidrs = self.local_pod_cidrs()
        return frozenset(a for a in addrs if any(a in c for c in cidrs))

    # OFFLOADED: pods a consumer offloaded here.

    def _on_shadow_pod(self, k: str, obj: Obj, deleted: bool) -> None:
        ns = obj.get("metadata", {}).get("namespace", "")
        if deleted or labels_of(obj).get(liqo.MANAGED_BY) != liqo.MANAGED_BY_SHADOWPOD:
            self._shadow.pop(k, None)
            self._shadow_by_ns[ns].discard(k)
        else:
            self._shadow[k] = obj
            self._shadow_by_ns[ns].add(k)
        self._contribute_shadow(k)

    def _contribute_shadow(self, k: str) -> None:
        pod = self._shadow.get(k)
        new: dict[str, frozenset[IPv4Address]] = {}
        if pod is not None:
            origin = labels_of(pod).get(liqo.ORIGIN)
            ns = pod.get("metadata", {}).get("namespace", "")
            if self._wanted(origin) and self._origin_ns.get(ns) == origin:
                addrs = self._local(pod_ips(pod))
                new = {peer: addrs for peer, _ in memberships(offloaded_by=str(origin))}
        self._replace(f"pod/{k}", SetKind.OFFLOADED, new)

    def _on_namespace(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
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

    def _on_remote_pod(self, k: str, obj: Obj, deleted: bool) -> None:
        old = self._remote.get(k)
        if old is not None:
            self._remote_by_node[old.get("spec", {}).get("nodeName", "")].discard(k)
        if deleted or labels_of(obj).get(liqo.LOCAL_OFFLOADED_POD) != "true":
            self._remote.pop(k, None)
        else:
            self._remote[k] = obj
            self._remote_by_node[obj.get("spec", {}).get("nodeName", "")].add(k)
        self._contribute_remote(k)

    def _contribute_remote(self, k: str) -> None:
        pod = self._remote.get(k)
        new: dict[str, frozenset[IPv4Address]] = {}
        if pod is not None:
            provider = self._virtual_nodes.get(pod.get("spec", {}).get("nodeName", ""))
            remap = self._config_of(provider) if provider and self._wanted(provider) else None
            if provider and remap is not None:
                seen = {remap.to_original(a) for a in pod_ips(pod)}
                addrs = frozenset(a for a in seen if a is not None)
                new = {peer: addrs for peer, _ in memberships(offloaded_to=provider)}
        self._replace(f"pod/{k}", SetKind.API_CLIENTS, new)

    def _recontribute_remote_of(self, provider: str) -> None:
        for node, p in list(self._virtual_nodes.items()):
            if p == provider:
                for k in list(self._remote_by_node.get(node, ())):
                    self._contribute_remote(k)

    def _on_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        labels = labels_of(obj)
        provider = labels.get(liqo.REMOTE_CLUSTER_ID)
        if deleted or labels.get(liqo.TYPE_LABEL) != liqo.VIRTUAL_NODE:
            provider = None
        if provider == self._virtual_nodes.get(k):
            return  # a status update (heartbeat): nothing that matters here changed
        if provider is None:
            self._virtual_nodes.pop(k, None)
        else:
            log.info("virtual node %s: provider %s", k, provider)
            self._virtual_nodes[k] = provider
        for p in list(self._remote_by_node.get(k, ())):
            self._contribute_remote(p)
        for s in list(self._slices):
            self._contribute_slice(s)

    # BACKENDS: local backends of services reflected to a peer.

    def _on_offloading(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
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

    def _on_service(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
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

    def _on_slice(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
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
            peers = [p for p in self._offloading.get(s.namespace, ()) if self._wanted(p)]
            service = self._services.get(f"{s.namespace}/{s.service}") if s.service else None
            peers = [
                p for p in peers if any(o.reflects(s.annotations, service) for o in self._vk(p))
            ]
            if peers:
                here = {e.address for e in s.endpoints if e.node not in self._virtual_nodes}
                gateways = frozenset().union(*self._gateway_pods.values())
                addrs = self._local(here) - gateways
                new = {peer: addrs for peer, _ in memberships(reflected_to=peers)}
                if self.local_pod_cidrs():
                    ignored = frozenset(here - addrs)
        self._ignore(k, ignored)
        self._replace(f"endpointslice/{k}", SetKind.BACKENDS, new)

    def _ignore(self, k: str, ignored: frozenset[IPv4Address]) -> None:
        """Log and count endpoints that are not local pods as they start being ignored."""
        fresh = ignored - self.ignored_endpoints.get(k, frozenset())
        if fresh:
            self.ignored_endpoints_total += len(fresh)
            log.warning(
                "endpointslice %s: %s not a local pod (outside the local pod CIDRs %s, or a Liqo "
                "gateway): not opened",
                k,
                _fmt(fresh),
                ", ".join(map(str, self.local_pod_cidrs())),
            )
        if ignored:
            self.ignored_endpoints[k] = ignored
        else:
            self.ignored_endpoints.pop(k, None)

    def _on_gateway_pod(self, k: str, obj: Obj, deleted: bool) -> None:
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
        self._recontribute_slices()

    # Reflection settings of each provider's virtual kubelet.

    def _vk(self, provider: str) -> list[VkOptions]:
        """The reflection of each virtual kubelet serving ``provider`` (the default template's
        when no VirtualNode is known); a template not found: ``KubeSettings.reflection``."""
        refs = {t for p, t in self._vnodes.values() if p == provider}
        if not refs:
            refs = {f"{self.settings.liqo_namespace}/{liqo.VK_OPTIONS_DEFAULT}"}
        fallback = VkOptions(self.settings.reflection)
        return [self._templates.get(ref, fallback) for ref in sorted(refs)]

    def _on_virtual_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        spec = obj.get("spec") or {}
        provider = spec.get("clusterID")
        if deleted or not provider:
            self._vnodes.pop(k, None)
        else:
            ref = spec.get("vkOptionsTemplateRef") or {}
            if ref.get("name"):
                ns = ref.get("namespace") or obj.get("metadata", {}).get("namespace", "")
                template = f"{ns}/{ref['name']}"
            else:
                template = f"{self.settings.liqo_namespace}/{liqo.VK_OPTIONS_DEFAULT}"
            self._vnodes[k] = (str(provider), template)
        self._recontribute_slices()

    def _on_vk_template(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        before = self._templates.get(k)
        if deleted:
            self._templates.pop(k, None)
        else:
            self._templates[k] = vk_options(obj, self.settings.reflection)
        now = self._templates.get(k)
        if now == before:
            return
        if now is not None and now.policy is None:
            log.error("vkoptionstemplate %s: unknown service reflection type: reflects nothing", k)
        log.info("vkoptionstemplate %s: %s", k, now or "deleted")
        self._recontribute_slices()

    def _recontribute_slices(self) -> None:
        for s in list(self._slices):
            self._contribute_slice(s)


def _describe(p: PeerState) -> str:
    return (
        f"mode={p.mode.value} tunnel={p.tunnel} sources={','.join(map(str, p.sources))} "
        f"full_access={','.join(map(str, p.full_access)) or '-'} "
        f"api={f'{_fmt(p.api.addresses)}:{p.api.port}' if p.api else '-'} "
        f"gateway={_fmt(p.gateways) or '-'} masquerade={p.masquerade or '-'} "
        f"tunnels={','.join(p.tunnels)}"
    )


def _diff(old: PeerState, new: PeerState) -> str:
    changed = []
    for name in (
        "mode",
        "audit",
        "tunnel",
        "sources",
        "full_access",
        "api",
        "gateway",
        "masquerade",
        "more_tunnels",
        "more_gateways",
    ):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            show = (lambda v: v.value) if name == "mode" else str
            changed.append(f"{name} {show(a)} -> {show(b)}")
    return "; ".join(changed)


__all__ = ["LiqoJoin", "PodRole"]
