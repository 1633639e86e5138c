"""A gateway's desired state -> its ``inet peerwall`` table.

Layout (DESIGN.md §3). Forward hook: traffic entering from a peer's tunnel jumps, through the
verdict map ``peers-forward`` keyed by interface, to that peer's chain; traffic leaving by a
tunnel jumps, through ``peers-egress``, to the peer's egress chain (the output hook too, for the
gateway's own traffic). Every tunnel chain first checks the connection's state against the
tunnel (``_state_rules``): invalid packets are dropped; an established or related packet is
accepted only if its connection was opened through this very tunnel, in either direction (the
connection's ``ct mark``, set on its first packet, see ``compile.ctmark``), so a peer can neither
speak on another tunnel's connections nor send ICMP errors about them; a new TCP connection must
start with a SYN, so a connection whose conntrack entry a change deleted never comes back by
conntrack's loose pickup of a mid-stream segment, whichever side sends next (no sysctl needed).

A new connection from a peer then meets the peer's chain, which drops sources the peer could not
have sent (the chain is chosen by interface, never by source address), accepts destinations in
the peer's sets, lets the peer's pods whose home is here reach the API server over TCP on its port,
and counts and drops the rest. A tunnel whose peer is not known (yet) is dropped: a gateway fails
closed. Input hook: the same dispatch through ``peers-input``; a peer may send the gateway itself
only what the link needs (``link_needs``); everything else to the gateway's own addresses, IPv6
included, is counted and dropped. Each drop says why in its comment (``DROP_REASONS``).

Rules depend only on the shape of the state (peers, tunnels, CIDRs, the API server); modes and
pods only fill sets. Under FullPodToPod ``cidrs-<peer>`` holds the local pod CIDR; under
segregation it is empty and the per-pod sets decide. So a mode switch is a one-element
transaction, a pod event a one-element transaction on a plain hash set, and adding or removing a
peer touches only that peer's chains, sets and map elements.

Drops are reported (``FlowLog``): next to each drop rule of a peer's chains, a rule with the same
matches hands a copy of the packet to NFLOG under a rate limit, with a prefix naming verdict, hook,
reason and peer. Audit (``PeerState.audit``) is the set ``audit-<peer>``: under segregation with
audit on it holds what FullPodToPod would open, and what would be dropped there is reported as
would-drop and accepted; switching audit is one element, as a mode switch is.
"""

from __future__ import annotations

from collections.abc import Iterable

from peerwall.compile import ctmark, names
from peerwall.compile.state import FlowLog, GatewayState, PeerState, SetKind
from peerwall.model.spec import SecurityMode
from peerwall.nft.objects import (
    TCP_FLAGS,
    Action,
    Chain,
    Counter,
    CtMarkSet,
    Element,
    Hook,
    Limit,
    Log,
    Match,
    Nat,
    NftMap,
    NftSet,
    Rule,
    Ruleset,
    SetRef,
    Value,
    VMap,
    masked,
)

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

ACCEPT, DROP = Action("accept"), Action("drop")
ESTABLISHED = Match("ct state", frozenset({"established", "related"}))
RELATED = Match("ct state", frozenset({"related"}))

SPOOFED = "spoofed source"
INVALID = "invalid: conntrack cannot place it"
OTHER_TUNNEL = "state of a connection that did not cross this tunnel"
NOT_SYN = "new TCP must start with a SYN (no mid-stream pickup)"
UNKNOWN_TUNNEL = "a tunnel whose peer is not known: fail closed"
DROP_REASONS = (SPOOFED, INVALID, OTHER_TUNNEL, NOT_SYN, UNKNOWN_TUNNEL)
"""The comments of the named drop rules (the per-peer chains' last rule drops what is not
admitted, uncommented)."""


def _rule(
    *exprs: Match | Counter | Action | VMap | Nat | CtMarkSet | Limit | Log,
    comment: str | None = None,
) -> Rule:
    return Rule(tuple(exprs), comment)


