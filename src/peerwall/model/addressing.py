"""The address book of a virtual cluster: how each cluster addresses the others, and service IPs.

Pod CIDRs of different clusters may overlap (the seed's do). Like Liqo, each cluster K addresses a
peer R's pods through R's *remapped* CIDR in K, ``remapped(K, R)``: R's own pod CIDR when that
clashes with nothing K already uses, else a free CIDR of the same size. (The one name for it, as
Liqo's Configuration has it: ``status.remote.cidr.pod``, "Remapped Pod CIDR", is how the local
cluster sees the remote one, equal to the original when nothing clashes.) The sender source-NATs
its pods into the receiver's remapped CIDR of it; the receiver destination-NATs its own remapped
CIDR back to real addresses. Every agent computes the same book from the same topology, so no
negotiation is needed.

The book is built from the clusters' CIDRs and the peerings (``Topology.addresses`` hands them
over) and holds pod CIDRs, not the topology: this module sits below ``model.topology``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from peerwall.errors import RemapExhausted

__all__ = ["AddressBook", "address_book", "api_address", "translate"]

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


class ClusterCidrs(Protocol):
    """What the book reads of a cluster (``model.topology.Cluster`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def pod_cidr(self) -> IPv4Network: ...
    @property
    def service_cidr(self) -> IPv4Network: ...
    @property
    def external_cidr(self) -> IPv4Network | None: ...
    @property
    def api_server_addresses(self) -> int: ...


class Placed(Protocol):
    """A pod's address and the cluster it runs in (``model.topology.Pod`` has them)."""

    @property
    def ip(self) -> IPv4Address: ...
    @property
    def physical(self) -> str: ...


@dataclass(frozen=True)
class AddressBook:
    remapped_cidrs: Mapping[tuple[str, str], IPv4Network]
    """(K, R) -> R's remapped CIDR in K: the CIDR through which cluster K reaches R's pods."""
    service_ips: Mapping[tuple[str, str], IPv4Address]
    """(service, cluster) -> ClusterIP of the service (home or reflected copy) in that cluster."""
    pod_cidrs: Mapping[str, IPv4Network]
    """cluster -> its own pod CIDR."""
    api_server_addresses: Mapping[str, int]
    """cluster -> how many addresses its API server has (``api_ips``)."""

    def remapped(self, local: str, peer: str) -> IPv4Network:
        """``peer``'s remapped CIDR in ``local``."""
        return self.remapped_cidrs[(local, peer)]

    def seen_from(self, ip: IPv4Address, owner: str, viewer: str) -> IPv4Address | None:
        """The address ``viewer`` uses for ``ip`` of cluster ``owner``; None when not peered."""
        if owner == viewer:
            return ip
        remapped = self.remapped_cidrs.get((viewer, owner))
        if remapped is None:
            return None
        return translate(ip, self.pod_cidrs[owner], remapped)

    def pod_seen_from(self, pod: Placed, viewer: str) -> IPv4Address | None:
        return self.seen_from(pod.ip, pod.physical, viewer)

    def api_ip(self, cluster: str) -> IPv4Address:
        return api_address(self.pod_cidrs[cluster])

    def api_ips(self, cluster: str) -> tuple[IPv4Address, ...]:
        """Every address of the cluster's API server: ``api_ip`` first, then the ones below."""
        first = self.api_ip(cluster)
        return tuple(first - k for k in range(self.api_server_addresses.get(cluster, 1)))


_MASKS = tuple((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF for prefix in range(33))
"""``_MASKS[p]``: the netmask of a /p as an integer."""


class _Taken:
    """The CIDRs a remap must avoid, and the first free candidate of each pool and size.

    What is avoided only grows (every CIDR of the topology, then each remap given out), so a
    candidate refused once stays refused: each (pool, size) keeps a cursor that only moves
    forward. Two aligned CIDRs overlap when one contains the other, so a candidate is checked
    by 33 set look-ups, not against every CIDR taken (quadratic in clusters: 114 s for 100
    clusters whose pod CIDRs overlap, before)."""

    def __init__(self, avoid: list[IPv4Network]) -> None:
        self._exact: set[tuple[int, int]] = set()
        self._inside: list[set[int]] = [set() for _ in range(33)]
        """``_inside[p]``: the /p networks that contain a CIDR taken (longer than /p)."""
        self._cursors: dict[tuple[int, int], Iterator[int]] = {}
        """Per (pool, size): the next candidates' first addresses, as integers (an
        ``IPv4Network`` is made only for the one given out)."""
        for net in avoid:
            self.add(net)

    def add(self, net: IPv4Network) -> None:
        x, q = int(net.network_address), net.prefixlen
        self._exact.add((x, q))
        for p in range(q):
            self._inside[p].add(x & _MASKS[p])

    def overlaps(self, net: IPv4Network) -> bool:
        return self._overlaps(int(net.network_address), net.prefixlen)

    def _overlaps(self, c: int, p: int) -> bool:
        if c in self._inside[p]:
            return True
        exact = self._exact
        return any((c & _MASKS[q], q) in exact for q in range(p + 1))

    def allocate(self, size: int) -> IPv4Network | None:
        """The first CIDR of ``size`` (a prefix length) in the pools that overlaps nothing
        taken, now taken too; None when none is left."""
        for i, pool in enumerate(REMAP_POOLS):
            if size < pool.prefixlen:
                continue
            start = int(pool.network_address)
            cursor = self._cursors.setdefault(
                (i, size), iter(range(start, start + pool.num_addresses, 1 << (32 - size)))
            )
            for first in cursor:
                if not self._overlaps(first, size):
                    candidate = IPv4Network((first, size))
                    self.add(candidate)
                    return candidate
        return None


def address_book(
    clusters: Sequence[ClusterCidrs],
    peers: Mapping[str, Sequence[str]],
    services: Iterable[tuple[str, Iterable[str]]],
) -> AddressBook:
    """The book of ``clusters`` (in file order), each reaching the ``peers`` it has a connection
    with, and of the ``services`` (name, the clusters it is present in)."""
    by_name = {c.name: c for c in clusters}
    everything = [c.pod_cidr for c in clusters] + [c.service_cidr for c in clusters]
    everything += [c.external_cidr for c in clusters if c.external_cidr is not None]
    remapped: dict[tuple[str, str], IPv4Network] = {}
    # Remaps are unique across the whole virtual cluster, so that an address on a tunnel names one
    # thing: the two directions of a connection never share a remapped CIDR.
    taken = _Taken(everything)
    for k in clusters:
        used = [k.pod_cidr, k.service_cidr]
        for peer in peers[k.name]:
            cidr = by_name[peer].pod_cidr
            if any(cidr.overlaps(u) for u in used):
                remap = taken.allocate(cidr.prefixlen)
                if remap is None:
                    raise RemapExhausted(
                        f"{peer}'s pod CIDR {cidr} overlaps what {k.name} uses, and no free "
                        f"/{cidr.prefixlen} is left to remap it (use smaller or disjoint pod CIDRs)",
                        f"clusters[{by_name[peer].index}].podCIDR",
                    )
                cidr = remap
            remapped[(k.name, peer)] = cidr
            used.append(cidr)

    service_ips: dict[tuple[str, str], IPv4Address] = {}
    cursor = {c.name: int(c.service_cidr.network_address) + 1 for c in clusters}
    for name, present_in in services:
        for cluster in present_in:
            service_ips[(name, cluster)] = IPv4Address(cursor[cluster])
            cursor[cluster] += 1
    return AddressBook(
        remapped,
        service_ips,
        {c.name: c.pod_cidr for c in clusters},
        {c.name: c.api_server_addresses for c in clusters},
    )
