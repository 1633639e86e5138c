"""Drift: every hand-made change to a gateway's table is named, on the fake and the kernel."""

from __future__ import annotations

from dataclasses import replace

from nftlab import seed_table

from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.dataplane.drift import (
    CHAIN_EXTRA,
    CHAIN_HOOK,
    CHAIN_MISSING,
    CHAIN_RULES,
    ELEMENTS_EXTRA,
    ELEMENTS_MISSING,
    SET_DECLARATION,
    SET_EXTRA,
    SET_MISSING,
    TABLE_MISSING,
    Drift,
    drift,
)
from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.nft.objects import render_replace

BACKENDS = names.peer_set("C2", SetKind.BACKENDS)


def live(nft: Nft):  # type: ignore[no-untyped-def]
    return read_table(nft, "inet", "peerwall")


def test_no_drift_after_apply(any_nft: Nft) -> None:
    any_nft.run(render_replace(seed_table()))
    assert drift(live(any_nft), seed_table()) == []


def test_rule_added_by_hand(any_nft: Nft) -> None:
    any_nft.run(render_replace(seed_table()))
    any_nft.run(f"add rule inet peerwall {names.peer_chain('C2')} ip daddr 10.244.0.9 accept\n")
    [d] = drift(live(any_nft), seed_table())
    assert d.kind == CHAIN_RULES and d.object == f"chain {names.peer_chain('C2')}"
    assert d.detail == "unexpected: ip daddr 10.244.0.9 accept"


def test_elements_deleted_and_added_by_hand(any_nft: Nft) -> None:
    table = seed_table()
    any_nft.run(render_replace(table))
    [p2] = table.set(BACKENDS).elements
    any_nft.run(f"delete element inet peerwall {BACKENDS} {{ {p2} }}\n")
    any_nft.run(f"add element inet peerwall {BACKENDS} {{ 10.244.7.7 }}\n")
    assert drift(live(any_nft), table) == [
        Drift(ELEMENTS_MISSING, f"set {BACKENDS}", str(p2)),
        Drift(ELEMENTS_EXTRA, f"set {BACKENDS}", "10.244.7.7"),
    ]


def test_table_deleted_or_flushed_by_hand(any_nft: Nft) -> None:
    any_nft.run(render_replace(seed_table()))
    any_nft.run("flush table inet peerwall\n")
    kinds = {d.kind for d in drift(live(any_nft), seed_table())}
    assert kinds == {CHAIN_RULES}
    any_nft.run("delete table inet peerwall\n")
    assert [d.kind for d in drift(live(any_nft), seed_table())] == [TABLE_MISSING]


def test_chain_created_by_hand(any_nft: Nft) -> None:
    any_nft.run(render_replace(seed_table()))
    any_nft.run("add chain inet peerwall intruder\n")
    assert [d.kind for d in drift(live(any_nft), seed_table())] == [CHAIN_EXTRA]


def test_each_kind_of_drift_is_named() -> None:
    want = seed_table()
    fwd = want.chain(names.CHAIN_FORWARD)
    assert fwd.hook is not None
    cases = [
        (replace(want, sets=want.sets[1:]), SET_MISSING),
        (replace(want, sets=(*want.sets, replace(want.sets[0], name="x"))), SET_EXTRA),
        (replace(want, sets=(replace(want.sets[0], flags=()), *want.sets[1:])), SET_DECLARATION),
        (replace(want, chains=tuple(c for c in want.chains if c.name != fwd.name)), CHAIN_MISSING),
        (
            replace(
                want,
                chains=tuple(
                    replace(c, hook=replace(fwd.hook, policy="drop")) if c.name == fwd.name else c
                    for c in want.chains
                ),
            ),
            CHAIN_HOOK,
        ),
    ]
    for have, kind in cases:
        assert [d.kind for d in drift(have, want)] == [kind], kind


def test_order_of_objects_is_not_drift() -> None:
    want = seed_table()
    assert drift(replace(want, sets=want.sets[::-1], chains=want.chains[::-1]), want) == []