OUR_MARK = masked("ct mark", ctmark.OURS)
"""peerwall's bits of the connection mark (the low 16 are Liqo's, ``compile.ctmark``)."""
LIQO_MARKED = (Match(OUR_MARK, 0), Match("ct mark", 0, negate=True))
"""A connection Liqo marked and peerwall did not (``ctmark.is_liqo``)."""
LIQO_NODEPORT = "a connection Liqo marked (NodePort or hostNetwork, opened by a local node)"


def tunnel_marks(peer: PeerState) -> Match:
    """The connections of ``peer``'s tunnel, either way (``compile.ctmark``), whatever Liqo
    holds in the low bits."""
    return Match(OUR_MARK, frozenset({ctmark.from_peer(peer.name), ctmark.to_peer(peer.name)}))


def mark_new(mark: int) -> Rule:
    """Marks a new connection as ``mark`` (our bits only), unless Liqo marked it first: a
    connection Liqo marks must keep exactly Liqo's mark (its ``fwmark N`` rule is exact)."""
    return _rule(Match(masked("ct mark", ctmark.LIQO), 0), CtMarkSet(mark, keep=ctmark.LIQO))


def _state_rules(
    peer: PeerState,
    before_related: tuple[Rule, ...] = (),
    liqo: str | None = None,
    log: FlowLog | None = None,
    hook: str = "forward",
) -> list[Rule]:
    """What every packet crossing ``peer``'s tunnel meets first: its connection must be one of
    this tunnel, and a new TCP connection must start with a SYN. ``before_related``: rules
    between the established and the related check (an established packet's addresses are its
    connection's, fixed by conntrack; an ICMP error's outer source is whatever the sender wrote).
    ``liqo``: the direction (``original``/``reply``) in which this chain sees the packets of the
    connections Liqo marks (a local node's, towards the peer); they are accepted on their state
    that way only, after ``before_related``. Each drop is reported as the other drops are."""
    invalid = Match("ct state", frozenset({"invalid"}))
    not_syn = Match(TCP_FLAGS, "syn", negate=True)
    report = {"hook": hook, "peer": peer.name, "verdict": "dropped"}
    liqo_rules = (
        []
        if liqo is None
        else [
            _rule(
                ESTABLISHED,
                Match("ct direction", liqo),
                *LIQO_MARKED,
                ACCEPT,
                comment=LIQO_NODEPORT,
            )
        ]
    )
    return [
        *log_rule(log, invalid, reason="invalid", **report),
        _rule(invalid, Counter(), DROP, comment=INVALID),
        _rule(Match("ct state", frozenset({"established"})), tunnel_marks(peer), ACCEPT),
        *before_related,
        _rule(RELATED, tunnel_marks(peer), ACCEPT),
        *liqo_rules,
        *log_rule(log, ESTABLISHED, reason="other-tunnel", **report),
        _rule(ESTABLISHED, Counter(), DROP, comment=OTHER_TUNNEL),
        *log_rule(log, not_syn, reason="not-syn", **report),
        _rule(not_syn, Counter(), DROP, comment=NOT_SYN),
    ]


def cidrs_elements(peer: PeerState) -> frozenset[Element]:
    """The elements of ``cidrs-<peer>``: what FullPodToPod opens, or nothing."""
    if peer.mode is SecurityMode.FULL_POD_TO_POD:
        # A /32 (an API server outside the pod CIDRs) is the address nft lists it back as:
        # kept as a network, every read-back found it missing and extra at once (drift forever).
        return frozenset(n.network_address if n.prefixlen == 32 else n for n in peer.full_access)
    return frozenset()


def audit_elements(peer: PeerState) -> frozenset[Element]:
    """The elements of ``audit-<peer>``: under segregation with audit on, what FullPodToPod
    would open (so what segregation drops there is accepted and reported); else nothing."""
    if peer.audit and peer.mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION:
        return frozenset(peer.full_access)
    return frozenset()


