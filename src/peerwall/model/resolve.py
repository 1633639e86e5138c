"""A validated ``TopologySpec`` -> the resolved ``Topology``: pods placed and addressed, services
given their backends. Linear in the size of the file (plus the size of the result).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address

from peerwall.errors import Problem, RemapExhausted, TopologyInvalid
from peerwall.model.addressing import api_address
from peerwall.model.reflection import ReflectionPolicy, reflects
from peerwall.model.spec import PodSpec, ServiceSpec, TopologySpec
from peerwall.model.topology import (
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE_CIDR,
    Cluster,
    Namespace,
    Peering,
    Pod,
    Service,
    Topology,
)

__all__ = ["BackendIndex", "resolve"]


def resolve(spec: TopologySpec, source: str) -> Topology:
    """Only for a spec that ``validate.check`` accepted: every reference is assumed to resolve."""
    clusters = tuple(
        Cluster(
            name=c.name,
            pod_cidr=c.pod_cidr,
            service_cidr=c.service_cidr or DEFAULT_SERVICE_CIDR,
            internet=c.internet or f"internet@{c.name}",
            api_server=c.api_server,
            security_mode=c.security_mode,
            index=i,
            external_cidr=c.external_cidr,
            full_masquerade=c.full_masquerade,
            api_server_addresses=c.api_server_addresses,
        )
        for i, c in enumerate(spec.clusters)
    )
    namespaces = tuple(
        Namespace(name=n.name, cluster=n.cluster, offloaded_to=tuple(n.offloaded_to))
        for n in spec.namespaces
    )
    pods = _place(spec.pods, clusters, source)
    peerings = tuple(
        Peering(
            p.consumer,
            p.provider,
            p.security_mode,
            p.security_audit,
            p.tunnels or 1,
            p.reflection or ReflectionPolicy.DENY_LIST,
        )
        for p in spec.peerings
    )
    services = _services(spec.services, pods, namespaces, peerings)
    topology = Topology(clusters, peerings, namespaces, pods, services)
    try:
        _ = topology.addresses  # computed once here, then shared by compile, trace and the lab
    except RemapExhausted as exc:
        raise TopologyInvalid(source, [Problem(exc.path, str(exc))]) from None
    return topology


def _place(specs: Sequence[PodSpec], clusters: Sequence[Cluster], source: str) -> tuple[Pod, ...]:
    """Pods with their physical cluster and address: explicit addresses first, then each physical
    cluster's pod CIDR filled in file order."""
    by_name = {c.name: c for c in clusters}
    taken: dict[str, set[int]] = defaultdict(set)
    for c in clusters:
        if c.api_server:
            taken[c.name].add(int(api_address(c.pod_cidr)))
    for p in specs:
        if p.ip is not None:
            taken[p.runs_on or p.cluster].add(int(p.ip))
    # The cursor only moves forward, so allocation is linear in pods plus explicit addresses,
    # and an address given out need not be remembered: only explicit ones are skipped.
    cursor = {c.name: int(c.pod_cidr.network_address) + 1 for c in clusters}
    last = {c.name: int(c.pod_cidr.broadcast_address) - 1 for c in clusters}
    pods: list[Pod] = []
    problems: list[Problem] = []
    for i, p in enumerate(specs):
        physical = p.runs_on or p.cluster
        ip = p.ip
        if ip is None:
            n = cursor[physical]
            reserved = taken.get(physical)
            if reserved:
                while n in reserved:
                    n += 1
            if n > last[physical]:
                cidr = by_name[physical].pod_cidr
                problems.append(
                    Problem(f"pods[{i}]", f"no free address left in {cidr} of {physical}")
                )
                continue
            cursor[physical] = n + 1
            ip = IPv4Address(n)
        # A copy, not the spec's dict: kept, the spec's would pin the memory of the whole spec
        # around them once it is freed (550 MB more at the peak for 1,000,000 pods).
        pods.append(Pod(p.name, p.cluster, p.namespace, physical, dict(p.labels), ip))
    if problems:
        raise TopologyInvalid(source, problems)
    return tuple(pods)


def _services(
    specs: Sequence[ServiceSpec],
    pods: Sequence[Pod],
    namespaces: Sequence[Namespace],
    peerings: Sequence[Peering],
) -> tuple[Service, ...]:
    offloaded = {(n.cluster, n.name): n.offloaded_to for n in namespaces}
    policy = {(p.consumer, p.provider): p.reflection for p in peerings}
    backends = BackendIndex(pods)
    out = []
    for s in specs:
        to = () if s.namespace == DEFAULT_NAMESPACE else offloaded[(s.cluster, s.namespace)]
        # Only a consumer's virtual kubelet reflects: an offloadedTo target is always a provider
        # of the service's cluster (validated), so its peering is there.
        reflected = tuple(
            a
            for a in to
            if reflects(policy.get((s.cluster, a), ReflectionPolicy.DENY_LIST), s.reflection)
        )
        out.append(
            Service(
                s.name,
                s.cluster,
                s.namespace,
                dict(s.selector),
                backends.select(s.cluster, s.namespace, s.selector),
                # The same tuple when nothing is filtered: decide shares work by its identity.
                to if len(reflected) == len(to) else reflected,
                s.reflection,
                to,
            )
        )
    return tuple(out)


class BackendIndex:
    """Selects the pods of a home cluster and namespace that carry every label of a selector.

    Comparing each service with each pod of its namespace made resolution quadratic (87% of the
    load time at 50,000 pods). Instead pods are indexed by (home, namespace, label key, value);
    a selector's candidates are the shortest of its labels' lists, kept in file order, and only
    those are checked against the other labels.
    """

    def __init__(self, pods: Sequence[Pod]) -> None:
        self._pods = pods
        self._names = [p.name for p in pods]
        self._index: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)
        for i, pod in enumerate(pods):
            for key, value in pod.labels.items():
                self._index[(pod.home, pod.namespace, key, value)].append(i)
        # Services often share a selector (several ports, versions): answer each one once.
        self._seen: dict[tuple[str, str, frozenset[tuple[str, str]]], tuple[str, ...]] = {}

    def select(self, home: str, namespace: str, selector: Mapping[str, str]) -> tuple[str, ...]:
        if not selector:
            return ()  # an empty selector selects nothing (Kubernetes: no managed endpoints)
        memo = (home, namespace, frozenset(selector.items()))
        if memo in self._seen:
            return self._seen[memo]
        lists = [self._index.get((home, namespace, k, v), []) for k, v in selector.items()]
        candidates = min(lists, key=len)
        if len(lists) > 1:
            pods, items = self._pods, selector.items()
            candidates = [
                i for i in candidates if all(pods[i].labels.get(k) == v for k, v in items)
            ]
        found = tuple(map(self._names.__getitem__, candidates))
        self._seen[memo] = found
        return found
