"""The packet tracer: compiled rulesets, walked packet by packet, give exactly the policy's table.

``traced_table`` decides every cell from packets alone (NAT, routing by address, the gateways'
filter chains), so its agreement with ``expect()`` proves the compiler enforces DESIGN.md §1; the
mutation tests prove the tracer really reads the ruleset rather than echoing the policy.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.compile import ctmark, names
from peerwall.compile.build import OTHER_TUNNEL, build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.errors import UnknownName
from peerwall.model import SecurityMode, Topology, load_topology, topology_from_data
from peerwall.model.addressing import translate
from peerwall.nft.interpret import Packet, TraceError, run_chain, run_hook
from peerwall.nft.objects import Chain, Hook, Match, NftSet, Ruleset
from peerwall.nft.parse import parse_address, parse_rule
from peerwall.policy import Verdict, expect
from peerwall.verify.paths import POD_IFNAME, trace, traced_table
from strategies import reflecting_topologies

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
EXAMPLES = ("seed.yaml", "three-clusters.yaml", "reflection.yaml")


def example(name: str) -> Topology:
    text = resources.files("peerwall").joinpath(f"examples/{name}").read_text()
    return load_topology(text, name)


def table(t: Topology, cluster: str, mode: SecurityMode) -> Ruleset:
    return build(gateway_state(t, cluster, mode))


def without(rs: Ruleset, set_name: str, element: object) -> Ruleset:
    sets = tuple(
        replace(s, elements=s.elements - {element}) if s.name == set_name else s  # type: ignore[operator]
        for s in rs.sets
    )
    return replace(rs, sets=sets)


# --- the traced table is the expected table --------------------------------------------------


@pytest.mark.parametrize("mode", list(SecurityMode))
@pytest.mark.parametrize("name", EXAMPLES)
def test_traced_table_equals_expected_on_the_examples(name: str, mode: SecurityMode) -> None:
    t = example(name)
    traced = traced_table(t, mode)
    assert traced.to_dict() == expect(t, mode).table.to_dict()
    assert not expect(t, mode).table.compare(traced)


@budget("trace")
@given(data=reflecting_topologies(), mode=st.sampled_from(list(SecurityMode)))
def test_traced_table_equals_expected_on_generated_topologies(
    data: dict[str, Any], mode: SecurityMode
) -> None:
    t = topology_from_data(data, "generated")
    wrong = list(expect(t, mode).table.compare(traced_table(t, mode)).mismatches())
    assert not wrong, [(m, trace(t, mode, m.source, m.destination).explain()) for m in wrong[:3]]


# --- run_chain on the seed's gateways ---------------------------------------------------------
# In the seed, C1 and C2 overlap: C2 sees C1's pods through a remapped CIDR. P4 was offloaded by
# C1 into C2 (admitted under segregation); P5 is C2's own pod (segregated from C1).


def from_c1(t: Topology, pod: str) -> IPv4Address:
    """``pod`` of C1 as C2 sees it (after C1's SNAT)."""
    return translate(
        t.pod_by_name[pod].ip, t.cluster_by_name["C1"].pod_cidr, t.addresses.remapped("C2", "C1")
    )


def arrived(t: Topology, saddr: IPv4Address, dst: str, ct_state: str = "new") -> Packet:
    """A packet that arrived at C2 from C1's tunnel, after C2's DNAT, towards pod ``dst``."""
    return Packet(
        names.tunnel_ifname("C1"), POD_IFNAME, saddr, t.pod_by_name[dst].ip, ct_state=ct_state
    )


def test_established_packets_are_accepted_only_on_their_own_tunnel() -> None:
    t = example("seed.yaml")
    rs = table(t, "C2", SEG)
    packet = arrived(t, from_c1(t, "P1"), "P5", ct_state="established")
    opened_by_c1 = replace(packet, ct_mark=ctmark.from_peer("C1"))
    verdict, out, rules = run_chain(rs, "filter-forward", opened_by_c1)
    assert (verdict, out) == ("accept", opened_by_c1)
    marks = f"{{ 0x{ctmark.to_peer('C1'):08x}, 0x{ctmark.from_peer('C1'):08x} }}"
    assert rules == [
        "filter-forward: iifname vmap @peers-forward",
        f"{names.peer_chain('C1')}: ct state established ct mark & 0xffff0000 == {marks} accept",
    ]
    # Whatever Liqo holds in the low 16 bits, our bits decide.
    liqo_bits = replace(opened_by_c1, ct_mark=ctmark.from_peer("C1") | 3)
    assert run_chain(rs, "filter-forward", liqo_bits)[0] == "accept"
    # A reply to C2's own connection towards C1 is accepted too.
    assert run_chain(rs, "filter-forward", replace(packet, ct_mark=ctmark.to_peer("C1")))[0] == (
        "accept"
    )
    # Not a connection of C1's tunnel (none peerwall saw, or another peer's): dropped.
    # Nor is a connection Liqo marked (a local node's NodePort connection) in the direction the
    # peer would open it.
    for mark in (0, ctmark.from_peer("C3"), ctmark.to_peer("C2"), 3):
        verdict, _, rules = run_chain(rs, "filter-forward", replace(packet, ct_mark=mark))
        assert verdict == "drop"
        assert rules[-1].endswith(f'counter drop comment "{OTHER_TUNNEL}"')
    # The same packet opening a connection is segregated, and a mid-stream one is never picked up.
    assert run_chain(rs, "filter-forward", replace(packet, ct_state="new"))[0] == "drop"
    full = table(t, "C2", FULL)
    assert run_chain(full, "filter-forward", replace(packet, ct_state="new"))[0] == "accept"
    verdict, _, rules = run_chain(
        full, "filter-forward", replace(packet, ct_state="new", tcp_flags="ack")
    )
    assert verdict == "drop"
    assert rules[-1].startswith(f"{names.peer_chain('C1')}: tcp flags & (fin|syn|rst|ack) != syn")


def test_a_new_connection_leaving_by_a_tunnel_is_marked_and_must_be_a_syn() -> None:
    t = example("seed.yaml")
    rs = table(t, "C2", SEG)
    leaving = Packet(
        POD_IFNAME, names.tunnel_ifname("C1"), t.pod_by_name["P5"].ip, from_c1(t, "P1")
    )
    verdict, out, _ = run_chain(rs, "filter-forward", leaving)
    assert (verdict, out.ct_mark) == ("accept", ctmark.to_peer("C1"))
    # A connection Liqo marked before us keeps exactly Liqo's mark (its fwmark rule is exact).
    verdict, out, _ = run_chain(rs, "filter-forward", replace(leaving, ct_mark=3))
    assert (verdict, out.ct_mark) == ("accept", 3)
    assert run_chain(rs, "filter-forward", replace(leaving, tcp_flags="ack"))[0] == "drop"
    assert run_hook(rs, "output", replace(leaving, iif=None, tcp_flags="ack"))[0] == "drop"
    established = replace(leaving, ct_state="established", tcp_flags="ack")
    for mark in (ctmark.to_peer("C1"), ctmark.from_peer("C1")):
        assert run_chain(rs, "filter-forward", replace(established, ct_mark=mark))[0] == "accept"
    assert run_chain(rs, "filter-forward", established)[0] == "drop"  # unmarked


@pytest.mark.parametrize("mode", list(SecurityMode))
def test_a_spoofed_source_on_a_tunnel_is_dropped(mode: SecurityMode) -> None:
    t = example("seed.yaml")
    rs = table(t, "C2", mode)
    legit = arrived(t, from_c1(t, "P1"), "P4")
    assert run_chain(rs, "filter-forward", legit)[0] == "accept"
    # C1 claims a source in C2's own pod CIDR (P5's address): the anti-spoofing rule drops it.
    spoofed = replace(legit, saddr=t.pod_by_name["P5"].ip)
    verdict, _, rules = run_chain(rs, "filter-forward", spoofed)
    assert verdict == "drop"
    assert rules[-1].startswith(f"{names.peer_chain('C1')}: ip saddr != ")


def test_a_segregated_destination_is_dropped_and_ipv6_too() -> None:
    t = example("seed.yaml")
    packet = arrived(t, from_c1(t, "P1"), "P5")
    verdict, _, rules = run_chain(table(t, "C2", SEG), "filter-forward", packet)
    assert verdict == "drop"
    assert rules == [
        "filter-forward: iifname vmap @peers-forward",
        f"{names.peer_chain('C1')}: ct mark & 0x0000ffff == 0x00000000"
        f" ct mark set ct mark & 0x0000ffff | 0x{ctmark.from_peer('C1'):08x}",
        f"{names.peer_chain('C1')}: limit rate 50/second burst 100 packets"
        ' log prefix "peerwall:dropped:forward:denied:C1" group 19',
        f"{names.peer_chain('C1')}: counter drop",
    ]
    assert run_chain(table(t, "C2", FULL), "filter-forward", packet)[0] == "accept"
    # IPv6 from the tunnel matches no address rule and meets the final drop, in every mode.
    v6 = replace(packet, proto="ipv6")
    assert run_chain(table(t, "C2", FULL), "filter-forward", v6)[0] == "drop"


def test_an_unknown_tunnel_fails_closed() -> None:
    t = example("seed.yaml")
    stranger = replace(arrived(t, from_c1(t, "P1"), "P4"), iif="pwt-deadbeef")
    verdict, _, rules = run_chain(table(t, "C2", FULL), "filter-forward", stranger)
    assert verdict == "drop"
    assert rules[-1].startswith('filter-forward: iifname "pwt-*" counter drop')


def test_the_gateway_input_hook_lets_in_only_the_link_needs() -> None:
    t = example("seed.yaml")
    gw = IPv4Address("169.254.2.0")
    rs = build(gateway_state(t, "C2", SEG, gateways={"C1": gw}))
    me = IPv4Address("169.254.2.1")
    tunnel = names.tunnel_ifname("C1")
    ping = Packet(tunnel, None, gw, me, "icmp", None, "echo-request")
    assert run_hook(rs, "input", ping)[0] == "accept"
    assert run_hook(rs, "input", replace(ping, saddr=from_c1(t, "P1")))[0] == "drop"
    conncheck = Packet(tunnel, None, gw, me, "udp", 12345)
    assert run_hook(rs, "input", conncheck)[0] == "accept"
    for proto, port in (("tcp", 7777), ("udp", 7777), ("tcp", 12345)):
        assert run_hook(rs, "input", Packet(tunnel, None, gw, me, proto, port))[0] == "drop"
    assert run_hook(rs, "input", replace(ping, proto="ipv6"))[0] == "drop"


def test_nat_chains_translate_by_prefix() -> None:
    t = example("seed.yaml")
    rs = table(t, "C2", SEG)
    remapped = t.addresses.remapped("C1", "C2")  # how C1 addresses C2's pods
    arriving = Packet(names.tunnel_ifname("C1"), None, from_c1(t, "P1"), remapped[1])
    verdict, out, rules = run_hook(rs, "prerouting", arriving)
    assert (verdict, out.daddr, out.saddr) == ("accept", t.pod_by_name["P4"].ip, arriving.saddr)
    assert len(rules) == 1
    local = replace(arriving, iif=POD_IFNAME)
    assert run_hook(rs, "prerouting", local) == ("accept", local, [])
    leaving = Packet(
        POD_IFNAME, names.tunnel_ifname("C1"), t.pod_by_name["P5"].ip, from_c1(t, "P1")
    )
    assert run_hook(rs, "postrouting", leaving)[1].saddr in remapped
    # Before routing there is no output interface: an oifname match never matches.
    assert run_hook(rs, "postrouting", replace(leaving, oif=None))[1] == replace(leaving, oif=None)


# --- the interpreter's nftables semantics on a hand-made table ---------------------------------


def toy(*rules: str, extra: tuple[Chain, ...] = ()) -> Ruleset:
    elements = frozenset(
        e for e in map(parse_address, ("10.0.0.1", "10.1.0.0/16", "10.2.0.5-10.2.0.9")) if e
    )
    return Ruleset(
        "inet",
        "peerwall",
        (NftSet("s", flags=("interval",), elements=elements),),
        (),
        (
            Chain("base", tuple(map(parse_rule, rules)), Hook("filter", "forward", 0, "drop")),
            Chain(
                "sub",
                tuple(map(parse_rule, ("ip saddr 1.1.1.1 return", "ip saddr 2.2.2.2 accept"))),
            ),
            *extra,
        ),
    )


def pkt(saddr: str, daddr: str = "9.9.9.9", iif: str | None = "a", oif: str | None = "b") -> Packet:
    return Packet(iif, oif, IPv4Address(saddr), IPv4Address(daddr))


@pytest.mark.parametrize(
    ("daddr", "hit"),
    [
        ("10.0.0.1", True),
        ("10.0.0.2", False),
        ("10.1.255.255", True),
        ("10.2.0.4", False),
        ("10.2.0.5", True),
        ("10.2.0.9", True),
        ("10.2.0.10", False),
    ],
)
def test_set_lookups_cover_addresses_prefixes_and_ranges(daddr: str, hit: bool) -> None:
    rs = toy("ip daddr @s accept", "ip daddr != @s counter")
    verdict, _, rules = run_chain(rs, "base", pkt("1.2.3.4", daddr))
    assert verdict == ("accept" if hit else "drop")  # the base chain's policy is drop
    assert rules == (["base: ip daddr @s accept"] if hit else ["base: ip daddr != @s counter"])


def test_jump_returns_on_fall_through_and_goto_does_not() -> None:
    rs = toy("jump sub", "ip saddr 3.3.3.3 accept")
    assert run_chain(rs, "base", pkt("3.3.3.3"))[0] == "accept"
    assert run_chain(rs, "base", pkt("1.1.1.1"))[0] == "drop"
    assert run_chain(rs, "base", pkt("2.2.2.2"))[0] == "accept"
    assert run_chain(rs, "sub", pkt("3.3.3.3"))[0] == "continue"
    rs = toy("goto sub", "ip saddr 3.3.3.3 accept")
    assert run_chain(rs, "base", pkt("3.3.3.3"))[0] == "drop"


def test_interface_matches_wildcards_and_verdict_maps() -> None:
    rs = toy('iifname != "a" accept', 'oifname vmap { "x" : drop, "b" : jump sub }', "accept")
    assert run_chain(rs, "base", pkt("1.1.1.1", iif="z"))[0] == "accept"
    assert run_chain(rs, "base", pkt("1.1.1.1", oif="x"))[0] == "drop"
    verdict, _, rules = run_chain(rs, "base", pkt("2.2.2.2"))
    assert verdict == "accept" and rules[-1] == "sub: ip saddr 2.2.2.2 accept"
    assert run_chain(rs, "base", pkt("3.3.3.3", oif="q"))[0] == "accept"  # no key: next rule
    assert run_chain(rs, "base", pkt("3.3.3.3", iif=None, oif="x"))[0] == "drop"
    wild = toy('iifname "pw*" accept')
    assert run_chain(wild, "base", pkt("1.1.1.1", iif="pwt-1"))[0] == "accept"
    assert run_chain(wild, "base", pkt("1.1.1.1", iif="eth0"))[0] == "drop"


def test_transport_matches_need_their_protocol() -> None:
    rs = toy("tcp dport != 80 accept")
    assert run_chain(rs, "base", replace(pkt("1.1.1.1"), dport=81))[0] == "accept"
    # A UDP packet has no tcp dport: the negated match does not match either.
    assert run_chain(rs, "base", replace(pkt("1.1.1.1"), proto="udp", dport=81))[0] == "drop"


@pytest.mark.parametrize(
    "rule",
    [
        "ip protocol tcp accept",
        "ip daddr 10.0.0.1/8 accept",
        "ip daddr 10.0.0.9-10.0.0.1 accept",
        "ip6 daddr ::1 accept",
        "ct state bogus accept",
        "ct expiration 1 accept",
        "accept drop",
        "jump",
        "dnat ip to 10.0.0.1",
        "dnat to 10.0.0.0/16",
        "masquerade",
        "counter packets x bytes 1",
        "log prefix x accept",
        'iifname vmap { "a" : queue }',
        "iifname eth0 accept",
    ],
)
def test_an_unknown_rule_form_raises(rule: str) -> None:
    with pytest.raises(ValueError, match="cannot read rule"):
        parse_rule(rule)


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (("ip daddr @nope accept",), "missing set"),
        (("jump nowhere",), "missing chain"),
        (("jump base",), "base chain"),
        (("iifname vmap @nomap",), "missing map"),
        (("snat ip prefix to 10.0.0.0/16",), "not valid in a filter chain"),
    ],
)
def test_an_inconsistent_ruleset_raises(rules: tuple[str, ...], message: str) -> None:
    with pytest.raises(TraceError, match=message):
        run_chain(toy(*rules), "base", pkt("1.1.1.1"))