def log_rule(
    log: FlowLog | None, *matches: Match, verdict: str, hook: str, reason: str, peer: str
) -> list[Rule]:
    """The rule that reports what the next rule (same matches) drops or audits; none if drops
    are not reported."""
    if log is None:
        return []
    prefix = names.flow_prefix(verdict, hook, reason, peer)
    return [_rule(*matches, Limit(log.rate, log.burst), Log(prefix, log.group))]


def peer_sets(peer: PeerState) -> list[NftSet]:
    p = peer.name
    out = [
        NftSet(
            names.peer_cidrs_set(p),
            flags=("interval",),
            comment=f"local CIDRs {p} may reach (FullPodToPod: the pod CIDR; segregation: none)",
            elements=cidrs_elements(peer),
        ),
        NftSet(
            names.peer_audit_set(p),
            flags=("interval",),
            comment=f"audit: local CIDRs where what segregation drops from {p} is accepted and reported",
            elements=audit_elements(peer),
        ),
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


def _one_or_set(values: Iterable[Element]) -> Value:
    """A match value: the one value itself, or an anonymous set of several."""
    items = list(dict.fromkeys(values))
    return items[0] if len(items) == 1 else frozenset(items)


def valid_sources(peer: PeerState) -> Value:
    """The sources ``spoofed source`` lets through: the peer's pods, and the address its nodes
    masquerade other traffic to (an address, as the kernel lists it back)."""
    masquerade = () if peer.masquerade is None else (peer.masquerade,)
    return _one_or_set((*peer.sources, *masquerade))


def peer_chain(peer: PeerState, log: FlowLog | None = None) -> Chain:
    p = peer.name
    spoofed = Match("ip saddr", valid_sources(peer), negate=True)
    audited = Match("ip daddr", SetRef(names.peer_audit_set(p)))
    checks: list[Rule] = []
    if peer.gateways:
        checks.append(
            _rule(
                Match("ip saddr", _one_or_set(peer.gateways)),
                RELATED,
                tunnel_marks(peer),
                ACCEPT,
                comment="an ICMP error from the peer's gateway about a connection of its tunnel",
            )
        )
    checks += log_rule(log, spoofed, verdict="dropped", hook="forward", reason="spoofed", peer=p)
    checks.append(_rule(spoofed, Counter(), DROP, comment=SPOOFED))
    rules = [
        *_state_rules(peer, tuple(checks), liqo="reply", log=log),
        mark_new(ctmark.from_peer(p)),
        _rule(Match("ip daddr", SetRef(names.peer_cidrs_set(p))), ACCEPT),
        _rule(Match("ip daddr", SetRef(names.peer_set(p, SetKind.OFFLOADED))), ACCEPT),
        _rule(Match("ip daddr", SetRef(names.peer_set(p, SetKind.BACKENDS))), ACCEPT),
    ]
    if peer.api is not None:
        rules.append(
            _rule(
                Match("ip daddr", _one_or_set(peer.api.addresses)),
                Match("tcp dport", peer.api.port),
                Match("ip saddr", SetRef(names.peer_set(p, SetKind.API_CLIENTS))),
                ACCEPT,
            )
        )
    rules += log_rule(log, audited, verdict="would-drop", hook="forward", reason="denied", peer=p)
    rules.append(_rule(audited, Counter(), ACCEPT, comment="audit: segregation would drop"))
    rules += log_rule(log, verdict="dropped", hook="forward", reason="denied", peer=p)
    rules.append(_rule(Counter(), DROP))
    return Chain(
        names.peer_chain(p), tuple(rules), comment=f"traffic from {p} (tunnel {peer.tunnel})"
    )


def peer_input_chain(
    peer: PeerState, conncheck_port: int | None, log: FlowLog | None = None
) -> Chain:
    source = () if not peer.gateways else (Match("ip saddr", _one_or_set(peer.gateways)),)
    rules = [*_state_rules(peer, log=log, hook="input"), mark_new(ctmark.from_peer(peer.name))]
    rules += [_rule(*source, need, ACCEPT, comment=why) for need, why in link_needs(conncheck_port)]
    rules += log_rule(log, verdict="dropped", hook="input", reason="gateway", peer=peer.name)
    rules.append(_rule(Counter(), DROP))
    return Chain(
        names.peer_input_chain(peer.name),
        tuple(rules),
        comment=f"traffic from {peer.name} to this gateway itself",
    )


def peer_egress_chain(peer: PeerState, log: FlowLog | None = None) -> Chain:
    """Traffic leaving by ``peer``'s tunnel (forwarded, or the gateway's own): its state is
    checked as on the way in, and a new connection is marked as opened towards the peer. What a
    local pod may send is not restricted: the peer enforces on what it receives."""
    return Chain(
        names.peer_egress_chain(peer.name),
        (
            *_state_rules(peer, liqo="original", log=log, hook="egress"),
            mark_new(ctmark.to_peer(peer.name)),
            _rule(ACCEPT),
        ),
        comment=f"traffic to {peer.name} (tunnel {peer.tunnel})",
    )


def _base(name: str, hook: str, dispatch: str, pattern: str) -> Chain:
    return Chain(
        name,
        (
            _rule(VMap("iifname", dispatch)),
            _rule(Match("iifname", pattern), Counter(), DROP, comment=UNKNOWN_TUNNEL),
            *((_rule(VMap("oifname", names.MAP_EGRESS)),) if hook == "forward" else ()),
        ),
        Hook("filter", hook, 0),
    )


def fail_closed(cluster: str, tunnel_pattern: str) -> Ruleset:
    """The table of a gateway that knows no peer yet: every tunnel matching ``tunnel_pattern`` is
    dropped, and nothing opened towards one is ever accepted back. Installed before a tunnel
    exists (the lab's new gateways, the chart's init container), so a gateway never forwards
    without a table."""
    return build(GatewayState(cluster, {}, tunnel_pattern))


def build(state: GatewayState) -> Ruleset:
    """The whole table for ``state``."""
    peers = list(state.peers.values())
    sets: list[NftSet] = []
    chains = [
        _base(names.CHAIN_FORWARD, "forward", names.MAP_FORWARD, state.tunnel_pattern),
        _base(names.CHAIN_INPUT, "input", names.MAP_INPUT, state.tunnel_pattern),
        Chain(
            names.CHAIN_OUTPUT,
            (_rule(VMap("oifname", names.MAP_EGRESS)),),
            Hook("filter", "output", 0),
        ),
    ]
    forward: dict[str, Action] = {}
    inbound: dict[str, Action] = {}
    egress: dict[str, Action] = {}
    dnat: list[Rule] = []
    snat: list[Rule] = []
    for peer in peers:
        sets += peer_sets(peer)
        chain = peer_chain(peer, state.flow_log)
        input_chain = peer_input_chain(peer, state.conncheck_port, state.flow_log)
        egress_chain = peer_egress_chain(peer, state.flow_log)
        chains += [chain, input_chain, egress_chain]
        for ifname in peer.tunnels:
            forward[ifname] = Action("jump", chain.name)
            inbound[ifname] = Action("jump", input_chain.name)
            egress[ifname] = Action("jump", egress_chain.name)
        if peer.nat is not None:
            tunnel = peer.nat
            dnat.append(
                _rule(
                    Match("iifname", peer.tunnel),
                    Match("ip daddr", tunnel.remapped),
                    Nat("dnat", tunnel.local),
                )
            )
            snat.append(
                _rule(
                    Match("oifname", peer.tunnel),
                    Match("ip saddr", tunnel.local),
                    Nat("snat", tunnel.remapped),
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
        NftMap(
            names.MAP_EGRESS,
            comment="tunnel interface -> the chain of its peer for traffic leaving by it",
            elements=egress,
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
