"""Services: home cluster and namespace, and room for their ClusterIPs where they exist."""

from __future__ import annotations

from collections.abc import Mapping

from peerwall.errors import Problem
from peerwall.model.reflection import ReflectionPolicy, reflects
from peerwall.model.spec import ClusterSpec, TopologySpec
from peerwall.model.topology import DEFAULT_NAMESPACE, DEFAULT_SERVICE_CIDR
from peerwall.model.validate.namespaces import Namespaces, exists


def _room_problems(
    spec: TopologySpec, clusters: Mapping[str, ClusterSpec], namespaces: Namespaces
) -> list[Problem]:
    """Every cluster's service CIDR holds a ClusterIP for its own and its reflected services."""
    present = dict.fromkeys(clusters, 0)
    policy = {(p.consumer, p.provider): p.reflection for p in spec.peerings}
    for s in spec.services:
        if s.cluster not in clusters:
            continue
        present[s.cluster] += 1
        if s.namespace != DEFAULT_NAMESPACE:
            for target in namespaces.get((s.cluster, s.namespace), ()):
                given = policy.get((s.cluster, target)) or ReflectionPolicy.DENY_LIST
                if target in present and reflects(given, s.reflection):
                    present[target] += 1
    problems = []
    for i, c in enumerate(spec.clusters):
        svc = c.service_cidr or DEFAULT_SERVICE_CIDR
        room = svc.num_addresses - 2
        if present[c.name] > room:
            problems.append(
                Problem(
                    f"clusters[{i}].serviceCIDR",
                    f"{present[c.name]} services exist in {c.name} (its own and reflected ones) "
                    f"but {svc} has room for {max(room, 0)}",
                )
            )
    return problems


def check(
    spec: TopologySpec, clusters: Mapping[str, ClusterSpec], namespaces: Namespaces
) -> list[Problem]:
    problems: list[Problem] = []
    for i, s in enumerate(spec.services):
        if s.cluster not in clusters:
            problems.append(Problem(f"services[{i}].cluster", f"unknown cluster {s.cluster!r}"))
        elif not exists(namespaces, s.cluster, s.namespace):
            problems.append(
                Problem(
                    f"services[{i}].namespace",
                    f"no namespace {s.namespace!r} in cluster {s.cluster}",
                )
            )
    return problems + _room_problems(spec, clusters, namespaces)
