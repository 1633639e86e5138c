"""``compile.flows.Verdicts`` against ``stale``, its definition: the flow cleanup judges entries
through ``Verdicts`` (what each peer admits prepared once per clearing, as integers), so that a
table where every entry is its own kind costs no rebuild of the peer's elements per entry. It must
give exactly ``stale``'s answers, reasons included, on any state and any entry: generated
topologies, every gateway and mode, peers varied where ``stale`` reads them (audit, gateway
addresses, masquerade, API server addresses, conncheck port, peers whose sources overlap, their
order), entries drawn near every boundary the verdict has (each network's ends, each set's
members, the NAT bindings the rules make and others, the ports and marks that matter)."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.compile import ctmark
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import BINDING, NOT_ADMITTED, SOURCE_NAT, Flow, Tuple, Verdicts, stale
from peerwall.compile.state import CONNCHECK_PORT, GatewayState, PeerState, SetKind
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.model.addressing import translate
from strategies import topologies

PROTOS = ("tcp", "udp", "icmp", "other")


def _near(net: IPv4Network) -> list[IPv4Address]:
    """A network's ends and the addresses just outside them."""
    lo, hi = int(net.network_address), int(net.broadcast_address)
    return [IPv4Address(a) for a in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1) if 0 <= a < 2**32]


def _pool(*peers: PeerState) -> list[IPv4Address]:
    """Every address a verdict about ``peers`` turns on, and its neighbours."""
    out: set[IPv4Address] = set()
    for peer in peers:
        nets = [*peer.valid_sources, *peer.full_access]
        if peer.nat is not None:
            nets += [peer.nat.remapped, peer.nat.local]
        for net in nets:
            out.update(_near(net))
        for members in peer.members.values():
            out.update(members)
        if peer.api is not None:
            out.update(peer.api.addresses)
        out.update(peer.gateways)
    return sorted(out)


@st.composite
def _varied(draw: st.DrawFn, peer: PeerState, pool: list[IPv4Address]) -> PeerState:
    """``peer`` with what ``stale`` reads varied: audit, gateway addresses, masquerade address,
    more API server addresses, more members."""
    address = st.sampled_from(pool) if pool else st.ip_addresses(v=4)
    changes: dict[str, Any] = {"audit": draw(st.booleans())}
    if draw(st.booleans()):
        changes["gateway"] = draw(address)
        changes["more_gateways"] = tuple(draw(st.lists(address, max_size=2)))
    if draw(st.booleans()):
        changes["masquerade"] = draw(address)
    if peer.api is not None and draw(st.booleans()):
        changes["api"] = replace(peer.api, more=tuple(draw(st.lists(address, max_size=2))))
    if draw(st.booleans()):
        members = dict(peer.members)
        kind = draw(st.sampled_from(list(SetKind)))
        members[kind] = members.get(kind, frozenset()) | set(draw(st.lists(address, max_size=3)))
        changes["members"] = members
    return replace(peer, **changes)


@st.composite
def states(draw: st.DrawFn) -> GatewayState:
    """A gateway's state from a generated topology (or the three-cluster example, whose C1
    remaps for C2), its peers varied, perhaps one more peer whose sources are another's, in any
    order."""
    if draw(st.booleans()):
        text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
        topology = load_topology(text, "three")
    else:
        topology = topology_from_data(draw(topologies()), "generated")
    cluster = draw(st.sampled_from([c.name for c in topology.clusters]))
    state = gateway_state(topology, cluster, draw(st.sampled_from(list(SecurityMode))))
    pool = _pool(*state.peers.values())
    peers = [draw(_varied(p, pool)) for p in state.peers.values()]
    if draw(st.booleans()) and peers:  # overlapping sources: the first peer in order decides
        twin = draw(st.sampled_from(peers))
        peers.append(replace(twin, name="twin", mode=draw(st.sampled_from(list(SecurityMode)))))
    ordered = draw(st.permutations(peers))
    port = draw(st.sampled_from([CONNCHECK_PORT, None, 53]))
    return GatewayState(
        state.cluster, {p.name: p for p in ordered}, state.tunnel_pattern, port, state.flow_log
    )


