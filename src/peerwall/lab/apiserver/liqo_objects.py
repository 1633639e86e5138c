"""Kubernetes and Liqo objects as a Liqo v1 cluster holds them, for tests.

Each builder gives one valid object (the fake API server validates everything it stores).
``cluster_objects(topology, cluster)`` gives every object one cluster of a topology would hold:
the Kubernetes picture equivalent to the topology file, from which the source must derive the same
desired state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Network

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy
from peerwall.model.topology import Topology

Obj = dict[str, object]

LIQO_NS = "liqo"
WORKER = "worker"
"""The one real node of every test cluster."""
EXTERNAL_CIDR = IPv4Network("10.70.0.0/16")
"""Liqo's default external CIDR (``deployments/liqo/templates/liqo-ipam-networks.yaml``)."""


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_cluster_ids(topology: Topology, source: str) -> None:
    """Liqo cluster IDs are DNS labels (lowercase): the clusters' names must be valid ones."""
    problems = [
        Problem(
            f"clusters[{i}].name",
            f"{c.name!r} is not a valid Liqo cluster ID (a DNS label: lowercase letters, digits "
            "and '-'), which the emulated clusters are named by",
        )
        for i, c in enumerate(topology.clusters)
        if not _DNS_LABEL.match(c.name)
    ]
    if problems:
        raise TopologyInvalid(source, problems)


def _meta(
    name: str,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, object]:
    m: dict[str, object] = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    if labels:
        m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    return m


def k8s_name(name: str) -> str:
    """Topology names may have capitals; Kubernetes names may not."""
    return name.lower().replace("_", "-")


def tenant(cluster_id: str) -> str:
    return f"liqo-tenant-{cluster_id}"


def virtual_node_name(provider: str) -> str:
    return f"liqo-{provider}"


def vk_template_name(provider: str) -> str:
    """The VkOptionsTemplate of the virtual kubelet for ``provider``, when its peering sets a
    reflection policy other than the chart's default."""
    return f"virtual-kubelet-{provider}"


REFLECTION_ANNOTATIONS: Mapping[ReflectionMark | None, Mapping[str, str]] = {
    ReflectionMark.ALLOW: {"liqo.io/allow-reflection": "true"},
    ReflectionMark.SKIP: {"liqo.io/skip-reflection": "true"},
}
"""A service's reflection mark as Liqo's annotation (``pkg/consts/replication.go``)."""


# --- identity, IPAM, peers ---------------------------------------------------------------------


def cluster_id_configmap(cluster_id: str, namespace: str = LIQO_NS) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(
            "liqo-clusterid-configmap", namespace, {"app.kubernetes.io/name": "clusterid-configmap"}
        ),
        "data": {"CLUSTER_ID": cluster_id},
    }


def pod_cidr_network(
    cidr: IPv4Network | str, name: str = "pod-cidr", namespace: str = LIQO_NS
) -> Obj:
    labels = {
        "ipam.liqo.io/network-type": "pod-cidr",
        "ipam.liqo.io/network-not-remapped": "true",
        "ipam.liqo.io/network-shared": "true",
    }
    return {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "Network",
        "metadata": _meta(name, namespace, labels),
        "spec": {"cidr": str(cidr)},
        "status": {"cidr": str(cidr)},
    }


def api_server_ip(
    cluster_ip: IPv4Address | str,
    remapped: IPv4Address | str,
    name: str = "api-server",
    namespace: str = LIQO_NS,
) -> Obj:
    return {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "IP",
        "metadata": _meta(name, namespace, {"ipam.liqo.io/ip-type": "api-server"}),
        "spec": {"ip": str(cluster_ip)},
        "status": {"ip": str(remapped), "cidr": str(EXTERNAL_CIDR)},
    }


