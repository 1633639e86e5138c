"""Topology + modes -> the desired ``inet peerwall`` table of one cluster's gateway.

Layout (DESIGN.md §3): established and related traffic is accepted first, so replies of allowed
connections always flow back; traffic entering from the tunnel of peer A jumps to A's chain, which
drops sources that A could not have sent (anti-spoofing: the chain is chosen by interface, never
by source address), accepts destinations in A's allow set, lets A's pods whose home is here reach
the API server, and counts and drops the rest.

The rules depend only on the topology's shape (peers, CIDRs); the security mode only fills sets. A
mode change is therefore an element-only transaction.
"""

from __future__ import annotations

from collections.abc import Mapping

from peerwall.compile import names
from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset
from peerwall.model.addressing import AddressPlan
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.policy.expect import admitted_senders
from peerwall.policy.modes import effective_mode


def allowed_destinations(
    topology: Topology,
    receiver: str,
    sender: str,
    mode: SecurityMode,
    plan: AddressPlan,
    admitted: Mapping[str, frozenset[str]],
) -> tuple[frozenset[str], frozenset[str]]:
    """(allow set, API client set) of ``receiver`` for traffic from ``sender`` under ``mode``;
    ``admitted`` is ``admitted_senders(topology)``, computed once per build."""
    cluster = topology.cluster_by_name[receiver]
    if mode is SecurityMode.FULL_POD_TO_POD:
        # The API server sits inside the pod CIDR, so the CIDR admits it as well.
        return frozenset({str(cluster.pod_cidr)}), frozenset()
    allow = frozenset(
        str(p.ip) for p in topology.pods if p.physical == receiver and sender in admitted[p.name]
    )
    api: frozenset[str] = frozenset()
    if cluster.api_server:
        api = frozenset(
            str(plan.seen_from(p.ip, sender, receiver))
            for p in topology.pods
            if p.home == receiver and p.physical == sender
        )
    return allow, api


def build(
    topology: Topology,
    cluster: str,
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD,
    plan: AddressPlan | None = None,
) -> Ruleset:
    plan = plan or topology.addresses
    admitted = admitted_senders(topology)
    me = topology.cluster_by_name[cluster]
    sets: list[NftSet] = []
    peer_chains: list[Chain] = []
    forward = ["ct state established,related accept"]
    dnat: list[str] = []
    snat: list[str] = []
    for peer in topology.peers[cluster]:
        tunnel = names.tunnel_ifname(peer)
        chain = names.peer_chain(peer)
        allow_name = names.peer_allow_set(peer)
        api_name = names.peer_api_clients_set(peer)
        mode = effective_mode(topology, cluster, peer, default_mode).mode
        allow, api = allowed_destinations(topology, cluster, peer, mode, plan, admitted)

        forward.append(f'iifname "{tunnel}" jump {chain}')
        sets.append(NftSet(allow_name, elements=allow))
        rules = [
            f"ip saddr != {plan.view(cluster, peer)} counter drop",
            f"ip daddr @{allow_name} accept",
        ]
        if me.api_server:
            sets.append(NftSet(api_name, elements=api))
            rules.append(f"ip daddr {plan.api_ip(cluster)} ip saddr @{api_name} accept")
        rules.append("counter drop")
        peer_chains.append(Chain(chain, tuple(rules)))

        # The peer addresses our pods through its view of us: translate at our edge, both ways.
        seen_by_peer = plan.view(peer, cluster)
        if seen_by_peer != me.pod_cidr:
            dnat.append(
                f'iifname "{tunnel}" ip daddr {seen_by_peer} dnat ip prefix to {me.pod_cidr}'
            )
            snat.append(
                f'oifname "{tunnel}" ip saddr {me.pod_cidr} snat ip prefix to {seen_by_peer}'
            )

    chains = [
        Chain(names.CHAIN_FORWARD, tuple(forward), Hook("filter", "forward", "filter")),
        *peer_chains,
        Chain(names.CHAIN_NAT_PRE, tuple(dnat), Hook("nat", "prerouting", "dstnat")),
        Chain(names.CHAIN_NAT_POST, tuple(snat), Hook("nat", "postrouting", "srcnat")),
    ]
    return Ruleset(names.FAMILY, names.TABLE, tuple(sets), tuple(chains))
