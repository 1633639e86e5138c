"""The topology that Liqo v1 clusters hold: their objects joined into a topology file's document.

The inverse of what Liqo does for a topology (``peerwall.lab.apiserver.liqo_objects`` writes those
objects): each cluster's objects, as the Kubernetes source lists them (``snapshot``), are read with
the source's own readers (``objects.pod_ips``, ``offloaded_to``, ``Remap``, the labels of ``liqo``),
and joined across clusters into the document ``docs/topology-format.md`` fixes, which the views
then load and validate like any file. Pure: no I/O.

What Kubernetes does not hold, the document leaves at the format's defaults, or names by rule:
- a cluster's name is its Liqo cluster ID; its Internet keeps the default name; its API server
  (when Liqo's IPAM has the ``api-server`` IP) is named ``apiserver.<cluster ID>``;
- a cluster's install-time mode (the chart's ``networking.securityMode``) is not in the API: the
  views' ``--set networking.securityMode`` stands for it; PeeringSecurities give the peerings'
  modes;
- the service CIDR is not published: the /16 around ``default/kubernetes``'s ClusterIP, narrowed
  (up to /24) until clear of the pod CIDR; the format's default without a ClusterIP;
- external CIDRs and ``fullMasquerade`` are left out: every Liqo cluster has one (the same default
  on each, which the format would refuse as an overlap), and only ``fullMasquerade``, which is a
  node flag and not in the API, changes a verdict.
A pod or service name used more than once (Kubernetes names are unique only per namespace) is
qualified as ``name.namespace.cluster``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from peerwall import liqo
from peerwall.agent.kube.objects import (
    Remap,
    VkOptions,
    annotations_of,
    is_true,
    offloaded_to,
    pod_ips,
    vk_options,
)
from peerwall.errors import PictureError
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy
from peerwall.model.spec import SecurityMode

__all__ = ["ClusterObjects", "PictureError", "topology_document"]

Obj = Mapping[str, Any]

LIQO_POD_LABELS = frozenset({liqo.LOCAL_OFFLOADED_POD, liqo.MANAGED_BY, liqo.ORIGIN})
"""Labels Liqo adds to pods: not the user's, so not matched by selectors in the topology."""
DESTINATION_LABEL = "offloading.liqo.io/destination"
LIQO_NAMESPACE = "liqo"
"""Liqo's namespace, as ``snapshot`` lists it (the source's default ``liqo_namespace``)."""


@dataclass
class ClusterObjects:
    """Every object listed from one cluster, by kind name (``Pod``, ``Configuration``, ...)."""

    source: str
    """Where they were read, for messages: ``kubeconfig FILE, context NAME``."""
    objects: dict[str, list[Obj]] = field(default_factory=dict)

    def of(self, kind: liqo.Kind) -> list[Obj]:
        return self.objects.get(kind.kind, [])


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _labels(obj: Obj) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _net(value: Any) -> IPv4Network | None:
    try:
        return IPv4Network(str(value))
    except ValueError:
        return None


def _ip(value: Any) -> IPv4Address | None:
    try:
        return IPv4Address(str(value))
    except ValueError:
        return None


@dataclass
class _Pod:
    name: str
    home: str
    namespace: str
    runs_on: str
    labels: dict[str, str]
    ip: IPv4Address | None


@dataclass
class _Service:
    name: str
    home: str
    namespace: str
    selector: dict[str, str]
    reflection: ReflectionMark | None = None


@dataclass
class _Cluster:
    id: str
    objs: ClusterObjects
    pod_cidr: IPv4Network
    service_cidr: IPv4Network | None
    api_server: bool
    providers: set[str] = field(default_factory=set)
    peers: set[str] = field(default_factory=set)
    gateway_server_for: set[str] = field(default_factory=set)
    remaps: dict[str, Remap] = field(default_factory=dict)
    virtual_nodes: dict[str, str] = field(default_factory=dict)
    modes: dict[str, SecurityMode] = field(default_factory=dict)
    reflection: dict[str, ReflectionPolicy] = field(default_factory=dict)
    """Provider -> the policy its virtual kubelets here reflect services under."""


def _cluster_id(c: ClusterObjects) -> str:
    for cm in c.of(liqo.CONFIGMAP):
        if _meta(cm).get("name") == liqo.CLUSTER_ID_CONFIGMAP:
            cid = (cm.get("data") or {}).get(liqo.CLUSTER_ID_KEY)
            if cid:
                return str(cid)
    raise PictureError(
        f"{c.source}: no ConfigMap {liqo.CLUSTER_ID_CONFIGMAP} with {liqo.CLUSTER_ID_KEY} in "
        "Liqo's namespace: is Liqo installed there?"
    )