def api_server_endpoint_ip(
    slice_name: str,
    address: IPv4Address | str,
    remapped: IPv4Address | str,
    namespace: str = LIQO_NS,
) -> Obj:
    """With ``apiServerAccessThroughEndpointSlices``: one IP per endpoint of ``default/kubernetes``,
    named ``<slice>-<a-b-c-d>``, labelled with its slice and the api-server type, annotated as
    preinstalled (``pkg/liqo-controller-manager/ipmapping/endpointslice_controller.go``)."""
    obj: Obj = {
        "apiVersion": "ipam.liqo.io/v1alpha1",
        "kind": "IP",
        "metadata": _meta(
            f"{slice_name}-{str(address).replace('.', '-')}",
            namespace,
            {"ipam.liqo.io/endpointslice": slice_name, "ipam.liqo.io/ip-type": "api-server"},
            {"liqo.io/preinstalled": "true"},
        ),
        "spec": {"ip": str(address)},
    }
    if remapped:
        obj["status"] = {"ip": str(remapped), "cidr": str(EXTERNAL_CIDR)}
    return obj


def foreign_cluster(cluster_id: str) -> Obj:
    return {
        "apiVersion": "core.liqo.io/v1beta1",
        "kind": "ForeignCluster",
        "metadata": _meta(cluster_id, labels={"liqo.io/remote-cluster-id": cluster_id}),
        "spec": {"clusterID": cluster_id},
        "status": {"role": "Unknown"},
    }


def tenant_namespace(cluster_id: str) -> Obj:
    labels = {"liqo.io/remote-cluster-id": cluster_id, "liqo.io/tenant-namespace": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": _meta(tenant(cluster_id), labels=labels),
    }


def configuration(
    peer: str,
    original: Sequence[IPv4Network | str],
    remapped: Sequence[IPv4Network | str] | None,
    namespace: str | None = None,
    external: Sequence[IPv4Network | str] = (EXTERNAL_CIDR,),
    external_remapped: Sequence[IPv4Network | str] | None = None,
) -> Obj:
    """As the controller manager writes it (``apis/networking/v1beta1/configuration_types.go``):
    the peer's CIDRs as it uses them in ``spec.remote``, as we address them in ``status.remote``.
    Every cluster has Liqo's default external CIDR unless told otherwise, so a peer's is remapped
    (``external_remapped``, by default 10.71.0.0/16 when it is the default)."""
    if external_remapped is None:
        external_remapped = [
            "10.71.0.0/16" if IPv4Network(str(c)) == EXTERNAL_CIDR else c for c in external
        ]
    obj: Obj = {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": "Configuration",
        "metadata": _meta(peer, namespace or tenant(peer), {"liqo.io/remote-cluster-id": peer}),
        "spec": {
            "local": {"cidr": {"pod": ["10.200.0.0/16"], "external": [str(EXTERNAL_CIDR)]}},
            "remote": {
                "cidr": {"pod": [str(c) for c in original], "external": [str(c) for c in external]}
            },
        },
    }
    if remapped is not None:
        obj["status"] = {
            "remote": {
                "cidr": {
                    "pod": [str(c) for c in remapped],
                    "external": [str(c) for c in external_remapped],
                }
            }
        }
    return obj


def gateway(peer: str, server: bool, ports: Sequence[int] | None = None) -> Obj:
    """A GatewayServer (we serve the peer) or GatewayClient. ``ports``: one WireGuard tunnel per
    port (master's ``spec.endpoint.ports``); None: the legacy single ``port``."""
    kind = "GatewayServer" if server else "GatewayClient"
    endpoint: Obj = {"ports": list(ports)} if ports else {"port": 51840}
    if not server:
        endpoint["addresses"] = ["192.0.2.10"]
    return {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": kind,
        "metadata": _meta(peer, tenant(peer), {"liqo.io/remote-cluster-id": peer}),
        "spec": {"mtu": 1340, "endpoint": endpoint},
    }


