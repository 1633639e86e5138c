"""Declared namespaces: their cluster, and the providers they are offloaded to."""

from __future__ import annotations

from collections.abc import Mapping

from peerwall.errors import Problem
from peerwall.model.spec import ClusterSpec, NamespaceSpec, TopologySpec
from peerwall.model.topology import DEFAULT_NAMESPACE
from peerwall.model.validate.peerings import Providers

Namespaces = Mapping[tuple[str, str], tuple[str, ...]]
"""(cluster, namespace) -> the clusters it is offloaded to, for every declared namespace."""


def exists(namespaces: Namespaces, cluster: str, name: str) -> bool:
    """``default`` exists implicitly in every cluster (DESIGN.md §2)."""
    return name == DEFAULT_NAMESPACE or (cluster, name) in namespaces


def _target_problems(
    i: int, n: NamespaceSpec, clusters: Mapping[str, ClusterSpec], providers: Providers
) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    for j, target in enumerate(n.offloaded_to):
        path = f"namespaces[{i}].offloadedTo[{j}]"
        if target not in clusters:
            problems.append(Problem(path, f"unknown cluster {target!r}"))
        elif target == n.cluster:
            problems.append(
                Problem(path, f"a namespace cannot be offloaded to its own cluster ({target})")
            )
        elif target not in providers[n.cluster]:
            problems.append(
                Problem(
                    path,
                    f"{target} is not a provider of a peering with {n.cluster} "
                    f"(add peering {{consumer: {n.cluster}, provider: {target}}})",
                )
            )
        if target in seen:
            problems.append(Problem(path, f"{target} is listed twice"))
        seen.add(target)
    return problems


def check(
    spec: TopologySpec, clusters: Mapping[str, ClusterSpec], providers: Providers
) -> tuple[list[Problem], Namespaces]:
    """The problems, and every namespace declared once in a known cluster."""
    problems: list[Problem] = []
    declared: dict[tuple[str, str], tuple[str, ...]] = {}
    for i, n in enumerate(spec.namespaces):
        if n.cluster not in clusters:
            problems.append(Problem(f"namespaces[{i}].cluster", f"unknown cluster {n.cluster!r}"))
            continue
        if (n.cluster, n.name) in declared:
            problems.append(
                Problem(f"namespaces[{i}].name", f"duplicate namespace {n.cluster}/{n.name}")
            )
            continue
        if n.name == DEFAULT_NAMESPACE and n.offloaded_to:
            problems.append(
                Problem(f"namespaces[{i}].offloadedTo", "the default namespace is never offloaded")
            )
        problems += _target_problems(i, n, clusters, providers)
        declared[(n.cluster, n.name)] = tuple(n.offloaded_to)
    return problems, declared