def _service_cidr(c: ClusterObjects, pod_cidr: IPv4Network) -> IPv4Network | None:
    for s in c.of(liqo.SERVICE):
        meta = _meta(s)
        if (meta.get("namespace"), meta.get("name")) == ("default", "kubernetes"):
            ip = _ip((s.get("spec") or {}).get("clusterIP"))
            if ip is None:
                return None
            for prefix in range(16, 25):
                net = IPv4Network(f"{ip}/{prefix}", strict=False)
                if not net.overlaps(pod_cidr):
                    return net
    return None


def _read_cluster(c: ClusterObjects) -> _Cluster:
    cid = _cluster_id(c)
    cidrs = [
        n
        for obj in c.of(liqo.NETWORK)
        if _labels(obj).get(liqo.NETWORK_TYPE) == liqo.POD_CIDR_NETWORK
        and (n := _net((obj.get("spec") or {}).get("cidr"))) is not None
    ]
    if len(cidrs) != 1:
        found = ", ".join(map(str, cidrs)) or "none"
        raise PictureError(
            f"{c.source}: cluster {cid}: expected one pod-cidr Network in Liqo's namespace, "
            f"found {found} (a topology has one pod CIDR per cluster)"
        )
    api = any(_labels(ip).get(liqo.IP_TYPE) == liqo.API_SERVER_IP for ip in c.of(liqo.IP))
    out = _Cluster(cid, c, cidrs[0], _service_cidr(c, cidrs[0]), api)
    for node in c.of(liqo.NODE):
        labels = _labels(node)
        provider = labels.get(liqo.REMOTE_CLUSTER_ID)
        if labels.get(liqo.TYPE_LABEL) == liqo.VIRTUAL_NODE and provider:
            out.virtual_nodes[str(_meta(node).get("name"))] = provider
            out.providers.add(provider)
    for conf in c.of(liqo.CONFIGURATION):
        peer = _labels(conf).get(liqo.REMOTE_CLUSTER_ID)
        if not peer:
            continue
        out.peers.add(peer)
        spec = ((conf.get("spec") or {}).get("remote") or {}).get("cidr") or {}
        status = (((conf.get("status") or {}).get("remote") or {}).get("cidr") or {}).get("pod")
        original = tuple(n for v in spec.get("pod") or () if (n := _net(v)) is not None)
        remapped = (
            tuple(n for v in status if (n := _net(v)) is not None) if status is not None else None
        )
        out.remaps[peer] = Remap(original, remapped)
    for gw in c.of(liqo.GATEWAY_SERVER):
        peer = _labels(gw).get(liqo.REMOTE_CLUSTER_ID)
        if peer:
            out.gateway_server_for.add(peer)
    for ps in c.of(liqo.PEERING_SECURITY):
        spec = ps.get("spec") or {}
        try:
            out.modes[str(spec.get("clusterID"))] = SecurityMode(spec.get("securityMode"))
        except ValueError:
            raise PictureError(
                f"{c.source}: PeeringSecurity {_meta(ps).get('name')}: unknown securityMode "
                f"{spec.get('securityMode')!r}"
            ) from None
    out.peers |= out.providers
    out.reflection = _reflection(c, cid, out.providers)
    return out


def _reflection(c: ClusterObjects, cid: str, providers: set[str]) -> dict[str, ReflectionPolicy]:
    """Each provider's reflection policy, read as the source reads it (``join._vk``): the
    VkOptionsTemplates its VirtualNodes name (the chart's default template without a
    VirtualNode; a template not found: the virtual kubelet's default, DenyList). A service is
    reflected if any of them reflects it: with one DenyList among them, that is DenyList."""
    templates = {
        f"{_meta(t).get('namespace')}/{_meta(t).get('name')}": vk_options(
            t, ReflectionPolicy.DENY_LIST
        )
        for t in c.of(liqo.VK_OPTIONS_TEMPLATE)
    }
    default = f"{LIQO_NAMESPACE}/{liqo.VK_OPTIONS_DEFAULT}"
    refs: dict[str, set[str]] = defaultdict(set)
    for vn in c.of(liqo.VIRTUAL_NODE_KIND):
        spec = vn.get("spec") or {}
        if not spec.get("clusterID"):
            continue
        ref = spec.get("vkOptionsTemplateRef") or {}
        ns = ref.get("namespace") or _meta(vn).get("namespace", "")
        refs[str(spec["clusterID"])].add(f"{ns}/{ref['name']}" if ref.get("name") else default)
    out = {}
    for provider in sorted(providers):
        found = [
            templates.get(ref, VkOptions(ReflectionPolicy.DENY_LIST))
            for ref in sorted(refs.get(provider) or {default})
        ]
        if any(o.policy is None or not o.ip_reflection for o in found):
            raise PictureError(
                f"{c.source}: cluster {cid}'s virtual kubelet for {provider} reflects no "
                "EndpointSlice (--disable-ip-reflection, or an unknown service reflection type "
                "in its VkOptionsTemplate): a topology file cannot express that"
            )
        policies = {o.policy for o in found}
        out[provider] = (
            ReflectionPolicy.DENY_LIST
            if ReflectionPolicy.DENY_LIST in policies
            else ReflectionPolicy.ALLOW_LIST
        )
    return out


