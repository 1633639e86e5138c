"""Drift between the live table and the desired one: by hand on a real kernel, and pure."""

from __future__ import annotations

from dataclasses import replace

import pytest
from nftlab import example_ruleset, nft_in

from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset, render_replace
from peerwall.dataplane.drift import Drift, drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table

PODS = frozenset({"10.244.0.5", "10.244.0.7"})


def live(nft: LibNft) -> Ruleset | None:
    return read_table(nft, "inet", "peerwall")


@pytest.mark.lab
def test_no_drift_after_apply(nft: LibNft, example: Ruleset) -> None:
    nft.run(render_replace(example))
    assert drift(live(nft), example) == []


@pytest.mark.lab
def test_rule_added_by_hand(nft: LibNft, netns: str, example: Ruleset) -> None:
    nft.run(render_replace(example))
    nft_in(
        netns,
        "insert",
        "rule",
        "inet",
        "peerwall",
        "peer-abc-C2",
        "ip",
        "daddr",
        "10.244.9.9",
        "accept",
    )
    assert drift(live(nft), example) == [
        Drift("chain-rules", "chain peer-abc-C2", "unexpected: ip daddr 10.244.9.9 accept")
    ]


@pytest.mark.lab
def test_element_deleted_by_hand(nft: LibNft, netns: str) -> None:
    desired = example_ruleset(PODS)
    nft.run(render_replace(desired))
    nft_in(netns, "delete", "element", "inet", "peerwall", "allow-abc", "{ 10.244.0.7 }")
    assert drift(live(nft), desired) == [Drift("elements-missing", "set allow-abc", "10.244.0.7")]


@pytest.mark.lab
def test_element_added_and_chain_created_by_hand(nft: LibNft, netns: str) -> None:
    desired = example_ruleset(PODS)
    nft.run(render_replace(desired))
    nft_in(netns, "add", "element", "inet", "peerwall", "api-abc", "{ 10.0.3.3, 10.0.1.0/24 }")
    nft_in(netns, "add", "chain", "inet", "peerwall", "backdoor")
    assert drift(live(nft), desired) == [
        Drift("elements-extra", "set api-abc", "10.0.1.0/24, 10.0.3.3"),
        Drift("chain-extra", "chain backdoor", "not in the desired table"),
    ]


@pytest.mark.lab
def test_table_deleted_by_hand(nft: LibNft, netns: str, example: Ruleset) -> None:
    nft.run(render_replace(example))
    nft_in(netns, "delete", "table", "inet", "peerwall")
    assert drift(live(nft), example) == [
        Drift("table-missing", "table inet peerwall", "the table does not exist")
    ]


@pytest.mark.lab
def test_policy_changed_by_hand(nft: LibNft, netns: str, example: Ruleset) -> None:
    nft.run(render_replace(example))
    nft_in(netns, "chain", "inet", "peerwall", "filter-forward", "{ policy drop; }")
    [d] = drift(live(nft), example)
    assert d.kind == "chain-hook"
    assert d.object == "chain filter-forward"
    assert "policy drop, expected" in d.detail


# Pure cases: every kind of drift, without a kernel.


def test_each_kind_of_drift_is_named() -> None:
    desired = example_ruleset(PODS)
    chains = {c.name: c for c in desired.chains}
    fwd = chains["filter-forward"]
    peer = chains["peer-abc-C2"]
    found = Ruleset(
        "inet",
        "peerwall",
        (
            NftSet("allow-abc", flags=(), elements=frozenset({"10.244.0.5", "10.244.0.9"})),
            NftSet("extra-set"),
        ),
        (
            replace(fwd, hook=Hook("filter", "forward", "filter + 1", "accept")),
            replace(peer, rules=(*peer.rules[:-1], "accept")),
            Chain("extra"),
        ),
    )
    got = [(d.kind, d.object) for d in drift(found, desired)]
    assert got == [
        ("set-declaration", "set allow-abc"),
        ("elements-missing", "set allow-abc"),
        ("elements-extra", "set allow-abc"),
        ("set-missing", "set api-abc"),
        ("set-extra", "set extra-set"),
        ("chain-hook", "chain filter-forward"),
        ("chain-rules", "chain peer-abc-C2"),
        ("chain-missing", "chain nat-prerouting"),
        ("chain-missing", "chain nat-postrouting"),
        ("chain-extra", "chain extra"),
    ]
    by_kind = {d.kind: d for d in drift(found, desired)}
    assert by_kind["set-declaration"].detail == (
        "type ipv4_addr, expected type ipv4_addr flags interval"
    )
    assert by_kind["elements-missing"].detail == "10.244.0.7"
    assert by_kind["elements-extra"].detail == "10.244.0.9"
    assert by_kind["chain-rules"].detail == "unexpected: accept; missing: counter drop"


def test_order_of_sets_and_chains_is_not_drift() -> None:
    desired = example_ruleset()
    shuffled = replace(desired, sets=desired.sets[::-1], chains=desired.chains[::-1])
    assert drift(shuffled, desired) == []


def test_str_of_a_drift() -> None:
    d = Drift("elements-missing", "set allow-abc", "10.244.0.7")
    assert str(d) == "elements-missing set allow-abc: 10.244.0.7"
