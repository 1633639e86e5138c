"""A gateway's desired state -> its ``inet peerwall`` table.

Layout (DESIGN.md §3). Forward hook: established and related traffic first, so replies of allowed
connections always flow back; then traffic entering from a peer's tunnel jumps, through the verdict
map ``peers-forward`` keyed by interface, to that peer's chain, which drops sources the peer could
not have sent (the chain is chosen by interface, never by source address), accepts destinations in
the peer's sets, lets the peer's pods whose home is here reach the API server over TCP on its port,
and counts and drops the rest. A tunnel whose peer is not known (yet) is dropped: a gateway fails
closed. Input hook: the same dispatch through ``peers-input``; a peer may send the gateway itself
only what the link needs (``link_needs``); everything else to the gateway's own addresses, IPv6
included, is counted and dropped.

Rules depend only on the shape of the state (peers, tunnels, CIDRs, the API server); modes and
pods only fill sets. Under FullPodToPod ``cidrs-<peer>`` holds the local pod CIDR; under
segregation it is empty and the per-pod sets decide. So a mode switch is a one-element
transaction, a pod event a one-element transaction on a plain hash set, and adding or removing a
peer touches only that peer's chains, sets and map elements.
"""

from __future__ import annotations

from peerwall.compile import names
from peerwall.compile.nft import (
    Chain,
    Counter,
    Element,
    Hook,
    Match,
    Nat,
    NftMap,
    NftSet,
    Rule,
    Ruleset,
    SetRef,
    Value,
    Verdict,
    VMap,
)
from peerwall.compile.state import GatewayState, PeerState, SetKind
from peerwall.model.spec import SecurityMode

TABLE_COMMENT = "peerwall: Liqo connectivity security modes, enforced on traffic from peers (managed by peerwall)"


def link_needs(conncheck_port: int | None) -> list[tuple[Match, str]]:
    """What a peer may send to the gateway itself, and why: the inter-cluster link's own needs.
    Anything else from a peer to the gateway's (and the node's) addresses is dropped."""
    out = [(Match("icmp type", "echo-request"), "the peer gateway's health check (ping)")]
    if conncheck_port is not None:
        out.append(
            (Match("udp dport", conncheck_port), "Liqo's gateway connection check (--ping-port)")
        )
    return out


SET_COMMENTS = {
    SetKind.OFFLOADED: "pods {peer} offloaded here",
    SetKind.BACKENDS: "local backends of services reflected to {peer}",
    SetKind.API_CLIENTS: "{peer}'s pods whose home is here: they may reach the API server",
}

ACCEPT, DROP = Verdict("accept"), Verdict("drop")
ESTABLISHED = Match("ct state", frozenset({"established", "related"}))


def _rule(*exprs: Match | Counter | Verdict | VMap | Nat, comment: str | None = None) -> Rule:
    return Rule(tuple(exprs), comment)


def cidrs_elements(peer: PeerState) -> frozenset[Element]:
    """The elements of ``cidrs-<peer>``: what FullPodToPod opens, or nothing."""
    if peer.mode is SecurityMode.FULL_POD_TO_POD:
        return frozenset(peer.full_access)
    return frozenset()


def peer_sets(peer: PeerState) -> list[NftSet]:
    p = peer.name
    out = [
        NftSet(
            names.peer_cidrs_set(p),
            flags=("interval",),
            comment=f"local CIDRs {p} may reach (FullPodToPod: the pod CIDR; segregation: none)",
            elements=cidrs_elements(peer),
        )
    ]
    for kind in SetKind:
        if kind is SetKind.API_CLIENTS and peer.api is None:
            continue
        out.append(
            NftSet(
                names.peer_set(p, kind),
                comment=SET_COMMENTS[kind].format(peer=p),
                elements=frozenset(peer.addresses(kind)),
            )
        )
    return out


def peer_chain(peer: PeerState) -> Chain:
    p = peer.name
    sources: Value = peer.sources[0] if len(peer.sources) == 1 else frozenset(peer.sources)
    rules = [
        _rule(Match("ip saddr", sources, negate=True), Counter(), DROP, comment="spoofed source"),
        _rule(Match("ip daddr", SetRef(names.peer_cidrs_set(p))), ACCEPT),
        _rule(Match("ip daddr", SetRef(names.peer_set(p, SetKind.OFFLOADED))), ACCEPT),
        _rule(Match("ip daddr", SetRef(names.peer_set(p, SetKind.BACKENDS))), ACCEPT),
    ]
    if peer.api is not None:
        rules.append(
            _rule(
                Match("ip daddr", peer.api.address),
                Match("tcp dport", peer.api.port),
                Match("ip saddr", SetRef(names.peer_set(p, SetKind.API_CLIENTS))),
                ACCEPT,
            )
        )
    rules.append(_rule(Counter(), DROP))
    return Chain(
        names.peer_chain(p), tuple(rules), comment=f"traffic from {p} (tunnel {peer.tunnel})"
    )