def _mark(service: Obj) -> ReflectionMark | None:
    """A service's reflection annotations as the file's mark. Both at once: ``skip`` (Liqo then
    reflects none of its EndpointSlices, ``ForcedAllowOrSkip``, so no backend is opened)."""
    ann = annotations_of(service)
    if is_true(ann.get(liqo.SKIP_REFLECTION)):
        return ReflectionMark.SKIP
    if is_true(ann.get(liqo.ALLOW_REFLECTION)):
        return ReflectionMark.ALLOW
    return None


def _peerings(clusters: Mapping[str, _Cluster]) -> list[dict[str, Any]]:
    """Consumer → provider from virtual nodes; a network-only peering (no virtual node either
    way) as ``liqoctl peer`` would have made it: the gateway server provides."""
    pairs: list[tuple[str, str]] = []
    for c in clusters.values():
        for peer in sorted(c.peers):
            if peer not in clusters:
                raise PictureError(
                    f"{c.objs.source}: cluster {c.id} is peered with {peer}, whose objects were "
                    f"not read: give its kubeconfig (or context) too"
                )
            if peer in c.providers:
                pairs.append((c.id, peer))
            elif c.id not in clusters[peer].providers and peer in c.gateway_server_for:
                pairs.append((peer, c.id))
    out = []
    for consumer, provider in pairs:
        modes = {
            m
            for a, b in ((consumer, provider), (provider, consumer))
            if (m := clusters[a].modes.get(b)) is not None
        }
        if len(modes) > 1:
            raise PictureError(
                f"clusters {consumer} and {provider} set different modes for their peering in "
                f"their PeeringSecurities ({', '.join(sorted(m.value for m in modes))})"
            )
        entry: dict[str, Any] = {"consumer": consumer, "provider": provider}
        if modes:
            entry["securityMode"] = modes.pop().value
        policy = clusters[consumer].reflection.get(provider, ReflectionPolicy.DENY_LIST)
        if policy is not ReflectionPolicy.DENY_LIST:
            entry["reflection"] = policy.value
        out.append(entry)
    return out


def _user_labels(pod: Obj) -> dict[str, str]:
    return {
        k: v for k, v in _labels(pod).items() if k not in LIQO_POD_LABELS and k != DESTINATION_LABEL
    }


def _remote_namespaces(c: _Cluster) -> set[str]:
    """Namespaces Liqo made here for others: tenant namespaces and consumers' offloaded ones."""
    return {
        str(_meta(ns).get("name"))
        for ns in c.objs.of(liqo.NAMESPACE)
        if liqo.REMOTE_CLUSTER_ID in _labels(ns)
    }


def _pods(clusters: Mapping[str, _Cluster]) -> list[_Pod]:
    shadows: dict[tuple[str, str, str], IPv4Address] = {}
    for c in clusters.values():
        for p in c.objs.of(liqo.POD):
            labels = _labels(p)
            if labels.get(liqo.MANAGED_BY) == liqo.MANAGED_BY_SHADOWPOD and labels.get(liqo.ORIGIN):
                for ip in sorted(pod_ips(p)):
                    shadows[(labels[liqo.ORIGIN], c.id, str(_meta(p).get("name")))] = ip
    out: list[_Pod] = []
    for c in clusters.values():
        remote_ns = _remote_namespaces(c)
        for p in c.objs.of(liqo.POD):
            labels = _labels(p)
            meta = _meta(p)
            name, ns = str(meta.get("name")), str(meta.get("namespace", "default"))
            if labels.get(liqo.GATEWAY_COMPONENT) == liqo.GATEWAY_POD or ns in remote_ns:
                continue  # Liqo's gateways, and the pods a provider runs for a consumer
            if labels.get(liqo.MANAGED_BY) == liqo.MANAGED_BY_SHADOWPOD:
                continue
            node = (p.get("spec") or {}).get("nodeName", "")
            provider = c.virtual_nodes.get(node)
            ips = sorted(pod_ips(p))
            if provider is not None:
                # Ours, running at the provider: it runs there only while the provider holds its
                # shadow pod (Liqo recreates a deleted one); its address is the shadow pod's, or
                # the status IP here translated back, as the source reads it.
                if provider in clusters and (c.id, provider, name) not in shadows:
                    continue
                remap = c.remaps.get(provider)
                seen = [a for ip in ips if remap and (a := remap.to_original(ip)) is not None]
                there = shadows.get((c.id, provider, name)) or (seen[0] if seen else None)
                if there is None:
                    continue
                out.append(_Pod(name, c.id, ns, provider, _user_labels(p), there))
                continue
            local = [ip for ip in ips if ip in c.pod_cidr]
            if not local:
                continue  # pending, finished, or on the host's network: not a pod address
            out.append(_Pod(name, c.id, ns, c.id, _user_labels(p), local[0]))
    return out


