"""Topology + modes -> the desired state of one cluster's gateway (``compile.state``).

The per-peer sets are where the decision procedure's segregation rules become addresses, by the
rule of ``compile.membership`` (which the Kubernetes source follows too): ``PodClass`` gives a
pod's home and the peers its services are reflected to, so the sets and the truth tables come
from the same classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address

from peerwall.compile import names
from peerwall.compile.membership import memberships
from peerwall.compile.state import (
    API_PORT,
    CONNCHECK_PORT,
    ApiServer,
    GatewayState,
    PeerState,
    PrefixNat,
    SetKind,
)
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.policy.decide import Decider


def gateway_state(
    topology: Topology,
    cluster: str,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    *,
    force: SecurityMode | None = None,
    api_port: int = API_PORT,
    conncheck_port: int | None = CONNCHECK_PORT,
    tunnel: Callable[[str], str] = names.tunnel_ifname,
    tunnel_pattern: str = names.LAB_TUNNEL_PATTERN,
    gateways: Mapping[str, IPv4Address] | None = None,
    nat: bool = True,
    audit: bool = False,
) -> GatewayState:
    """The state ``cluster``'s gateway enforces. ``tunnel(peer)`` names the interface of each
    peer; ``gateways`` gives each peer gateway's tunnel address where known; ``nat`` makes this
    gateway do the CIDR remapping itself (the lab; Liqo v1 remaps on its own); ``audit`` is the
    global default of auditing segregation (a peering's ``securityAudit`` wins)."""
    decider = Decider(topology, default_mode, force)
    addresses = topology.addresses
    me = topology.cluster_by_name[cluster]
    members: dict[str, dict[SetKind, set[IPv4Address]]] = {
        p: {k: set() for k in SetKind} for p in topology.peers[cluster]
    }
    for pod in topology.pods:
        if pod.physical == cluster:
            cls = decider.pod_class(pod)
            joins = memberships(
                offloaded_by=cls.home if cls.home != cluster else None, reflected_to=cls.backs_for
            )
            for peer, kind in joins:
                if peer in members:
                    members[peer][kind].add(pod.ip)
        elif (
            pod.home == cluster
            and pod.physical in members
            and me.api_server
            # Masqueraded, its packets never carry its own address: no API client.
            and not topology.cluster_by_name[pod.physical].full_masquerade
        ):
            seen = addresses.pod_seen_from(pod, cluster)
            if seen is not None:
                for peer, kind in memberships(offloaded_to=pod.physical):
                    members[peer][kind].add(seen)

    api = ApiServer(addresses.api_ip(cluster), api_port) if me.api_server else None
    peers = {}
    for peer in topology.peers[cluster]:
        remapped_here = addresses.remapped(peer, cluster)  # our pod CIDR as the peer reaches it
        peers[peer] = PeerState(
            name=peer,
            tunnel=tunnel(peer),
            mode=decider.mode(cluster, peer).mode,
            sources=(addresses.remapped(cluster, peer),),
            # The API server sits inside the pod CIDR: FullPodToPod opens it with the CIDR.
            full_access=(me.pod_cidr,),
            members={k: frozenset(v) for k, v in members[peer].items()},
            api=api,
            gateway=(gateways or {}).get(peer),
            masquerade=topology.cluster_by_name[peer].masquerade_source,
            nat=PrefixNat(remapped_here, me.pod_cidr)
            if nat and remapped_here != me.pod_cidr
            else None,
            audit=audit if (said := topology.peering_audit(cluster, peer)) is None else said,
        )
    return GatewayState(cluster, peers, tunnel_pattern, conncheck_port)