# --- trace: one cell, explained -----------------------------------------------------------------


def test_trace_explains_the_rule_that_decided() -> None:
    t = example("seed.yaml")
    denied = trace(t, SEG, "P1", "P5")
    assert denied.verdict is Verdict.NO
    assert f"{names.peer_chain('C1')}: counter drop" in denied.explain()
    allowed = trace(t, SEG, "P1", "P4")
    assert allowed.verdict is Verdict.YES
    assert "dnat ip prefix to 10.244.0.0/16" in allowed.explain()
    # The reply came back, as a connection C1 opened through C2's tunnel.
    mark = f"ct state established ct mark & 0xffff0000 == {{ 0x{ctmark.to_peer('C2'):08x},"
    assert mark in allowed.explain()
    assert trace(t, SEG, "P5", "S1").verdict is Verdict.NO  # S1 is not reflected into C2
    assert "not present in C2" in trace(t, SEG, "P5", "S1").reason
    assert trace(t, SEG, "P5", "S2").verdict is Verdict.YES  # P2 backs S2, reflected to C2
    web = trace(example("three-clusters.yaml"), SEG, "cache", "web")  # C2 not peered with C3
    assert web.verdict is Verdict.PARTIAL
    assert [(p.target, p.delivered) for p in web.paths] == [
        ("web1", True),
        ("web2", True),
        ("web3", False),
    ]
    assert web.paths[2].note == "C2 has no address for web3"


