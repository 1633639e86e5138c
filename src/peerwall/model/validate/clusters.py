"""Each cluster's own address ranges: pod and service CIDRs."""

from __future__ import annotations

from ipaddress import IPv4Network

from peerwall.errors import Problem
from peerwall.model.spec import TopologySpec
from peerwall.model.topology import DEFAULT_SERVICE_CIDR

SPECIAL_RANGES = (
    (IPv4Network("0.0.0.0/8"), "'this network', never a destination"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("169.254.0.0/16"), "link-local, which the lab also uses for its own links"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved, with the broadcast address 255.255.255.255"),
)
"""Ranges no pod or ClusterIP can live in: such a topology validated, then failed in the kernel
or in the lab. (RFC 1918, CGNAT and documentation ranges are ordinary unicast and allowed.)"""


def special_range_problem(path: str, cidr: IPv4Network, what: str) -> Problem | None:
    clashes = [(r, why) for r, why in SPECIAL_RANGES if cidr.overlaps(r)]
    if not clashes:
        return None
    if len(clashes) == 1 and cidr.subnet_of(clashes[0][0]):
        verb = "is" if cidr == clashes[0][0] else "lies in"
    else:
        verb = "overlaps"
    ranges = ", ".join(f"{r} ({why})" for r, why in clashes)
    return Problem(path, f"{cidr} {verb} {ranges}: {what} cannot come from there")


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
        for field, cidr, what in (
            ("podCIDR", c.pod_cidr, "pod addresses"),
            ("serviceCIDR", c.service_cidr, "ClusterIPs"),
        ):
            problem = cidr and special_range_problem(f"clusters[{i}].{field}", cidr, what)
            if problem:
                problems.append(problem)
    return problems
