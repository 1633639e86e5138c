"""Liqo's objects, read one at a time: what the Kubernetes source needs of each (no I/O, no join).

Each reader takes one object as the API server gives it (a JSON mapping) and returns the facts it
states, tolerating what Liqo or a user may leave out (missing fields read as absent, invalid
addresses are skipped and logged). Joining the facts of several objects into the gateway's
desired state is ``join``'s work; the citations of Liqo's source are in ``peerwall.liqo``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from typing import Any

from peerwall import liqo
from peerwall.model.addressing import translate
from peerwall.model.reflection import ReflectionPolicy

__all__ = [
    "Endpoint",
    "Obj",
    "Remap",
    "Slice",
    "VkOptions",
    "annotations_of",
    "is_true",
    "key_of",
    "labels_of",
    "offloaded_to",
    "pod_ips",
    "read_configuration",
    "read_slice",
    "reflected",
    "tunnel_count",
    "v4",
    "v4_networks",
    "valid_cluster_id",
    "vk_options",
]

log = logging.getLogger("peerwall.agent.kube")

Obj = Mapping[str, Any]


def key_of(obj: Obj) -> str:
    """``namespace/name`` (``name`` if cluster-scoped), interned: the reflector's store, the
    join's maps and indexes hold one string per object, not one per place."""
    meta = obj.get("metadata", {})
    ns = meta.get("namespace")
    return sys.intern(f"{ns}/{meta.get('name')}" if ns else str(meta.get("name")))


def labels_of(obj: Obj) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def annotations_of(obj: Obj) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def v4_networks(values: Iterable[Any], where: str) -> tuple[IPv4Network, ...]:
    out = []
    for v in values or ():
        try:
            net = ip_network(str(v), strict=False)
        except ValueError:
            log.warning("%s: ignoring invalid CIDR %r", where, v)
            continue
        if isinstance(net, IPv4Network):
            out.append(net)
    return tuple(out)


def v4(value: Any) -> IPv4Address | None:
    try:
        a = ip_address(str(value))
    except ValueError:
        return None
    return a if isinstance(a, IPv4Address) else None


def pod_ips(pod: Obj) -> frozenset[IPv4Address]:
    """A running pod's IPv4 addresses; none once it is terminal (its IP may be reused)."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return frozenset()
    values = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    return frozenset(a for a in map(v4, values) if a is not None)


CLUSTER_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""Liqo's ForeignCluster ``clusterID`` pattern (``core.liqo.io_foreignclusters.yaml``), at most
63 characters as a DNS label."""


def valid_cluster_id(value: Any) -> bool:
    return isinstance(value, str) and CLUSTER_ID.fullmatch(value) is not None


def is_true(value: str | None) -> bool:
    """Liqo's reading of an annotation: set to anything but (case-insensitive) "false"."""
    return value is not None and value.lower() != "false"


def reflected(
    slice_annotations: Mapping[str, str],
    service_annotations: Mapping[str, str] | None,
    policy: ReflectionPolicy,
) -> bool:
    """Whether the virtual kubelet reflects an EndpointSlice (``exposition/endpointslice.go``
    ``ShouldSkipReflection`` and ``generic/namespaced.go``): an explicit annotation on the slice
    wins (both at once is an error there: not reflected); else the policy applies to the slice's
    Service when known, else to the slice itself."""
    allow = is_true(slice_annotations.get(liqo.ALLOW_REFLECTION))
    skip = is_true(slice_annotations.get(liqo.SKIP_REFLECTION))
    if allow or skip:
        return allow and not skip
    ann = service_annotations if service_annotations is not None else slice_annotations
    if policy is ReflectionPolicy.ALLOW_LIST:
        return is_true(ann.get(liqo.ALLOW_REFLECTION))
    return not is_true(ann.get(liqo.SKIP_REFLECTION))


def offloaded_to(offloading: Obj) -> frozenset[str]:
    """The providers a NamespaceOffloading selects (``OffloadingRequired`` True)."""
    conditions = (offloading.get("status") or {}).get("remoteNamespacesConditions") or {}
    return frozenset(
        cluster
        for cluster, conds in conditions.items()
        if any(
            c.get("type") == liqo.OFFLOADING_REQUIRED and c.get("status") == "True"
            for c in conds or ()
        )
    )


@dataclass(frozen=True)
class VkOptions:
    """What a VkOptionsTemplate tells about EndpointSlice reflection. ``policy`` None: the virtual
    kubelet refuses to start (an unknown reflection type), so it reflects nothing."""

    policy: ReflectionPolicy | None
    ip_reflection: bool = True

    def reflects(
        self, slice_annotations: Mapping[str, str], service: Mapping[str, str] | None
    ) -> bool:
        return (
            self.ip_reflection
            and self.policy is not None
            and reflected(slice_annotations, service, self.policy)
        )


