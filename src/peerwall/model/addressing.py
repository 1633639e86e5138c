"""The address book of a virtual cluster: how each cluster addresses the others, and service IPs.

Pod CIDRs of different clusters may overlap (the seed's do). Like Liqo, each cluster K addresses a
peer R's pods through ``view(K, R)``: R's own pod CIDR when that clashes with nothing K already
uses, else a remapped CIDR of the same size. The sender source-NATs its pods into the receiver's
view of it; the receiver destination-NATs its own view back to real addresses. Every agent
computes the same book from the same topology, so no negotiation is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from peerwall.model.topology import Pod, Topology

__all__ = ["AddressBook", "RemapExhausted", "address_book", "api_address", "translate"]

# Remapped CIDRs are taken from these, avoiding every CIDR the topology mentions.
REMAP_POOLS = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("100.64.0.0/10"),
)


def api_address(pod_cidr: IPv4Network) -> IPv4Address:
    """The API server sits at the last host address of its cluster's pod CIDR.

    Liqo reaches a peer's API server "through the remapped cluster's IP address"; keeping it inside
    the pod CIDR lets the same remapping carry it.
    """
    return pod_cidr.broadcast_address - 1


def translate(ip: IPv4Address, src: IPv4Network, dst: IPv4Network) -> IPv4Address:
    """Move ``ip`` from ``src`` to the same offset in ``dst`` (prefix NAT)."""
    return IPv4Address(int(dst.network_address) + (int(ip) - int(src.network_address)))


@dataclass(frozen=True)
class AddressBook:
    views: Mapping[tuple[str, str], IPv4Network]
    """(K, R) -> the CIDR through which cluster K reaches the pods of its peer R."""
    service_ips: Mapping[tuple[str, str], IPv4Address]
    """(service, cluster) -> ClusterIP of the service (home or reflected copy) in that cluster."""
    topology: Topology

    def view(self, local: str, peer: str) -> IPv4Network:
        return self.views[(local, peer)]

    def seen_from(self, ip: IPv4Address, owner: str, viewer: str) -> IPv4Address | None:
        """The address ``viewer`` uses for ``ip`` of cluster ``owner``; None when not peered."""
        if owner == viewer:
            return ip
        view = self.views.get((viewer, owner))
        if view is None:
            return None
        return translate(ip, self.topology.cluster_by_name[owner].pod_cidr, view)

    def pod_seen_from(self, pod: Pod, viewer: str) -> IPv4Address | None:
        return self.seen_from(pod.ip, pod.physical, viewer)

    def api_ip(self, cluster: str) -> IPv4Address:
        return api_address(self.topology.cluster_by_name[cluster].pod_cidr)

    def api_ips(self, cluster: str) -> tuple[IPv4Address, ...]:
        """Every address of the cluster's API server: ``api_ip`` first, then the ones below."""
        first = self.api_ip(cluster)
        return tuple(
            first - k for k in range(self.topology.cluster_by_name[cluster].api_server_addresses)
        )


class RemapExhausted(ValueError):
    """No free CIDR is left to remap a peer's overlapping pod CIDR."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def _allocate(size: int, avoid: list[IPv4Network]) -> IPv4Network | None:
    for pool in REMAP_POOLS:
        if size < pool.prefixlen:
            continue
        for candidate in pool.subnets(new_prefix=size):
            if not any(candidate.overlaps(a) for a in avoid):
                return candidate
    return None


def address_book(topology: Topology) -> AddressBook:
    everything = [c.pod_cidr for c in topology.clusters] + [
        c.service_cidr for c in topology.clusters
    ]
    everything += [c.external_cidr for c in topology.clusters if c.external_cidr is not None]
    views: dict[tuple[str, str], IPv4Network] = {}
    # Remaps are unique across the whole virtual cluster, so that an address on a tunnel names one
    # thing: the two directions of a connection never share a remapped CIDR.
    remaps: list[IPv4Network] = []
    for k in topology.clusters:
        used = [k.pod_cidr, k.service_cidr]
        for peer in topology.peers[k.name]:
            cidr = topology.cluster_by_name[peer].pod_cidr
            if any(cidr.overlaps(u) for u in used):
                remap = _allocate(cidr.prefixlen, everything + used + remaps)
                if remap is None:
                    raise RemapExhausted(
                        f"{peer}'s pod CIDR {cidr} overlaps what {k.name} uses, and no free "
                        f"/{cidr.prefixlen} is left to remap it (use smaller or disjoint pod CIDRs)",
                        f"clusters[{topology.cluster_by_name[peer].index}].podCIDR",
                    )
                remaps.append(remap)
                cidr = remap
            views[(k.name, peer)] = cidr
            used.append(cidr)

    service_ips: dict[tuple[str, str], IPv4Address] = {}
    cursor = {c.name: int(c.service_cidr.network_address) + 1 for c in topology.clusters}
    for s in topology.services:
        for cluster in s.present_in:
            service_ips[(s.name, cluster)] = IPv4Address(cursor[cluster])
            cursor[cluster] += 1
    return AddressBook(views, service_ips, topology)