def vk_options_template(
    name: str = "virtual-kubelet-default",
    namespace: str = LIQO_NS,
    service_type: str | None = "DenyList",
    extra_args: Sequence[str] = (),
) -> Obj:
    """As the chart renders it (``deployments/liqo/templates/liqo-vk-options-template.yaml``):
    ``reflectorsConfig.service.type`` from ``offloading.reflection.service.type``; ``extraArgs``
    gets ``--disable-ip-reflection`` with ``networking.reflectIPs=false``."""
    service: Obj = {"workers": 3}
    if service_type is not None:
        service["type"] = service_type
    spec: Obj = {
        "createNode": True,
        "disableNetworkCheck": False,
        "containerImage": "ghcr.io/liqotech/virtual-kubelet:v1.2.0",
        "metricsEnabled": False,
        "reflectorsConfig": {
            "pod": {"workers": 10},
            "service": service,
            "endpointslice": {"workers": 10},
        },
        "extraArgs": ["--enable-apiserver-support=true", *extra_args],
    }
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "VkOptionsTemplate",
        "metadata": _meta(name, namespace, {"app.kubernetes.io/name": "virtual-kubelet"}),
        "spec": spec,
    }


def virtual_node_object(
    provider: str, template: tuple[str, str] | None = ("liqo", "virtual-kubelet-default")
) -> Obj:
    """A VirtualNode in the provider's tenant namespace (``forge/virtualnode.go``); the webhook
    fills ``vkOptionsTemplateRef`` with the default template when none is given."""
    spec: Obj = {"clusterID": provider, "createNode": True}
    if template is not None:
        spec["vkOptionsTemplateRef"] = {"namespace": template[0], "name": template[1]}
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "VirtualNode",
        "metadata": _meta(
            virtual_node_name(provider), tenant(provider), {"liqo.io/remote-cluster-id": provider}
        ),
        "spec": spec,
    }


def peering_security(
    peer: str, mode: str, name: str | None = None, audit: bool | None = None
) -> Obj:
    spec: dict[str, object] = {"clusterID": peer, "securityMode": mode}
    if audit is not None:
        spec["securityAudit"] = audit
    return {
        "apiVersion": "peerwall.io/v1alpha1",
        "kind": "PeeringSecurity",
        "metadata": _meta(name or peer),
        "spec": spec,
    }


# --- nodes, namespaces, pods, services ---------------------------------------------------------


def node(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(name, labels=labels)}


def virtual_node(provider: str) -> Obj:
    return node(
        virtual_node_name(provider),
        {"liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": provider},
    )


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels)}


def namespace_offloading(
    ns: str, providers: Iterable[str], not_selected: Iterable[str] = ()
) -> Obj:
    def conditions(selected: bool) -> list[Obj]:
        return [
            {
                "type": "OffloadingRequired",
                "status": "True" if selected else "False",
                "reason": "ClusterSelected" if selected else "ClusterNotSelected",
            },
            {"type": "Ready", "status": "True" if selected else "False"},
        ]

    providers = list(providers)
    status = {p: conditions(True) for p in providers} | {p: conditions(False) for p in not_selected}
    return {
        "apiVersion": "offloading.liqo.io/v1beta1",
        "kind": "NamespaceOffloading",
        "metadata": _meta("offloading", ns),
        "spec": {
            "namespaceMappingStrategy": "DefaultName",
            "podOffloadingStrategy": "LocalAndRemote",
            "clusterSelector": {"nodeSelectorTerms": []},
        },
        "status": {
            "offloadingPhase": "Ready" if providers else "NoClusterSelected",
            "remoteNamespacesConditions": status,
        },
    }


def pod(
    name: str,
    ns: str,
    ip: IPv4Address | str | None,
    node_name: str = WORKER,
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
) -> Obj:
    status: Obj = {"phase": phase}
    if ip is not None:
        status |= {"podIP": str(ip), "podIPs": [{"ip": str(ip)}]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, ns, labels),
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "main", "image": "registry.example/app:1"}],
        },
        "status": status,
    }


def shadow_pod(
    name: str,
    ns: str,
    ip: IPv4Address | str,
    origin: str,
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
) -> Obj:
    """A pod a provider runs for consumer ``origin`` (created by its ShadowPod)."""
    liqo = {
        "liqo.io/managed-by": "shadowpod",
        "offloading.liqo.io/origin": origin,
        "offloading.liqo.io/destination": "local",
    }
    return pod(name, ns, ip, WORKER, {**(labels or {}), **liqo}, phase)


