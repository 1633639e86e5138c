"""Cross-checks that the schema cannot express: references, uniqueness, the addresses.

One module per concern, run in the order of the file's sections so that problems are listed in
that order. Each check reports every problem it finds (the user sees all of them at once) and
returns what the later checks build on: the providers of valid peerings, the declared namespaces.
"""

from __future__ import annotations

from peerwall.errors import Problem
from peerwall.model.spec import TopologySpec
from peerwall.model.validate import clusters, names, namespaces, peerings, pods, services

__all__ = ["check"]


def check(spec: TopologySpec) -> list[Problem]:
    by_name = {c.name: c for c in spec.clusters}
    problems = names.check(spec)
    problems += clusters.check(spec)
    peering_problems, providers = peerings.check(spec, by_name)
    problems += peering_problems
    namespace_problems, declared = namespaces.check(spec, by_name, providers)
    problems += namespace_problems
    problems += pods.check(spec, by_name, declared)
    problems += services.check(spec, by_name, declared)
    return problems
