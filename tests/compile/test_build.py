"""The compiled gateway rulesets: accepted by the kernel, canonical, and mode changes are sets only."""

from __future__ import annotations

import subprocess
from importlib import resources

import pytest

from peerwall.compile.build import build
from peerwall.compile.diff import diff
from peerwall.compile.names import peer_allow_set, peer_api_clients_set, peer_chain
from peerwall.compile.ruleset import render_replace, render_table
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.model.addressing import plan_addresses

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
EXAMPLES = ("seed.yaml", "three-clusters.yaml")


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


def test_seed_segregation_sets() -> None:
    t = example("seed.yaml")
    c1 = build(t, "C1", SEG)
    # C2 may reach only P2 in C1: the backend of S2, whose namespace is offloaded to C2.
    assert c1.set(peer_allow_set("C2")).elements == {str(t.pod_by_name["P2"].ip)}
    c2 = build(t, "C2", SEG)
    # C1 may reach only P4 in C2: the pod it offloaded there.
    assert c2.set(peer_allow_set("C1")).elements == {str(t.pod_by_name["P4"].ip)}
    assert build(t, "C1", FULL).set(peer_allow_set("C2")).elements == {"10.244.0.0/16"}


def test_api_clients_are_the_pods_whose_home_is_the_receiver() -> None:
    t = example("three-clusters.yaml")
    ruleset = build(t, "C1", SEG)
    web2 = t.pod_by_name["web2"]  # home C1, runs in C2
    seen = plan_addresses(t).pod_seen_from(web2, "C1")
    assert ruleset.set(peer_api_clients_set("C2")).elements == {str(seen)}
    assert build(t, "C1", FULL).set(peer_api_clients_set("C2")).elements == frozenset()


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_mode_change_is_an_element_only_transaction(name: str) -> None:
    t = example(name)
    for c in t.clusters:
        tx = diff(build(t, c.name, FULL), build(t, c.name, SEG))
        assert not tx.full
        assert "chain" not in tx.script and "rule" not in tx.script


def test_peer_chain_matches_the_tunnel_and_drops_foreign_sources() -> None:
    t = example("seed.yaml")
    chain = build(t, "C1", SEG).chain(peer_chain("C2"))
    assert chain.rules[0].startswith("ip saddr != ") and chain.rules[0].endswith("counter drop")
    assert chain.rules[-1] == "counter drop"
    forward = build(t, "C1", SEG).chain("filter-forward").rules
    assert forward[0] == "ct state established,related accept"
    assert any(r.startswith('iifname "pwt-') and peer_chain("C2") in r for r in forward)


@pytest.mark.lab
@pytest.mark.parametrize(("name", "cluster", "mode"), cases())
def test_nft_accepts_the_ruleset_and_reads_it_back_unchanged(
    netns: str, name: str, cluster: str, mode: SecurityMode
) -> None:
    ruleset = build(example(name), cluster, mode)
    # `nft -c`: a real parse and a dry-run commit by the kernel, in a throwaway namespace.
    check = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-c", "-f", "-"],
        input=render_table(ruleset),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    with LibNft(netns) as nft:
        nft.run(render_replace(ruleset))
        assert read_table(nft, "inet", "peerwall") == ruleset
        assert not sync(nft, ruleset).changed