def _services(clusters: Mapping[str, _Cluster]) -> list[_Service]:
    out = []
    for c in clusters.values():
        remote_ns = _remote_namespaces(c)
        for s in c.objs.of(liqo.SERVICE):
            meta = _meta(s)
            name, ns = str(meta.get("name")), str(meta.get("namespace", "default"))
            if ns in remote_ns or (ns, name) == ("default", "kubernetes"):
                continue  # reflected here by a consumer; the API server is a destination itself
            selector = (s.get("spec") or {}).get("selector") or {}
            out.append(
                _Service(name, c.id, ns, {str(k): str(v) for k, v in selector.items()}, _mark(s))
            )
    return out


def _names(
    clusters: Sequence[str], pods: Sequence[_Pod], services: Sequence[_Service]
) -> tuple[list[str], list[str]]:
    """Pod and service names, unique across the document (qualified where they clash)."""
    taken = Counter([*clusters, *(p.name for p in pods), *(s.name for s in services)])

    def unique(name: str, ns: str, cluster: str) -> str:
        return name if taken[name] == 1 else f"{name}.{ns}.{cluster}"

    return (
        [unique(p.name, p.namespace, p.home) for p in pods],
        [unique(s.name, s.namespace, s.home) for s in services],
    )


def api_server_name(cluster: str) -> str:
    return f"apiserver.{cluster}"


def topology_document(read: Sequence[ClusterObjects]) -> dict[str, Any]:
    """The topology file's document for the clusters read (one ``ClusterObjects`` each)."""
    clusters: dict[str, _Cluster] = {}
    for objs in read:
        c = _read_cluster(objs)
        if c.id in clusters:
            raise PictureError(
                f"{objs.source} and {clusters[c.id].objs.source} are the same cluster ({c.id})"
            )
        clusters[c.id] = c
    peerings = _peerings(clusters)
    pods = _pods(clusters)
    services = _services(clusters)
    pod_names, service_names = _names(list(clusters), pods, services)

    namespaces: dict[tuple[str, str], list[str]] = {}
    for c in clusters.values():
        for off in c.objs.of(liqo.NAMESPACE_OFFLOADING_KIND):
            if _meta(off).get("name") == liqo.NAMESPACE_OFFLOADING:
                ns = str(_meta(off).get("namespace"))
                namespaces[(c.id, ns)] = sorted(offloaded_to(off))
    used: dict[tuple[str, str], None] = defaultdict(lambda: None)
    for p in pods:
        used[(p.home, p.namespace)]
    for s in services:
        used[(s.home, s.namespace)]
    for key in used:
        if key[1] != "default":
            namespaces.setdefault(key, [])

    doc: dict[str, Any] = {"clusters": []}
    for c in clusters.values():
        entry: dict[str, Any] = {"name": c.id, "podCIDR": str(c.pod_cidr)}
        if c.service_cidr is not None:
            entry["serviceCIDR"] = str(c.service_cidr)
        if c.api_server:
            entry["apiServer"] = api_server_name(c.id)
        doc["clusters"].append(entry)
    doc["peerings"] = peerings
    doc["namespaces"] = [
        {"name": ns, "cluster": cluster, "offloadedTo": to}
        for (cluster, ns), to in sorted(namespaces.items())
    ]
    doc["pods"] = []
    for p, name in zip(pods, pod_names, strict=True):
        entry = {"name": name, "cluster": p.home, "namespace": p.namespace}
        if p.runs_on != p.home:
            entry["runsOn"] = p.runs_on
        if p.labels:
            entry["labels"] = p.labels
        entry["ip"] = str(p.ip)
        doc["pods"].append(entry)
    doc["services"] = []
    for s, name in zip(services, service_names, strict=True):
        entry = {"name": name, "cluster": s.home, "namespace": s.namespace, "selector": s.selector}
        if s.reflection is not None:
            entry["reflection"] = s.reflection.value
        doc["services"].append(entry)
    return doc
