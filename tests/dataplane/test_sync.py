"""sync on a real kernel: element-only updates, full replaces, fallback, idempotence."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from nftlab import example_ruleset, nft_in

from peerwall.compile.diff import diff
from peerwall.compile.ruleset import Chain, NftSet, Ruleset, render_replace
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError

pytestmark = pytest.mark.lab

CIDR = frozenset({"10.244.0.0/16"})
PODS = frozenset({"10.244.0.5", "10.244.0.7"})


def live(nft: LibNft) -> Ruleset | None:
    return read_table(nft, "inet", "peerwall")


def table_handle(netns: str) -> int:
    [table] = [
        o["table"]
        for o in json.loads(nft_in(netns, "-j", "list", "tables"))["nftables"]
        if "table" in o
    ]
    return int(table["handle"])


def test_first_sync_creates_the_table_and_second_is_a_no_op(nft: LibNft, example: Ruleset) -> None:
    first = sync(nft, example)
    assert (first.full, first.changed, first.added, first.removed) == (True, True, 1, 0)
    assert live(nft) == example
    second = sync(nft, example)
    assert (second.full, second.changed, second.added, second.removed) == (False, False, 0, 0)
    assert second.seconds >= 0


@pytest.mark.parametrize(("before", "after"), [(CIDR, PODS), (PODS, CIDR)])
def test_element_only_switch_applies_in_the_kernel(
    nft: LibNft, before: frozenset[str], after: frozenset[str]
) -> None:
    # The pod CIDR overlaps each pod address: adding before deleting would be refused.
    old, new = example_ruleset(before), example_ruleset(after)
    nft.run(render_replace(old))
    tx = diff(live(nft), new)
    assert not tx.full
    assert tx.script.startswith("delete element inet peerwall allow-abc")
    nft.run(tx.script)
    assert live(nft) == new


@pytest.mark.parametrize(("before", "after"), [(CIDR, PODS), (PODS, CIDR)])
def test_sync_switches_elements_without_touching_rules(
    nft: LibNft, netns: str, before: frozenset[str], after: frozenset[str]
) -> None:
    sync(nft, example_ruleset(before))
    handle = table_handle(netns)
    out = sync(nft, example_ruleset(after))
    assert (out.full, out.changed) == (False, True)
    assert (out.added, out.removed) == (len(after), len(before))
    assert live(nft) == example_ruleset(after)
    # Same table: nothing was rebuilt (rule counters survive).
    assert table_handle(netns) == handle
    assert not sync(nft, example_ruleset(after)).changed


def test_skeleton_change_is_a_full_replace(nft: LibNft, example: Ruleset) -> None:
    sync(nft, example)
    peer = example.chain("peer-abc-C2")
    rules = (*peer.rules[:-1], "ip daddr 10.244.255.253 accept", peer.rules[-1])
    changed = replace(
        example,
        sets=(*example.sets, NftSet("svc-abc", elements=frozenset({"10.244.3.3"}))),
        chains=tuple(replace(c, rules=rules) if c is peer else c for c in example.chains),
    )
    out = sync(nft, changed)
    assert (out.full, out.changed, out.added, out.removed) == (True, True, 1, 0)
    assert live(nft) == changed
    back = sync(nft, example)
    assert back.full
    assert live(nft) == example


def test_sync_repairs_drift(nft: LibNft, netns: str) -> None:
    desired = example_ruleset(PODS)
    sync(nft, desired)
    nft_in(netns, "delete", "element", "inet", "peerwall", "allow-abc", "{ 10.244.0.7 }")
    # A range, which peerwall never writes, must still be removable.
    nft_in(netns, "add", "element", "inet", "peerwall", "api-abc", "{ 10.0.0.1-10.0.0.9 }")
    out = sync(nft, desired)
    assert (out.full, out.added, out.removed) == (False, 1, 1)
    assert live(nft) == desired
    nft_in(netns, "add", "rule", "inet", "peerwall", "peer-abc-C2", "accept")
    assert sync(nft, desired).full
    assert live(nft) == desired


def test_refused_element_update_falls_back_to_a_full_replace(nft: LibNft) -> None:
    # A set of size 1 reads back like the desired one (size is not modelled), so the diff is
    # element-only, and the kernel refuses the second element: sync must then replace the table.
    desired = example_ruleset(PODS)
    script = render_replace(example_ruleset(frozenset({"10.244.0.5"})))
    nft.run(
        script.replace(
            "\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements",
            "\t\ttype ipv4_addr\n\t\tsize 1\n\t\tflags interval\n\t\telements",
            1,
        )
    )
    assert diff(live(nft), desired).full is False
    out = sync(nft, desired)
    assert (out.full, out.changed, out.added, out.removed) == (True, True, 1, 0)
    assert live(nft) == desired


def test_refused_full_replace_raises_and_keeps_the_old_ruleset(
    nft: LibNft, netns: str, example: Ruleset
) -> None:
    sync(nft, example)
    before = nft_in(netns, "-s", "list", "ruleset")
    broken = replace(example, chains=(*example.chains, Chain("bad", ("jump nowhere",))))
    with pytest.raises(NftError, match="nowhere"):
        sync(nft, broken)
    assert nft_in(netns, "-s", "list", "ruleset") == before


def test_force_full_replaces_an_equal_table(nft: LibNft, netns: str, example: Ruleset) -> None:
    sync(nft, example)
    handle = table_handle(netns)
    out = sync(nft, example, force_full=True)
    assert (out.full, out.changed, out.added, out.removed) == (True, True, 0, 0)
    assert live(nft) == example
    # A new table (rule handles restart per table, table handles do not).
    assert table_handle(netns) != handle


def test_large_element_change_is_one_fast_transaction(nft: LibNft) -> None:
    many = frozenset(f"10.244.{i // 250}.{i % 250 + 1}" for i in range(10_000))
    sync(nft, example_ruleset(CIDR))
    out = sync(nft, example_ruleset(many))
    assert (out.full, out.added, out.removed) == (False, 10_000, 1)
    assert live(nft) == example_ruleset(many)
    assert out.seconds < 5  # ~0.1 s measured; generous for a loaded CI machine