def peer_input_chain(peer: PeerState, conncheck_port: int | None) -> Chain:
    source = () if peer.gateway is None else (Match("ip saddr", peer.gateway),)
    rules = [_rule(*source, need, ACCEPT, comment=why) for need, why in link_needs(conncheck_port)]
    rules.append(_rule(Counter(), DROP))
    return Chain(
        names.peer_input_chain(peer.name),
        tuple(rules),
        comment=f"traffic from {peer.name} to this gateway itself",
    )


def _base(name: str, hook: str, dispatch: str, pattern: str) -> Chain:
    return Chain(
        name,
        (
            _rule(ESTABLISHED, ACCEPT),
            _rule(VMap("iifname", dispatch)),
            _rule(
                Match("iifname", pattern),
                Counter(),
                DROP,
                comment="a tunnel whose peer is not known: fail closed",
            ),
        ),
        Hook("filter", hook, 0),
    )


def build(state: GatewayState) -> Ruleset:
    """The whole table for ``state``."""
    peers = list(state.peers.values())
    sets: list[NftSet] = []
    chains = [
        _base(names.CHAIN_FORWARD, "forward", names.MAP_FORWARD, state.tunnel_pattern),
        _base(names.CHAIN_INPUT, "input", names.MAP_INPUT, state.tunnel_pattern),
    ]
    forward: dict[str, Verdict] = {}
    inbound: dict[str, Verdict] = {}
    dnat: list[Rule] = []
    snat: list[Rule] = []
    for peer in peers:
        sets += peer_sets(peer)
        chain, input_chain = peer_chain(peer), peer_input_chain(peer, state.conncheck_port)
        chains += [chain, input_chain]
        forward[peer.tunnel] = Verdict("jump", chain.name)
        inbound[peer.tunnel] = Verdict("jump", input_chain.name)
        if peer.nat is not None:
            tunnel = peer.nat
            dnat.append(
                _rule(
                    Match("iifname", peer.tunnel),
                    Match("ip daddr", tunnel.seen_by_peer),
                    Nat("dnat", tunnel.local),
                )
            )
            snat.append(
                _rule(
                    Match("oifname", peer.tunnel),
                    Match("ip saddr", tunnel.local),
                    Nat("snat", tunnel.seen_by_peer),
                )
            )
    if dnat:
        chains.append(Chain(names.CHAIN_NAT_PRE, tuple(dnat), Hook("nat", "prerouting", -100)))
        chains.append(Chain(names.CHAIN_NAT_POST, tuple(snat), Hook("nat", "postrouting", 100)))
    maps = (
        NftMap(
            names.MAP_FORWARD, comment="tunnel interface -> the chain of its peer", elements=forward
        ),
        NftMap(
            names.MAP_INPUT,
            comment="tunnel interface -> the input chain of its peer",
            elements=inbound,
        ),
    )
    return Ruleset(names.FAMILY, names.TABLE, tuple(sets), maps, tuple(chains), TABLE_COMMENT)


def build_guard(tunnel_pattern: str) -> Ruleset:
    """The table that fails a gateway closed when its own table cannot be taken back (another
    process holds ``inet peerwall`` with ``flags owner``, or the kernel refuses every replace):
    in its own table, so it works whatever ``inet peerwall`` holds, it drops every tunnel's new
    traffic to pods and to the gateway. Established and related traffic still passes, as in the
    fail-closed table an agent starts with: allowed connections survive."""
    chains = tuple(
        Chain(
            f"guard-{hook}",
            (
                _rule(ESTABLISHED, ACCEPT),
                _rule(
                    Match("iifname", tunnel_pattern),
                    Counter(),
                    DROP,
                    comment="inet peerwall cannot be taken back: fail closed",
                ),
            ),
            Hook("filter", hook, -10),
        )
        for hook in ("forward", "input")
    )
    return Ruleset(names.FAMILY, names.GUARD_TABLE, chains=chains)
