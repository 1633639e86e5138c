"""The checks' fast paths against the per-item definitions they skip: a million pods are checked
without naming a field each (``validate.names``, ``validate.pods``), so the fast path must find
exactly the problems the per-item definition finds, on valid topologies and on topologies broken
where those checks look (names repeated, clusters, namespaces and runsOn unknown or wrong)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.errors import Problem
from peerwall.model.spec import TopologySpec
from peerwall.model.validate import names, namespaces, peerings, pods
from strategies import topologies

# What a pod's fields are set to: names of every kind, the default namespace, unknown ones.
FIELD_VALUES = ("default", "offloaded", "shop", "ns-b.2", "nowhere", "C-unknown")


def by_definition_names(spec: TopologySpec) -> list[Problem]:
    """``names.check`` as it was before its fast path: every name with its field."""
    problems: list[Problem] = []
    first: dict[str, str] = {}
    for name, path in names._named(spec):
        if name in first:
            problems.append(
                Problem(path, f"duplicate name {name!r} (already used by {first[name]})")
            )
        else:
            first[name] = path
    return problems


def by_definition_pods(spec: TopologySpec) -> list[Problem]:
    """``pods.check`` as it was before its fast path: each pod through ``_placement_problem``."""
    by_name = {c.name: c for c in spec.clusters}
    _, providers = peerings.check(spec, by_name)
    _, declared = namespaces.check(spec, by_name, providers)
    problems: list[Problem] = []
    used: dict[Any, str] = {}
    for i, p in enumerate(spec.pods):
        problem = pods._placement_problem(i, p, by_name, declared)
        if problem is None and p.ip is not None:
            problem = pods._address_problem(i, p, p.ip, by_name[p.runs_on or p.cluster], used)
        if problem is not None:
            problems.append(problem)
    return problems


@st.composite
def broken(draw: st.DrawFn) -> dict[str, Any]:
    """A valid topology, then up to 4 pods' fields set to any name of the file or an unknown
    one, or a pod named like another thing of the file."""
    data = copy.deepcopy(draw(topologies()))
    clusters = [c["name"] for c in data["clusters"]]
    others = [*clusters, *(p["name"] for p in data.get("pods", []))]
    others += [s["name"] for s in data.get("services", [])]
    for _ in range(draw(st.integers(0, 4))):
        if not data.get("pods"):
            break
        pod = draw(st.sampled_from(data["pods"]))
        field = draw(st.sampled_from(["cluster", "namespace", "runsOn", "name", "drop-runsOn"]))
        if field == "drop-runsOn":
            pod.pop("runsOn", None)
        elif field == "name":
            pod["name"] = draw(st.sampled_from(others))
        else:
            pod[field] = draw(st.sampled_from([*clusters, *FIELD_VALUES]))
    return data


@budget("topology-load")
@given(broken())
def test_the_fast_paths_find_what_the_per_item_checks_find(data: dict[str, Any]) -> None:
    spec = TopologySpec.model_validate(data)
    duplicates = [p for p in names.check(spec) if p.message.startswith("duplicate name")]
    assert duplicates == by_definition_names(spec)
    by_name = {c.name: c for c in spec.clusters}
    _, providers = peerings.check(spec, by_name)
    _, declared = namespaces.check(spec, by_name, providers)
    assert pods.check(spec, by_name, declared) == by_definition_pods(spec)
