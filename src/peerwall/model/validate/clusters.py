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
    problems += _external(spec)
    return problems


def _external(spec: TopologySpec) -> list[Problem]:
    """External CIDRs name one cluster's masquerade source to every peer: the model does not
    remap them (Liqo does), so they must be clear of every other range of the file."""
    problems: list[Problem] = []
    taken: list[tuple[IPv4Network, str]] = []
    for i, c in enumerate(spec.clusters):
        taken += [(c.pod_cidr, f"clusters[{i}].podCIDR")]
        taken += [(c.service_cidr or DEFAULT_SERVICE_CIDR, f"clusters[{i}] service CIDR")]
    for i, c in enumerate(spec.clusters):
        path = f"clusters[{i}].externalCIDR"
        if c.api_server_addresses > 1 and c.api_server is None:
            problems.append(
                Problem(
                    f"clusters[{i}].apiServerAddresses",
                    "needs apiServer: the addresses are those of the cluster's API server",
                )
            )
        if c.full_masquerade and c.external_cidr is None:
            problems.append(
                Problem(
                    f"clusters[{i}].fullMasquerade",
                    "needs externalCIDR: masqueraded traffic takes its first address as source",
                )
            )
        if c.external_cidr is None:
            continue
        problem = special_range_problem(path, c.external_cidr, "the masquerade source")
        if problem:
            problems.append(problem)
        clash = next(((n, w) for n, w in taken if n.overlaps(c.external_cidr)), None)
        if clash:
            problems.append(Problem(path, f"{c.external_cidr} overlaps {clash[1]} {clash[0]}"))
        taken.append((c.external_cidr, path))
    return problems
