"""sync: element edits, per-peer edits, full replaces, fallback, idempotence; fake and kernel."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from nftlab import FULL, SEG, nft_in, same, seed_table, three_table

from peerwall.compile import names
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError
from peerwall.nft.fake import FakeNft
from peerwall.nft.objects import Action, Match, Rule, SetRef


def live(nft: Nft):  # type: ignore[no-untyped-def]
    return read_table(nft, "inet", "peerwall")


def test_first_sync_creates_the_table_and_second_is_a_no_op(any_nft: Nft) -> None:
    first = sync(any_nft, seed_table())
    assert first.full and first.changed
    assert same(live(any_nft), seed_table())
    second = sync(any_nft, seed_table())
    assert not second.changed and not second.full


@pytest.mark.parametrize(("before", "after"), [(FULL, SEG), (SEG, FULL)])
def test_a_mode_switch_is_one_element(any_nft: Nft, before, after) -> None:  # type: ignore[no-untyped-def]
    sync(any_nft, seed_table(mode=before))
    result = sync(any_nft, seed_table(mode=after))
    assert not result.full and result.transaction.chains == ()
    assert (result.added, result.removed) == ((1, 0) if after is FULL else (0, 1))
    assert same(live(any_nft), seed_table(mode=after))


def test_sync_repairs_drift_element_by_element(any_nft: Nft) -> None:
    table = three_table()
    sync(any_nft, table)
    name = names.peer_cidrs_set("C2")
    any_nft.run(f"add element inet peerwall {name} {{ 10.244.0.0/16 }}\n")  # opened by hand
    result = sync(any_nft, table)
    assert not result.full and result.removed == 1
    assert same(live(any_nft), table)


def test_sync_repairs_a_flushed_table(any_nft: Nft) -> None:
    table = three_table()
    sync(any_nft, table)
    any_nft.run("flush table inet peerwall\n")
    result = sync(any_nft, table)
    assert result.changed and not result.full  # chains refilled, sets untouched
    assert same(live(any_nft), table)


def test_refused_partial_update_falls_back_to_a_full_replace() -> None:
    nft = FakeNft()
    sync(nft, seed_table())
    nft.fail_next = "Error: Could not process rule: No such file or directory"
    result = sync(nft, seed_table(mode=FULL))
    assert result.full and result.fell_back
    assert same(live(nft), seed_table(mode=FULL))


def test_refused_full_replace_raises_and_keeps_the_old_table(any_nft: Nft) -> None:
    sync(any_nft, seed_table())
    table = seed_table()
    bad = Rule((Match("ip daddr", SetRef("no-such-set")), Action("accept")))
    broken = replace(table, chains=tuple(replace(c, rules=(*c.rules, bad)) for c in table.chains))
    with pytest.raises(NftError):
        sync(any_nft, broken, force_full=True)
    assert same(live(any_nft), seed_table())


def test_force_full_replaces_an_equal_table(any_nft: Nft) -> None:
    sync(any_nft, seed_table())
    result = sync(any_nft, seed_table(), force_full=True)
    assert result.full and result.changed


@pytest.mark.lab
def test_counters_of_other_peers_survive_a_peer_change(nft: LibNft, netns: str) -> None:
    table = three_table()
    sync(nft, table)
    chain = names.peer_chain("C2")
    # Give C2's final drop counter a value the kernel keeps: rewrite it by hand with a count.
    doc = json.loads(nft_in(netns, "-j", "list", "chain", "inet", "peerwall", chain))
    handle = [o["rule"]["handle"] for o in doc["nftables"] if "rule" in o][-1]
    nft_in(
        netns,
        "replace",
        "rule",
        "inet",
        "peerwall",
        chain,
        "handle",
        str(handle),
        "counter",
        "packets",
        "7",
        "bytes",
        "700",
        "drop",
    )
    without_c3 = replace(
        table,
        chains=tuple(c for c in table.chains if "C3" not in c.name),
        sets=tuple(s for s in table.sets if names.hash8("C3") not in s.name),
        maps=tuple(
            replace(
                m, elements={k: v for k, v in m.elements.items() if "C3" not in (v.target or "")}
            )
            for m in table.maps
        ),
    )
    result = sync(nft, without_c3)
    assert not result.full
    assert "packets 7 bytes 700" in nft_in(netns, "list", "chain", "inet", "peerwall", chain)
