"""The compiled gateway tables: the sets say what DESIGN.md §1 says, mode changes are one element,
the kernel accepts them and reads them back equal, and `peerwall rules` re-applies cleanly."""

from __future__ import annotations

import subprocess
from importlib import resources
from ipaddress import IPv4Address, IPv4Network

import pytest

from peerwall.compile import ctmark, names
from peerwall.compile.build import INVALID, LIQO_NODEPORT, build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.errors import TopologyInvalid
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.nft.objects import (
    TCP_FLAGS,
    Action,
    Counter,
    CtMarkSet,
    Limit,
    Log,
    Match,
    Rule,
    SetRef,
    VMap,
    masked,
    render_replace,
    render_table,
)
from peerwall.nft.transaction import diff

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
EXAMPLES = ("seed.yaml", "three-clusters.yaml")
STATES = {Match("ct state", frozenset(s)) for s in ({"invalid"}, {"established"}, {"related"})}
STATES.add(Match("ct state", frozenset({"established", "related"})))
NOT_SYN_MATCH = Match(TCP_FLAGS, "syn", negate=True)


def example(name: str) -> Topology:
    text = resources.files("peerwall").joinpath(f"examples/{name}").read_text()
    return load_topology(text, name)


def cases() -> list[tuple[str, str, SecurityMode]]:
    return [
        (name, c.name, mode)
        for name in EXAMPLES
        for c in example(name).clusters
        for mode in SecurityMode
    ]


def table(t: Topology, cluster: str, mode: SecurityMode):  # type: ignore[no-untyped-def]
    return build(gateway_state(t, cluster, mode))


def ip(t: Topology, pod: str) -> IPv4Address:
    return t.pod_by_name[pod].ip


def test_seed_sets_under_each_mode() -> None:
    t = example("seed.yaml")
    c1, c2 = table(t, "C1", SEG), table(t, "C2", SEG)
    # C2 may reach only P2 in C1: the backend of S2, whose namespace is offloaded to C2.
    assert c1.elements(names.peer_set("C2", SetKind.BACKENDS)) == {ip(t, "P2")}
    assert c1.elements(names.peer_set("C2", SetKind.OFFLOADED)) == frozenset()
    # C1 may reach only P4 in C2: the pod it offloaded there.
    assert c2.elements(names.peer_set("C1", SetKind.OFFLOADED)) == {ip(t, "P4")}
    assert c2.elements(names.peer_set("C1", SetKind.BACKENDS)) == frozenset()
    # The mode lives in one set: the pod CIDR under FullPodToPod, nothing under segregation.
    assert c1.elements(names.peer_cidrs_set("C2")) == frozenset()
    full = table(t, "C1", FULL)
    assert full.elements(names.peer_cidrs_set("C2")) == {IPv4Network("10.244.0.0/16")}
    # The per-pod sets are the same in both modes: plain hash sets, no interval flag.
    assert full.set(names.peer_set("C2", SetKind.BACKENDS)) == c1.set(
        names.peer_set("C2", SetKind.BACKENDS)
    )
    assert full.set(names.peer_set("C2", SetKind.BACKENDS)).flags == ()


