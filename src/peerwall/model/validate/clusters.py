"""Each cluster's own address ranges: pod and service CIDRs."""

from __future__ import annotations

from peerwall.errors import Problem
from peerwall.model.spec import TopologySpec
from peerwall.model.topology import DEFAULT_SERVICE_CIDR


def check(spec: TopologySpec) -> list[Problem]:
    problems: list[Problem] = []
    for i, c in enumerate(spec.clusters):
        svc = c.service_cidr or DEFAULT_SERVICE_CIDR
        if svc.overlaps(c.pod_cidr):
            field = "serviceCIDR" if c.service_cidr else "podCIDR"
            problems.append(
                Problem(
                    f"clusters[{i}].{field}", f"pod CIDR {c.pod_cidr} overlaps service CIDR {svc}"
                )
            )
        if c.pod_cidr.prefixlen > 30:
            problems.append(
                Problem(f"clusters[{i}].podCIDR", f"{c.pod_cidr} is too small (at most /30)")
            )
    return problems