def offloaded_pod(
    name: str,
    ns: str,
    seen_ip: IPv4Address | str | None,
    provider: str,
    labels: Mapping[str, str] | None = None,
    phase: str = "Running",
) -> Obj:
    """A consumer's own pod running at ``provider``: on its virtual node, status IP as seen here."""
    return pod(
        name,
        ns,
        seen_ip,
        virtual_node_name(provider),
        {**(labels or {}), "liqo.io/shadowPod": "true"},
        phase,
    )


def service(
    name: str,
    ns: str,
    selector: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    cluster_ip: IPv4Address | None = None,
) -> Obj:
    spec: Obj = {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
    if selector:
        spec["selector"] = dict(selector)
    if cluster_ip is not None:
        spec["clusterIP"] = str(cluster_ip)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, ns, annotations=annotations),
        "spec": spec,
    }


def endpoint_slice(
    name: str,
    ns: str,
    service_name: str | None,
    endpoints: Iterable[tuple[IPv4Address | str, str | None]],
    annotations: Mapping[str, str] | None = None,
    managed_by: str = "endpointslice-controller.k8s.io",
) -> Obj:
    labels = {"endpointslice.kubernetes.io/managed-by": managed_by}
    if service_name:
        labels["kubernetes.io/service-name"] = service_name
    eps = []
    for ip, node_name in endpoints:
        ep: Obj = {"addresses": [str(ip)], "conditions": {"ready": True}}
        if node_name:
            ep["nodeName"] = node_name
        eps.append(ep)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name, ns, labels, annotations),
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


# --- a topology's cluster ----------------------------------------------------------------------


def api_cluster_ip(topology: Topology, cluster: str) -> IPv4Address:
    """``default/kubernetes``: the first address of the service CIDR, as kube-apiserver picks."""
    return topology.cluster_by_name[cluster].service_cidr.network_address + 1


def is_gateway_server(topology: Topology, cluster: str, peer: str) -> bool:
    """``liqoctl peer`` puts the gateway server at the provider; a pair peered both ways has one
    connection, whose server is the cluster that provides in the first of its peerings."""
    for p in topology.peerings:
        if {p.consumer, p.provider} == {cluster, peer}:
            return p.provider == cluster
    raise ValueError(f"{cluster} and {peer} are not peered")


def tunnels(topology: Topology, cluster: str, peer: str) -> int:
    """The tunnels of the connection between two peered clusters: its first peering's."""
    for p in topology.peerings:
        if {p.consumer, p.provider} == {cluster, peer}:
            return p.tunnels
    raise ValueError(f"{cluster} and {peer} are not peered")


TUNNEL_PORT = 51840
"""Liqo's default WireGuard port; a connection with several tunnels lists one port per tunnel."""