def test_api_clients_are_the_pods_whose_home_is_the_receiver() -> None:
    t = example("three-clusters.yaml")
    web2 = t.pod_by_name["web2"]  # home C1, runs in C2
    seen = t.addresses.pod_seen_from(web2, "C1")
    for mode in SecurityMode:
        rs = table(t, "C1", mode)
        assert rs.elements(names.peer_set("C2", SetKind.API_CLIENTS)) == {seen}
    chain = table(t, "C1", SEG).chain(names.peer_chain("C2"))
    (rule,) = [r for r in chain.rules if Match("tcp dport", 6443) in r.exprs]
    # Only TCP to the API server's port, from the API clients: not UDP, not another port.
    assert rule == Rule(
        (
            Match("ip daddr", t.addresses.api_ip("C1")),
            Match("tcp dport", 6443),
            Match("ip saddr", SetRef(names.peer_set("C2", SetKind.API_CLIENTS))),
            Action("accept"),
        )
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_mode_change_is_one_element_per_peer(name: str) -> None:
    t = example(name)
    for c in t.clusters:
        # Every mode forced: a global default would not change the peerings that set their own.
        tx = diff(
            build(gateway_state(t, c.name, force=FULL)), build(gateway_state(t, c.name, force=SEG))
        )
        assert not tx.full
        assert tx.chains == ()
        lines = tx.script.splitlines()
        assert len(lines) == len(t.peers[c.name])
        assert all(line.startswith("delete element inet peerwall cidrs-") for line in lines)


def test_peer_chain_and_base_chains() -> None:
    t = example("seed.yaml")
    rs = table(t, "C1", SEG)
    chain = rs.chain(names.peer_chain("C2"))
    remapped = t.addresses.remapped("C1", "C2")
    spoofed = Match("ip saddr", remapped, negate=True)
    ours = masked("ct mark", 0xFFFF0000)
    marks = Match(ours, frozenset({ctmark.from_peer("C2"), ctmark.to_peer("C2")}))
    invalid = Match("ct state", frozenset({"invalid"}))
    # Only an established packet (its addresses fixed by conntrack) comes before the source
    # check; each drop rule is preceded by its report: the same matches, rate-limited, to NFLOG.
    assert chain.rules[:5] == (
        Rule((invalid, Limit(50, 100), Log("peerwall:dropped:forward:invalid:C2", 19))),
        Rule((invalid, Counter(), Action("drop")), INVALID),
        Rule((Match("ct state", frozenset({"established"})), marks, Action("accept"))),
        Rule((spoofed, Limit(50, 100), Log("peerwall:dropped:forward:spoofed:C2", 19))),
        Rule((spoofed, Counter(), Action("drop")), "spoofed source"),
    )
    # Liqo's NodePort connections (its mark in the low 16 bits, none of ours) pass on their
    # state only as replies, and only after the source check; a new connection is marked with
    # our bits only, and only if Liqo has not marked it.
    established_related = Match("ct state", frozenset({"established", "related"}))
    assert (
        Rule(
            (
                established_related,
                Match("ct direction", "reply"),
                Match(ours, 0),
                Match("ct mark", 0, negate=True),
                Action("accept"),
            ),
            LIQO_NODEPORT,
        )
        in chain.rules[5:]
    )
    assert (
        Rule(
            (
                Match(masked("ct mark", 0x0000FFFF), 0),
                CtMarkSet(ctmark.from_peer("C2"), keep=0xFFFF),
            )
        )
        in chain.rules
    )
    assert chain.rules[-2] == Rule((Limit(50, 100), Log("peerwall:dropped:forward:denied:C2", 19)))
    assert chain.rules[-1] == Rule((Counter(), Action("drop")))
    assert chain.comment and "C2" in chain.comment
    for base, dispatch in (
        (names.CHAIN_FORWARD, names.MAP_FORWARD),
        (names.CHAIN_INPUT, names.MAP_INPUT),
    ):
        rules = rs.chain(base).rules
        assert rules[0] == Rule((VMap("iifname", dispatch),))
        assert rules[1].exprs[0] == Match("iifname", "pwt-*")  # fail closed
        assert rules[1].exprs[-1] == Action("drop")
    assert rs.chain(names.CHAIN_FORWARD).rules[2] == Rule((VMap("oifname", names.MAP_EGRESS),))
    assert rs.chain(names.CHAIN_OUTPUT).rules == (Rule((VMap("oifname", names.MAP_EGRESS),)),)
    assert rs.map(names.MAP_FORWARD).elements == {
        names.tunnel_ifname("C2"): Action("jump", names.peer_chain("C2"))
    }
    assert rs.map(names.MAP_EGRESS).elements == {
        names.tunnel_ifname("C2"): Action("jump", names.peer_egress_chain("C2"))
    }


def test_the_gateway_itself_accepts_only_what_the_link_needs() -> None:
    t = example("seed.yaml")
    gateway = IPv4Address("169.254.2.1")
    rs = build(gateway_state(t, "C1", SEG, gateways={"C2": gateway}))
    rules = rs.chain(names.peer_input_chain("C2")).rules
    src = Match("ip saddr", gateway)
    state = [r for r in rules if r.exprs[0] in STATES or r.exprs[0] == NOT_SYN_MATCH]
    assert [r.exprs for r in rules[len(state) :]] == [
        (Match(masked("ct mark", 0xFFFF), 0), CtMarkSet(ctmark.from_peer("C2"), keep=0xFFFF)),
        (src, Match("icmp type", "echo-request"), Action("accept")),
        (src, Match("udp dport", 12345), Action("accept")),
        (Limit(50, 100), Log("peerwall:dropped:input:gateway:C2", 19)),
        (Counter(), Action("drop")),
    ]


def test_sets_and_chains_carry_comments() -> None:
    rs = table(example("seed.yaml"), "C1", SEG)
    assert rs.set(names.peer_set("C2", SetKind.BACKENDS)).comment == (
        "local backends of services reflected to C2"
    )
    assert all(s.comment for s in rs.sets)
    assert all(c.comment for c in rs.chains if c.hook is None)


def nft_in(netns: str, *args: str, script: str | None = None) -> str:
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.lab
@pytest.mark.parametrize(("name", "cluster", "mode"), cases())
def test_nft_accepts_the_table_and_reads_it_back_equal(
    netns: str, name: str, cluster: str, mode: SecurityMode
) -> None:
    ruleset = table(example(name), cluster, mode)
    # `nft -c`: a real parse and a dry-run commit by the kernel, in a throwaway namespace.
    nft_in(netns, "-c", "-f", "-", script=render_table(ruleset))
    with LibNft(netns) as nft:
        nft.run(render_replace(ruleset))
        live = read_table(nft, "inet", "peerwall")
        assert live is not None
        assert live.sets == ruleset.sets and live.maps == ruleset.maps
        assert live.chains == ruleset.chains
        assert not sync(nft, ruleset).changed
    listing = nft_in(netns, "list", "table", "inet", "peerwall")
    assert 'comment "local backends of services reflected to' in listing


@pytest.mark.lab
def test_the_rules_script_applies_twice_and_in_both_orders(netns: str) -> None:
    t = example("three-clusters.yaml")
    seg, full = (render_replace(table(t, "C1", m)) for m in (SEG, FULL))
    with LibNft(netns) as nft:
        for script, want in ((seg, SEG), (seg, SEG), (full, FULL), (seg, SEG), (full, FULL)):
            nft_in(netns, "-f", "-", script=script)
            live = read_table(nft, "inet", "peerwall")
            assert live is not None
            expected = table(t, "C1", want)
            assert live.chains == expected.chains  # exactly one copy of every rule
            assert live.sets == expected.sets


def test_audit_is_one_element_and_only_under_segregation() -> None:
    t = example("seed.yaml")
    plain = build(gateway_state(t, "C1", SEG))
    audited = build(gateway_state(t, "C1", SEG, audit=True))
    pod_cidr = t.cluster_by_name["C1"].pod_cidr
    assert audited.elements(names.peer_audit_set("C2")) == {pod_cidr}
    assert plain.elements(names.peer_audit_set("C2")) == set()
    # Switching audit changes exactly that element: the same rules, the same other sets.
    tx = diff(plain, audited)
    assert not tx.full and (tx.added, tx.removed) == (1, 0)
    assert tx.script == f"add element inet peerwall {names.peer_audit_set('C2')} {{ {pod_cidr} }}\n"
    # Under FullPodToPod audit has nothing to audit.
    assert (
        build(gateway_state(t, "C1", FULL, audit=True)).elements(names.peer_audit_set("C2"))
        == set()
    )


def test_a_peerings_security_audit_wins_over_the_global_default() -> None:
    text = (
        resources.files("peerwall")
        .joinpath("examples/seed.yaml")
        .read_text()
        .replace(
            "  - consumer: C1\n    provider: C2\n",
            "  - consumer: C1\n    provider: C2\n    securityAudit: true\n",
        )
    )
    t = load_topology(text, "seed.yaml")
    assert t.peering_audit("C2", "C1") is True
    for cluster, peer in (("C1", "C2"), ("C2", "C1")):
        assert gateway_state(t, cluster, SEG).peers[peer].audit
    with pytest.raises(TopologyInvalid, match=r"peerings\[0\]\.securityAudit"):
        load_topology(text.replace("securityAudit: true", "securityAudit: maybe"), "seed.yaml")


def test_peers_with_one_mark_id_clash_in_one_gateway() -> None:
    # c5 and c92: different hash8, one 15-bit mark id (compile.ctmark).
    assert names.hash8("c5") != names.hash8("c92")
    assert ctmark.peer_id("c5") == ctmark.peer_id("c92")
    clash = names.clashes([("c5", "t1"), ("c92", "t2")])
    assert set(clash) == {"c5", "c92"}
    assert "connection-mark id" in clash["c5"]
    assert names.clashes([("c5", "t1"), ("c6", "t2")]) == {}