def test_trace_names_unknown_endpoints() -> None:
    t = example("seed.yaml")
    with pytest.raises(UnknownName):
        trace(t, SEG, "P1", "nope")
    with pytest.raises(UnknownName):
        trace(t, SEG, "S1", "P1")


# --- mutations: the tracer reads the ruleset, it does not echo the policy -----------------------


def changed_cells(
    t: Topology, mode: SecurityMode, rulesets: dict[str, Ruleset]
) -> set[tuple[str, str]]:
    wrong = list(
        expect(t, mode).table.compare(traced_table(t, mode, rulesets=rulesets)).mismatches()
    )
    assert all(m.observed in (Verdict.NO, Verdict.PARTIAL) for m in wrong)
    return {(m.source, m.destination) for m in wrong}


def test_removing_one_offloaded_pod_blocks_exactly_its_cells() -> None:
    t = example("seed.yaml")
    p4 = t.pod_by_name["P4"].ip
    mutated = without(table(t, "C2", SEG), names.peer_set("C1", SetKind.OFFLOADED), p4)
    assert changed_cells(t, SEG, {"C2": mutated}) == {("P1", "P4"), ("P2", "P4"), ("P3", "P4")}


@pytest.mark.parametrize("mode", list(SecurityMode))
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_element_that_opens_something_matters(name: str, mode: SecurityMode) -> None:
    t = example(name)
    for c in t.clusters:
        rs = table(t, c.name, mode)
        for peer in t.peers[c.name]:
            # Under FullPodToPod the CIDR opens everything (the per-pod sets are kept filled
            # only so that a switch is one element); under segregation the per-pod sets do.
            deciding = (
                [names.peer_cidrs_set(peer)]
                if mode is FULL
                else [names.peer_set(peer, k) for k in SetKind]
            )
            for set_name in deciding:
                if not any(s.name == set_name for s in rs.sets):
                    continue
                for element in rs.set(set_name).elements:
                    mutated = without(rs, set_name, element)
                    assert changed_cells(t, mode, {c.name: mutated}), (c.name, set_name, element)


def test_without_the_prefix_dnat_packets_go_nowhere() -> None:
    t = example("seed.yaml")
    rs = table(t, "C2", FULL)
    mutated = replace(
        rs,
        chains=tuple(replace(c, rules=()) if c.name == "nat-prerouting" else c for c in rs.chains),
    )
    cells = changed_cells(t, FULL, {"C2": mutated})
    assert cells == {(s, d) for s in ("P1", "P2", "P3") for d in ("P4", "P5")}


def test_without_the_established_rule_replies_die() -> None:
    t = example("seed.yaml")
    rs = table(t, "C1", SEG)
    established = Match("ct state", frozenset({"established"}))
    mutated = replace(
        rs,
        chains=tuple(
            replace(c, rules=tuple(r for r in c.rules if r.exprs[0] != established))
            if c.name == names.peer_chain("C2")
            else c
            for c in rs.chains
        ),
    )
    # P1..P3 open connections to P4 in C2; P4's replies enter C1 from C2's tunnel and, no longer
    # accepted as replies of the tunnel's connections, are dropped as state of another tunnel.
    assert changed_cells(t, SEG, {"C1": mutated}) == {("P1", "P4"), ("P2", "P4"), ("P3", "P4")}
