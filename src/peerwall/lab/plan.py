"""Names and addresses of an emulated virtual cluster. Pure: computes, never touches the kernel.

Per cluster, one gateway namespace plays node, kube-proxy and Liqo gateway at once. Every pod, the
API server and the Internet host is a namespace of its own, wired to its gateway by a veth pair in
the Calico style: the pod holds its /32 and a default route to 169.254.1.1, which every gateway-side
veth carries. Peered gateways are joined by a veth "tunnel" named after the peer, so nftables can
match the interface the traffic came from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from peerwall.compile.names import tunnel_ifname
from peerwall.errors import LabError
from peerwall.model.topology import Pod, Topology, link_key

LAB_NAME = re.compile(r"[a-z0-9]{1,12}")
"""Matched whole (``fullmatch``): ``$`` would let a trailing newline through."""
GATEWAY_LINK_IP = IPv4Address("169.254.1.1")
UPLINK_GW = IPv4Interface("192.0.2.1/24")
UPLINK_HOST = IPv4Interface("192.0.2.2/24")
INTERNET_HOSTS = IPv4Network("203.0.113.0/24")
NOWHERE = IPv4Network("198.51.100.0/24")
"""Service endpoints a cluster has no route to are sent here; gateways answer 'unreachable'."""
MAX_CLUSTERS = 250
LAB_RANGES = (
    IPv4Network("169.254.0.0/16"),
    IPv4Network("192.0.2.0/24"),
    NOWHERE,
    INTERNET_HOSTS,
)
"""Addresses the emulation itself uses; a topology's CIDRs must stay clear of them."""


def check_lab_name(name: str) -> str:
    if not isinstance(name, str) or not LAB_NAME.fullmatch(name):
        raise LabError(f"lab name {name!r}: use 1 to 12 lowercase letters or digits")
    return name


@dataclass(frozen=True)
class Tunnel:
    a: str
    b: str
    a_ip: IPv4Interface
    b_ip: IPv4Interface


@dataclass(frozen=True)
class LabPlan:
    name: str
    topology: Topology

    def __post_init__(self) -> None:
        check_lab_name(self.name)
        if len(self.topology.clusters) > MAX_CLUSTERS:
            raise LabError(f"the lab emulates at most {MAX_CLUSTERS} clusters")
        for c in self.topology.clusters:
            for field, cidr in (
                ("podCIDR", c.pod_cidr),
                ("serviceCIDR", c.service_cidr),
                ("externalCIDR", c.external_cidr),
            ):
                if cidr is None:
                    continue
                clash = next((r for r in LAB_RANGES if cidr.overlaps(r)), None)
                if clash:
                    raise LabError(
                        f"clusters[{c.index}].{field}: {cidr} overlaps {clash}, which the lab "
                        "uses for its own links and hosts"
                    )

    @property
    def prefix(self) -> str:
        return f"pw-{self.name}-"

    def gateway_ns(self, cluster: str) -> str:
        return f"{self.prefix}gw-{cluster}"

    def pod_ns(self, pod: str) -> str:
        return f"{self.prefix}pod-{pod}"

    def internet_ns(self, cluster: str) -> str:
        return f"{self.prefix}inet-{cluster}"

    def api_ns(self, cluster: str) -> str:
        return f"{self.prefix}api-{cluster}"

    def pod_veth(self, pod: Pod) -> str:
        """Gateway side of a pod's veth pair (15 characters at most), named after the pod so
        that it stays the same when other pods come and go."""
        return "pv" + hashlib.sha256(pod.name.encode()).hexdigest()[:12]

    def internet_ip(self, cluster: str) -> IPv4Address:
        return INTERNET_HOSTS[1 + self.topology.cluster_by_name[cluster].index]

    def nowhere_ip(self, n: int) -> IPv4Address:
        return NOWHERE[1 + n % 250]

    @cached_property
    def tunnels(self) -> tuple[Tunnel, ...]:
        out = []
        for i, (a, b) in enumerate(self.topology.links):
            base = int(IPv4Address("169.254.2.0")) + 2 * i
            out.append(
                Tunnel(
                    a,
                    b,
                    IPv4Interface(f"{IPv4Address(base)}/31"),
                    IPv4Interface(f"{IPv4Address(base + 1)}/31"),
                )
            )
        return tuple(out)

    def tunnel(self, local: str, peer: str) -> tuple[str, IPv4Interface, IPv4Address]:
        """(local interface name, local address, peer's address) of the tunnel to ``peer``."""
        key = link_key(local, peer)
        for t in self.tunnels:
            if (t.a, t.b) == key:
                mine, theirs = (t.a_ip, t.b_ip) if t.a == local else (t.b_ip, t.a_ip)
                return tunnel_ifname(peer), mine, theirs.ip
        raise LabError(f"{local} and {peer} are not peered")

    def namespaces(self) -> list[str]:
        t = self.topology
        out = [self.gateway_ns(c.name) for c in t.clusters]
        out += [self.internet_ns(c.name) for c in t.clusters]
        out += [self.api_ns(c.name) for c in t.clusters if c.api_server]
        out += [self.pod_ns(p.name) for p in t.pods]
        return out