_PFLAG_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_PFLAG_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def vk_options(template: Obj, fallback: ReflectionPolicy) -> VkOptions:
    """The reflection a VkOptionsTemplate gives: ``reflectorsConfig.service.type``, then the
    template's ``extraArgs`` (appended after it on the virtual kubelet's command line, so the last
    ``--service-reflection-type`` wins, as in pflag), and ``--disable-ip-reflection``."""
    spec = template.get("spec") or {}
    configs = spec.get("reflectorsConfig") or {}
    value: Any = (configs.get(liqo.SERVICE_REFLECTOR) or {}).get("type") or fallback.value
    ip_reflection = True
    args = [str(a) for a in spec.get("extraArgs") or ()]
    for i, arg in enumerate(args):
        flag, eq, given = arg.partition("=")
        if flag == liqo.SERVICE_REFLECTION_FLAG:
            value = given if eq else (args[i + 1] if i + 1 < len(args) else None)
        elif flag == liqo.DISABLE_IP_REFLECTION_FLAG:
            if not eq or given in _PFLAG_TRUE:
                ip_reflection = False
            elif given in _PFLAG_FALSE:
                ip_reflection = True
    try:
        policy: ReflectionPolicy | None = ReflectionPolicy(value)
    except ValueError:
        policy = None
    return VkOptions(policy, ip_reflection)


@dataclass(frozen=True)
class Remap:
    """A peer's pod CIDRs: as it uses them (``spec``) and as we address them (``status``)."""

    original: tuple[IPv4Network, ...]
    remapped: tuple[IPv4Network, ...] | None

    def to_original(self, ip: IPv4Address) -> IPv4Address | None:
        """The inverse of Liqo's ``remapWithin``: a remapped address -> the peer's own."""
        if self.remapped is not None and len(self.remapped) == len(self.original):
            for spec, status in zip(self.original, self.remapped, strict=True):
                if ip in status:
                    return translate(ip, status, spec)
        if any(ip in spec for spec in self.original):
            return ip  # not remapped (no clash), or no status yet: the same address
        return None


def read_configuration(obj: Obj, where: str) -> tuple[Remap, IPv4Address | None]:
    """A peer's Configuration: its pod CIDRs, as it uses them (``spec.remote.cidr.pod``) and as
    we address them (``status.remote.cidr.pod``, once Liqo's IPAM has written it), and its
    masquerade source: the first address of its primary external CIDR (None: not given)."""
    spec_cidr = ((obj.get("spec") or {}).get("remote") or {}).get("cidr") or {}
    spec_pods = spec_cidr.get("pod") or ()
    external = v4_networks((spec_cidr.get("external") or ())[:1], where)
    status_remote = (obj.get("status") or {}).get("remote")
    remapped = None
    if status_remote and (status_remote.get("cidr") or {}).get("pod"):
        remapped = v4_networks(status_remote["cidr"]["pod"], where)
    masquerade = external[0].network_address if external else None
    return Remap(v4_networks(spec_pods, where), remapped), masquerade


def tunnel_count(gateway: Obj) -> int:
    """The tunnels of a GatewayServer or GatewayClient: one per endpoint port (at least one, at
    most ``liqo.MAX_TUNNELS``)."""
    endpoint = (gateway.get("spec") or {}).get("endpoint") or {}
    ports = endpoint.get("ports")
    count = len(ports) if isinstance(ports, list) and ports else 1
    return min(count, liqo.MAX_TUNNELS)


@dataclass(frozen=True)
class Endpoint:
    address: IPv4Address
    node: str | None


@dataclass(frozen=True)
class Slice:
    namespace: str
    service: str | None
    annotations: Mapping[str, str]
    endpoints: tuple[Endpoint, ...]


def read_slice(obj: Obj) -> Slice:
    meta = obj.get("metadata", {})
    endpoints: list[Endpoint] = []
    if obj.get("addressType") == "IPv4":
        for ep in obj.get("endpoints") or ():
            for a in ep.get("addresses") or ():
                addr = v4(a)
                if addr is not None:
                    endpoints.append(Endpoint(addr, ep.get("nodeName")))
    return Slice(
        meta.get("namespace", ""),
        labels_of(obj).get(liqo.SERVICE_NAME),
        dict(annotations_of(obj)),
        tuple(endpoints),
    )
