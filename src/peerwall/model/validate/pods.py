"""Pods: home cluster and namespace, where they run, and explicit addresses."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address

from peerwall.errors import Problem
from peerwall.model.addressing import api_address
from peerwall.model.spec import ClusterSpec, PodSpec, TopologySpec
from peerwall.model.topology import DEFAULT_NAMESPACE
from peerwall.model.validate.namespaces import Namespaces, exists


def _placement_problem(
    i: int, p: PodSpec, clusters: Mapping[str, ClusterSpec], namespaces: Namespaces
) -> Problem | None:
    """What keeps the pod from having a home and a physical cluster, if anything."""
    if p.cluster not in clusters:
        return Problem(f"pods[{i}].cluster", f"unknown cluster {p.cluster!r}")
    if not exists(namespaces, p.cluster, p.namespace):
        return Problem(
            f"pods[{i}].namespace", f"no namespace {p.namespace!r} in cluster {p.cluster}"
        )
    if p.runs_on is None or p.runs_on == p.cluster:
        return None
    if p.runs_on not in clusters:
        return Problem(f"pods[{i}].runsOn", f"unknown cluster {p.runs_on!r}")
    if p.runs_on not in namespaces.get((p.cluster, p.namespace), ()):
        return Problem(
            f"pods[{i}].runsOn",
            f"{p.runs_on} is not a provider of namespace {p.cluster}/{p.namespace}",
        )
    return None


def _address_problem(
    i: int,
    p: PodSpec,
    ip: IPv4Address,
    cluster: ClusterSpec,
    used: dict[tuple[str, IPv4Address], str],
) -> Problem | None:
    """``ip`` must be a free host address of the pod CIDR of the cluster the pod runs in."""
    cidr = cluster.pod_cidr
    path = f"pods[{i}].ip"
    if ip not in cidr:
        return Problem(
            path, f"{ip} is outside the pod CIDR {cidr} of {cluster.name}, where the pod runs"
        )
    if ip in (cidr.network_address, cidr.broadcast_address):
        return Problem(path, f"{ip} is the network or broadcast address of {cidr}")
    if cluster.api_server and ip == api_address(cidr):
        return Problem(path, f"{ip} is reserved for the API server of {cluster.name}")
    if (cluster.name, ip) in used:
        return Problem(
            path, f"{ip} is already used by {used[(cluster.name, ip)]} in {cluster.name}"
        )
    used[(cluster.name, ip)] = f"pods[{i}] ({p.name})"
    return None


def check(
    spec: TopologySpec, clusters: Mapping[str, ClusterSpec], namespaces: Namespaces
) -> list[Problem]:
    problems: list[Problem] = []
    used: dict[tuple[str, IPv4Address], str] = {}
    for i, p in enumerate(spec.pods):
        # The common cases first, without naming fields (a million pods): a known cluster and
        # namespace, running at home or on a known provider of it, its address left to the
        # allocator.
        if p.ip is None and p.cluster in clusters:
            runs_on = p.runs_on
            if runs_on is None or runs_on == p.cluster:
                if p.namespace == DEFAULT_NAMESPACE or (p.cluster, p.namespace) in namespaces:
                    continue
            elif runs_on in clusters and runs_on in namespaces.get((p.cluster, p.namespace), ()):
                continue
        problem = _placement_problem(i, p, clusters, namespaces)
        if problem is None and p.ip is not None:
            physical = clusters[p.runs_on or p.cluster]
            problem = _address_problem(i, p, p.ip, physical, used)
        if problem is not None:
            problems.append(problem)
    return problems
