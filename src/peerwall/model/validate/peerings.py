"""Peerings: known clusters, no self-peering, no repeats, one mode per connection."""

from __future__ import annotations

from collections.abc import Mapping

from peerwall.errors import Problem
from peerwall.model.spec import ClusterSpec, PeeringSpec, TopologySpec
from peerwall.model.topology import link_key

Providers = Mapping[str, frozenset[str]]
"""Consumer cluster -> the providers it has a valid peering with."""


def _endpoint_problems(
    i: int, peering: PeeringSpec, clusters: Mapping[str, ClusterSpec]
) -> list[Problem]:
    problems = [
        Problem(f"peerings[{i}].{role}", f"unknown cluster {name!r}")
        for role, name in (("consumer", peering.consumer), ("provider", peering.provider))
        if name not in clusters
    ]
    if not problems and peering.consumer == peering.provider:
        problems.append(
            Problem(
                f"peerings[{i}].provider", f"a cluster cannot peer with itself ({peering.consumer})"
            )
        )
    return problems


def check(
    spec: TopologySpec, clusters: Mapping[str, ClusterSpec]
) -> tuple[list[Problem], Providers]:
    """The problems, and the providers of each consumer among the peerings without one."""
    problems: list[Problem] = []
    providers: dict[str, set[str]] = {name: set() for name in clusters}
    directed: dict[tuple[str, str], int] = {}
    link_mode: dict[tuple[str, str], tuple[int, str]] = {}
    for i, peering in enumerate(spec.peerings):
        endpoint_problems = _endpoint_problems(i, peering, clusters)
        if endpoint_problems:
            problems += endpoint_problems
            continue
        pair = (peering.consumer, peering.provider)
        if pair in directed:
            problems.append(
                Problem(
                    f"peerings[{i}]",
                    f"duplicate of peerings[{directed[pair]}] "
                    f"({peering.consumer} -> {peering.provider})",
                )
            )
            continue
        directed[pair] = i
        providers[peering.consumer].add(peering.provider)
        if peering.security_mode is None:
            continue
        # Both directions of a connection share one tunnel, so one mode.
        key = link_key(*pair)
        mode = peering.security_mode.value
        if key in link_mode and link_mode[key][1] != mode:
            j, other = link_mode[key]
            problems.append(
                Problem(
                    f"peerings[{i}].securityMode",
                    f"{mode} conflicts with peerings[{j}].securityMode ({other}): both directions "
                    f"between {key[0]} and {key[1]} share one connection",
                )
            )
        else:
            link_mode[key] = (i, mode)
    return problems, {k: frozenset(v) for k, v in providers.items()}