@st.composite
def flows(draw: st.DrawFn, state: GatewayState, pools: dict[str, list[IPv4Address]]) -> Flow:
    """An entry about one of ``state``'s peers, mostly: addresses near what it is judged by,
    that peer's marks (with Liqo's bits or not), the NAT binding the rules make or another.
    ``pools``: ``_pool`` of each peer, and of them all (under "")."""
    peers = list(state.peers.values())
    if not peers:
        return Flow(
            "udp",
            Tuple(IPv4Address(1), IPv4Address(2), 1, 2),
            Tuple(IPv4Address(2), IPv4Address(1), 2, 1),
        )
    peer = draw(st.sampled_from(peers))
    address = st.one_of(
        st.sampled_from(pools[peer.name]), st.sampled_from(pools[""]), st.ip_addresses(v=4)
    )
    ports = [8, 53, 6443, CONNCHECK_PORT, *(p.api.port for p in peers if p.api)]
    port = st.one_of(st.none(), st.sampled_from(ports), st.integers(0, 65535))
    ours = [ctmark.from_peer(p.name) for p in peers] + [ctmark.to_peer(p.name) for p in peers]
    mark = st.one_of(
        st.just(0),
        st.just(3),  # Liqo's
        st.builds(
            int.__or__,
            st.sampled_from([ctmark.from_peer(peer.name), ctmark.to_peer(peer.name)]),
            st.sampled_from([0, 3]),
        ),
        st.sampled_from(ours),
        st.integers(0, 2**32 - 1),
    )
    src, dst, sport, dport = draw(address), draw(address), draw(port), draw(port)
    rsrc, rdst = dst, src  # the reply mirrors the original: no NAT
    how = draw(st.sampled_from(["mirror", "nat", "any"]))
    nat = peer.nat
    if how == "nat" and nat is not None:  # the bindings the rules make, where they apply
        if dst in nat.remapped:
            rsrc = translate(dst, nat.remapped, nat.local)
        if src in nat.local:
            rdst = translate(src, nat.local, nat.remapped)
    elif how == "any":
        rsrc, rdst = draw(address), draw(address)
    rsport = draw(st.one_of(st.just(dport), port))
    proto = draw(st.sampled_from(PROTOS))
    return Flow(proto, Tuple(src, dst, sport, dport), Tuple(rsrc, rdst, rsport, sport), draw(mark))


def test_verdicts_answer_as_stale_on_any_state_and_entry() -> None:
    """Equal verdicts and reasons; and the run reaches every answer ``stale`` has (each rule
    broken, and kept), so that an equality of Nones proves nothing alone."""
    seen: set[str | None] = set()

    @budget("flow-verdicts", derandomize=True, database=None)
    @given(st.data())
    def compare(data: st.DataObject) -> None:
        state = data.draw(states())
        verdicts = Verdicts(state)
        pools = {p.name: _pool(p) for p in state.peers.values()}
        pools[""] = _pool(*state.peers.values())
        for flow in data.draw(st.lists(flows(state, pools), min_size=10, max_size=40)):
            want = stale(state, flow)
            assert verdicts(flow) == want, flow
            cut = verdicts.cut(
                {"tcp": 6, "udp": 17, "icmp": 1}.get(flow.proto, 0),
                int(flow.orig.src),
                int(flow.orig.dst),
                flow.orig.dport,
                int(flow.reply.src),
                int(flow.reply.dst),
                flow.reply.sport,
                flow.mark,
            )
            assert (cut is None) == (want is None), flow
            seen.add(None if cut is None else cut.rule)

    compare()
    assert seen == {None, BINDING, NOT_ADMITTED, SOURCE_NAT}


def test_what_each_peer_admits_is_prepared_once_per_clearing() -> None:
    """Many entries of one peer, each its own kind, judged through one ``Verdicts``: the peer's
    admitted elements are prepared on the first and reused (the per-call rebuild ``stale`` does
    is what made a table of distinct entries slow), and the answers are still ``stale``'s."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    verdicts = Verdicts(state)
    c3 = ctmark.from_peer("C3")
    pod, first = IPv4Address("10.50.1.1"), IPv4Address("10.244.0.0")
    prepared = []
    for i in range(2000):
        dst = first + i
        flow = Flow("udp", Tuple(pod, dst, 1024, 53 + i % 7), Tuple(dst, pod, 53 + i % 7, 1024), c3)
        assert verdicts(flow) == stale(state, flow)
        prepared.append(verdicts._prepared[list(state.peers).index("C3")])
    assert prepared[0] is not None and all(p is prepared[0] for p in prepared)