def cluster_objects(
    topology: Topology, cluster: str, api_ip: IPv4Address | None = None
) -> list[Obj]:
    """Every object Liqo (and Kubernetes) would hold in ``cluster`` for ``topology``. Cluster IDs
    are the clusters' names: they must be valid IDs (lowercase) in the topology itself.

    The API server's IP resource holds ``api_ip``, by default the address the topology gives the
    cluster's API server (none if it names none); a real cluster's is the ``kubernetes``
    ClusterIP (``api_cluster_ip``)."""
    t, plan = topology, topology.addresses
    me = t.cluster_by_name[cluster]
    out: list[Obj] = [
        namespace(LIQO_NS),
        namespace("default"),
        cluster_id_configmap(cluster),
        pod_cidr_network(me.pod_cidr),
        node(WORKER),
    ]
    if api_ip is None and me.api_server:
        api_ip = plan.api_ip(cluster)
    if me.api_server and me.api_server_addresses > 1:
        # apiServerAccessThroughEndpointSlices: one IP per endpoint of default/kubernetes.
        for k, address in enumerate(plan.api_ips(cluster)):
            out.append(
                api_server_endpoint_ip("kubernetes", address, EXTERNAL_CIDR.network_address + 1 + k)
            )
    elif api_ip is not None:
        out.append(api_server_ip(api_ip, EXTERNAL_CIDR.network_address + 1))
    for peer in t.peers[cluster]:
        out += [
            foreign_cluster(peer),
            tenant_namespace(peer),
            configuration(
                peer,
                [t.cluster_by_name[peer].pod_cidr],
                [plan.remapped(cluster, peer)],
                external=[t.cluster_by_name[peer].external_cidr or EXTERNAL_CIDR],
            ),
            gateway(
                peer,
                is_gateway_server(t, cluster, peer),
                [TUNNEL_PORT + i for i in range(n)]
                if (n := tunnels(t, cluster, peer)) > 1
                else None,
            ),
        ]
        mode = t.peering_mode(cluster, peer)
        if mode is not None:
            out.append(peering_security(peer, mode.value))
    providers = sorted({p.provider for p in t.peerings if p.consumer == cluster})
    out += [virtual_node(p) for p in providers]
    policies = {p.provider: p.reflection for p in t.peerings if p.consumer == cluster}
    for provider in providers:
        if policies[provider] is ReflectionPolicy.DENY_LIST:
            out.append(virtual_node_object(provider))  # the chart's default template
        else:
            # A template of its own for that provider's virtual kubelet (as `liqoctl peer
            # --vk-options-template` gives it), with the peering's reflection type.
            name = vk_template_name(provider)
            out += [
                vk_options_template(name, service_type=policies[provider].value),
                virtual_node_object(provider, (LIQO_NS, name)),
            ]
    out.append(vk_options_template())

    for ns in t.namespaces:
        if ns.cluster == cluster and ns.name != "default":
            out.append(namespace(ns.name))
        if ns.cluster == cluster and ns.offloaded_to:
            out.append(namespace_offloading(ns.name, ns.offloaded_to))
        if cluster in ns.offloaded_to:
            # DefaultName mapping: <namespace>-<consumer ID> (namespaceoffloading-controller/status.go).
            out.append(
                namespace(f"{ns.name}-{ns.cluster}", {"liqo.io/remote-cluster-id": ns.cluster})
            )

    for p in t.pods:
        name = k8s_name(p.name)
        if p.physical == cluster and p.home == cluster:
            out.append(pod(name, p.namespace, p.ip, WORKER, p.labels))
        elif p.physical == cluster:
            out.append(shadow_pod(name, f"{p.namespace}-{p.home}", p.ip, p.home, p.labels))
        elif p.home == cluster:
            out.append(
                offloaded_pod(
                    name, p.namespace, plan.pod_seen_from(p, cluster), p.physical, p.labels
                )
            )

    out += [
        service("kubernetes", "default", cluster_ip=api_cluster_ip(t, cluster)),
        endpoint_slice("kubernetes", "default", "kubernetes", [(api_cluster_ip(t, cluster), None)]),
    ]
    for s in t.services:
        name = k8s_name(s.name)
        if s.home == cluster:
            endpoints: list[tuple[IPv4Address | str, str | None]] = []
            for b in s.backends:
                bp = t.pod_by_name[b]
                on = WORKER if bp.physical == cluster else virtual_node_name(bp.physical)
                if (seen := plan.pod_seen_from(bp, cluster)) is not None:
                    endpoints.append((seen, on))
            out += [
                service(name, s.namespace, s.selector, REFLECTION_ANNOTATIONS.get(s.reflection)),
                endpoint_slice(f"{name}-abcde", s.namespace, name, endpoints),
            ]
        elif cluster in s.reflected_to:
            # The copy Liqo reflects here, and its slice: not a local backend of anything.
            remote_ns = f"{s.namespace}-{s.home}"
            endpoints = [
                (seen, s.home)
                for b in s.backends
                if (seen := plan.pod_seen_from(t.pod_by_name[b], cluster)) is not None
            ]
            out += [
                service(name, remote_ns, s.selector),
                endpoint_slice(
                    f"{name}-abcde",
                    remote_ns,
                    name,
                    endpoints,
                    managed_by="endpointslice.reflection.liqo.io",
                ),
            ]
    return out
