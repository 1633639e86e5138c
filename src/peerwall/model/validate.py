"""Cross-checks that the schema cannot express: references, uniqueness, the addresses.

Every check appends a ``Problem`` naming the offending field, so the user sees all of them at once.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from peerwall.errors import Problem
from peerwall.model.addressing import api_address
from peerwall.model.spec import TopologySpec
from peerwall.model.topology import DEFAULT_NAMESPACE, DEFAULT_SERVICE_CIDR, link_key


def check(spec: TopologySpec) -> list[Problem]:
    problems: list[Problem] = []
    add = problems.append

    # Names are table labels: unique across the file, whatever kind of thing they name.
    seen: dict[str, str] = {}

    def claim(name: str, path: str) -> None:
        if name in seen:
            add(Problem(path, f"duplicate name {name!r} (already used by {seen[name]})"))
        else:
            seen[name] = path

    for i, c in enumerate(spec.clusters):
        claim(c.name, f"clusters[{i}].name")
    for i, c in enumerate(spec.clusters):
        claim(c.internet or f"internet@{c.name}", f"clusters[{i}].internet")
        if c.api_server:
            claim(c.api_server, f"clusters[{i}].apiServer")
    for i, p in enumerate(spec.pods):
        claim(p.name, f"pods[{i}].name")
    for i, s in enumerate(spec.services):
        claim(s.name, f"services[{i}].name")

    clusters = {c.name: c for c in spec.clusters}
    for i, c in enumerate(spec.clusters):
        svc = c.service_cidr or DEFAULT_SERVICE_CIDR
        if svc.overlaps(c.pod_cidr):
            field = "serviceCIDR" if c.service_cidr else "podCIDR"
            add(
                Problem(
                    f"clusters[{i}].{field}", f"pod CIDR {c.pod_cidr} overlaps service CIDR {svc}"
                )
            )
        if c.pod_cidr.prefixlen > 30:
            add(Problem(f"clusters[{i}].podCIDR", f"{c.pod_cidr} is too small (at most /30)"))

    providers: dict[str, set[str]] = {c.name: set() for c in spec.clusters}
    directed: dict[tuple[str, str], int] = {}
    link_mode: dict[tuple[str, str], tuple[int, str]] = {}
    for i, peering in enumerate(spec.peerings):
        ok = True
        for role in ("consumer", "provider"):
            name = getattr(peering, role)
            if name not in clusters:
                add(Problem(f"peerings[{i}].{role}", f"unknown cluster {name!r}"))
                ok = False
        if not ok:
            continue
        if peering.consumer == peering.provider:
            add(
                Problem(
                    f"peerings[{i}].provider",
                    f"a cluster cannot peer with itself ({peering.consumer})",
                )
            )
            continue
        if (peering.consumer, peering.provider) in directed:
            first = directed[(peering.consumer, peering.provider)]
            add(
                Problem(
                    f"peerings[{i}]",
                    f"duplicate of peerings[{first}] ({peering.consumer} -> {peering.provider})",
                )
            )
            continue
        directed[(peering.consumer, peering.provider)] = i
        providers[peering.consumer].add(peering.provider)
        if peering.security_mode is not None:
            key = link_key(peering.consumer, peering.provider)
            if key in link_mode and link_mode[key][1] != peering.security_mode.value:
                j, other = link_mode[key]
                add(
                    Problem(
                        f"peerings[{i}].securityMode",
                        f"{peering.security_mode.value} conflicts with peerings[{j}].securityMode "
                        f"({other}): both directions between {key[0]} and {key[1]} share one "
                        "connection",
                    )
                )
            else:
                link_mode[key] = (i, peering.security_mode.value)

    namespaces: dict[tuple[str, str], tuple[str, ...]] = {}
    for i, n in enumerate(spec.namespaces):
        if n.cluster not in clusters:
            add(Problem(f"namespaces[{i}].cluster", f"unknown cluster {n.cluster!r}"))
            continue
        if (n.cluster, n.name) in namespaces:
            add(Problem(f"namespaces[{i}].name", f"duplicate namespace {n.cluster}/{n.name}"))
            continue
        if n.name == DEFAULT_NAMESPACE and n.offloaded_to:
            add(Problem(f"namespaces[{i}].offloadedTo", "the default namespace is never offloaded"))
        for j, target in enumerate(n.offloaded_to):
            path = f"namespaces[{i}].offloadedTo[{j}]"
            if target not in clusters:
                add(Problem(path, f"unknown cluster {target!r}"))
            elif target == n.cluster:
                add(Problem(path, f"a namespace cannot be offloaded to its own cluster ({target})"))
            elif target not in providers[n.cluster]:
                add(
                    Problem(
                        path,
                        f"{target} is not a provider of a peering with {n.cluster} "
                        f"(add peering {{consumer: {n.cluster}, provider: {target}}})",
                    )
                )
            if n.offloaded_to.count(target) > 1 and n.offloaded_to.index(target) != j:
                add(Problem(path, f"{target} is listed twice"))
        namespaces[(n.cluster, n.name)] = tuple(n.offloaded_to)

    def known_namespace(cluster: str, name: str) -> bool:
        return name == DEFAULT_NAMESPACE or (cluster, name) in namespaces

    used_ips: dict[tuple[str, IPv4Address], str] = {}
    for i, p in enumerate(spec.pods):
        if p.cluster not in clusters:
            add(Problem(f"pods[{i}].cluster", f"unknown cluster {p.cluster!r}"))
            continue
        if not known_namespace(p.cluster, p.namespace):
            add(
                Problem(
                    f"pods[{i}].namespace", f"no namespace {p.namespace!r} in cluster {p.cluster}"
                )
            )
            continue
        physical = p.runs_on or p.cluster
        if p.runs_on is not None and p.runs_on != p.cluster:
            if p.runs_on not in clusters:
                add(Problem(f"pods[{i}].runsOn", f"unknown cluster {p.runs_on!r}"))
                continue
            if p.runs_on not in namespaces.get((p.cluster, p.namespace), ()):
                add(
                    Problem(
                        f"pods[{i}].runsOn",
                        f"{p.runs_on} is not a provider of namespace {p.cluster}/{p.namespace}",
                    )
                )
                continue
        if p.ip is not None:
            cidr = clusters[physical].pod_cidr
            path = f"pods[{i}].ip"
            if p.ip not in cidr:
                add(
                    Problem(
                        path,
                        f"{p.ip} is outside the pod CIDR {cidr} of {physical}, where the pod runs",
                    )
                )
            elif p.ip in (cidr.network_address, cidr.broadcast_address):
                add(Problem(path, f"{p.ip} is the network or broadcast address of {cidr}"))
            elif clusters[physical].api_server and p.ip == api_address(cidr):
                add(Problem(path, f"{p.ip} is reserved for the API server of {physical}"))
            elif (physical, p.ip) in used_ips:
                add(
                    Problem(
                        path,
                        f"{p.ip} is already used by {used_ips[(physical, p.ip)]} in {physical}",
                    )
                )
            else:
                used_ips[(physical, p.ip)] = f"pods[{i}] ({p.name})"

    present: dict[str, int] = {c.name: 0 for c in spec.clusters}
    for i, s in enumerate(spec.services):
        if s.cluster in clusters:
            present[s.cluster] += 1
            if s.namespace != DEFAULT_NAMESPACE:
                for target in namespaces.get((s.cluster, s.namespace), ()):
                    if target in present:
                        present[target] += 1
        if s.cluster not in clusters:
            add(Problem(f"services[{i}].cluster", f"unknown cluster {s.cluster!r}"))
        elif not known_namespace(s.cluster, s.namespace):
            add(
                Problem(
                    f"services[{i}].namespace",
                    f"no namespace {s.namespace!r} in cluster {s.cluster}",
                )
            )
    for i, c in enumerate(spec.clusters):
        svc = c.service_cidr or DEFAULT_SERVICE_CIDR
        room = svc.num_addresses - 2
        if present[c.name] > room:
            add(
                Problem(
                    f"clusters[{i}].serviceCIDR",
                    f"{present[c.name]} services exist in {c.name} (its own and reflected ones) "
                    f"but {svc} has room for {max(room, 0)}",
                )
            )
    return problems
