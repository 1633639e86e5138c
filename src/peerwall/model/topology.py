"""The resolved topology: every reference checked, every pod placed and addressed.

Built only by ``model.load`` (after validation), so code that receives a ``Topology`` can trust
that every name it holds resolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from operator import attrgetter

from peerwall.model.addressing import AddressBook, address_book
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy
from peerwall.model.spec import SecurityMode

__all__ = ["Cluster", "Namespace", "Peering", "Pod", "SecurityMode", "Service", "Topology"]

DEFAULT_NAMESPACE = "default"
DEFAULT_SERVICE_CIDR = IPv4Network("10.96.0.0/16")


@dataclass(frozen=True)
class Cluster:
    name: str
    pod_cidr: IPv4Network
    service_cidr: IPv4Network
    internet: str
    """Name of this cluster's Internet in tables (default ``internet@<cluster>``)."""
    api_server: str | None
    """Name of this cluster's API server in tables; None when the file names none."""
    security_mode: SecurityMode | None
    """Install-time mode; None means: the global default."""
    index: int
    """Position in the file, from 0; gives stable per-cluster addresses in the lab."""
    external_cidr: IPv4Network | None = None
    """Liqo's external CIDR of the cluster (``externalCIDR``); None: its nodes' own traffic
    towards peers is not modelled."""
    full_masquerade: bool = False
    """Liqo's ``networking.fabric.config.fullMasquerade``: the nodes give all traffic towards
    peers the masquerade source, pods' included."""
    api_server_addresses: int = 1
    """How many addresses the API server answers on (Liqo's
    ``networking.apiServerAccessThroughEndpointSlices``: one per endpoint of ``kubernetes``);
    tables name the first, the others are the last addresses of the pod CIDR below it."""

    @property
    def masquerade_source(self) -> IPv4Address | None:
        """What Liqo's nodes rewrite the source of traffic towards a peer to, when it is not from
        a pod (NodePort, hostNetwork) or always (``full_masquerade``): the first address of the
        external CIDR (``GetUnknownSourceIP``)."""
        return None if self.external_cidr is None else self.external_cidr.network_address


@dataclass(frozen=True)
class Peering:
    consumer: str
    provider: str
    security_mode: SecurityMode | None
    security_audit: bool | None = None
    """Audit segregation on this connection (None: the global default, ``networking.securityAudit``)."""
    tunnels: int = 1
    """Tunnels of the connection (Liqo: one WireGuard interface per port of the Gateway's
    ``spec.endpoint.ports``); verdicts do not depend on it, paths do. Of two peerings of one
    pair, the first's."""
    reflection: ReflectionPolicy = ReflectionPolicy.DENY_LIST
    """Which services of the consumer's offloaded namespaces its virtual kubelet for the provider
    reflects there (``model.reflection``); each direction of a pair has its own."""


@dataclass(frozen=True)
class Namespace:
    name: str
    cluster: str
    offloaded_to: tuple[str, ...]


@dataclass(frozen=True)
class Pod:
    name: str
    home: str
    """The cluster whose API created the pod."""
    namespace: str
    physical: str
    """The cluster it runs in (``runsOn``; default: home)."""
    labels: Mapping[str, str]
    ip: IPv4Address
    """Address in the physical cluster's pod CIDR."""

    @property
    def offloaded(self) -> bool:
        return self.home != self.physical


@dataclass(frozen=True)
class Service:
    name: str
    home: str
    namespace: str
    selector: Mapping[str, str]
    backends: tuple[str, ...]
    """Pods of the home cluster and namespace that match the selector (offloaded ones too)."""
    reflected_to: tuple[str, ...]
    """Providers the namespace is offloaded to whose reflection policy (the peering's) admits
    the service: it exists there too."""
    reflection: ReflectionMark | None = None
    """Its reflection annotation (None: none)."""
    offloaded_to: tuple[str, ...] = ()
    """Providers its namespace is offloaded to, reflected there or not (``reflected_to``)."""

    @property
    def present_in(self) -> tuple[str, ...]:
        return (self.home, *self.reflected_to)


def link_key(a: str, b: str) -> tuple[str, str]:
    """Two peerings between the same clusters share one connection: key it without direction."""
    return (a, b) if a <= b else (b, a)


@dataclass(frozen=True)
class Topology:
    clusters: tuple[Cluster, ...]
    peerings: tuple[Peering, ...]
    namespaces: tuple[Namespace, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]

    @cached_property
    def cluster_by_name(self) -> Mapping[str, Cluster]:
        return {c.name: c for c in self.clusters}

    @cached_property
    def pod_by_name(self) -> Mapping[str, Pod]:
        return {p.name: p for p in self.pods}

    @cached_property
    def service_by_name(self) -> Mapping[str, Service]:
        return {s.name: s for s in self.services}

    @cached_property
    def addresses(self) -> AddressBook:
        """How each cluster addresses the others, and every ClusterIP. Computed once, at load
        (where it is validated), and shared by everything that needs it."""
        return address_book(
            self.clusters, self.peers, ((s.name, s.present_in) for s in self.services)
        )

    @cached_property
    def links(self) -> Mapping[tuple[str, str], SecurityMode | None]:
        """Every network connection between two clusters and the mode its peerings set."""
        out: dict[tuple[str, str], SecurityMode | None] = {}
        for p in self.peerings:
            key = link_key(p.consumer, p.provider)
            out[key] = out.get(key) or p.security_mode
        return out

    def peered(self, a: str, b: str) -> bool:
        return link_key(a, b) in self.links

    def peering_mode(self, a: str, b: str) -> SecurityMode | None:
        return self.links.get(link_key(a, b))

    def peering_audit(self, a: str, b: str) -> bool | None:
        """Whether the connection between ``a`` and ``b`` audits segregation, if a peering says."""
        said = [
            p.security_audit
            for p in self.peerings
            if link_key(p.consumer, p.provider) == link_key(a, b) and p.security_audit is not None
        ]
        return any(said) if said else None

    @cached_property
    def peers(self) -> Mapping[str, tuple[str, ...]]:
        """For each cluster, the clusters it has a connection with, in file order."""
        # From the links, not from every pair of clusters (a million pairs for 1,000 clusters).
        out: dict[str, set[str]] = {c.name: set() for c in self.clusters}
        for a, b in self.links:
            if a != b and a in out and b in out:
                out[a].add(b)
                out[b].add(a)
        index = {c.name: i for i, c in enumerate(self.clusters)}
        return {k: tuple(sorted(v, key=index.__getitem__)) for k, v in out.items()}

    @cached_property
    def destinations(self) -> tuple[str, ...]:
        """Table columns: pods, services, internets, API servers, each in file order."""
        name = attrgetter("name")  # no step per pod in Python: a million pods
        return (
            *map(name, self.pods),
            *map(name, self.services),
            *(c.internet for c in self.clusters),
            *(c.api_server for c in self.clusters if c.api_server),
        )

    @cached_property
    def sources(self) -> tuple[str, ...]:
        return tuple(map(attrgetter("name"), self.pods))
