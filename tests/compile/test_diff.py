"""diff: element-only transactions when only set elements change, a full replace otherwise."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from peerwall.compile.diff import Transaction, diff, same_skeleton
from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset, render_replace

CIDR = frozenset({"10.244.0.0/16"})
PODS = frozenset({"10.244.0.5", "10.244.0.7"})


def ruleset(allow: frozenset[str] = CIDR, api: frozenset[str] = frozenset()) -> Ruleset:
    return Ruleset(
        "inet",
        "peerwall",
        (NftSet("allow-abc", elements=allow), NftSet("api-abc", elements=api)),
        (
            Chain(
                "filter-forward",
                ('iifname vmap { "pwt-abc" : jump peer-abc-C2 }',),
                Hook("filter", "forward", "filter"),
            ),
            Chain("peer-abc-C2", ("ip daddr @allow-abc accept", "counter drop")),
        ),
    )


def test_equal_rulesets_give_an_empty_transaction() -> None:
    tx = diff(ruleset(PODS), ruleset(PODS))
    assert tx == Transaction("", full=False, added=0, removed=0)
    assert tx.empty


def test_order_of_sets_and_chains_does_not_count() -> None:
    a = ruleset(PODS)
    b = replace(a, sets=a.sets[::-1], chains=a.chains[::-1])
    assert same_skeleton(a, b)
    assert diff(a, b).empty


def test_no_old_table_is_a_full_replace() -> None:
    new = ruleset(PODS)
    tx = diff(None, new)
    assert tx == Transaction(render_replace(new), full=True, added=2, removed=0)
    assert not tx.empty


def test_cidr_to_pods_deletes_before_adding() -> None:
    tx = diff(ruleset(CIDR), ruleset(PODS))
    assert not tx.full
    assert tx.script == (
        "delete element inet peerwall allow-abc { 10.244.0.0/16 }\n"
        "add element inet peerwall allow-abc { 10.244.0.5, 10.244.0.7 }\n"
    )
    assert (tx.added, tx.removed) == (2, 1)


def test_pods_to_cidr_deletes_before_adding() -> None:
    tx = diff(ruleset(PODS), ruleset(CIDR))
    assert tx.script == (
        "delete element inet peerwall allow-abc { 10.244.0.5, 10.244.0.7 }\n"
        "add element inet peerwall allow-abc { 10.244.0.0/16 }\n"
    )
    assert (tx.added, tx.removed) == (1, 2)


def test_all_deletes_of_all_sets_come_before_all_adds() -> None:
    old = ruleset(CIDR, frozenset({"10.0.0.1"}))
    new = ruleset(PODS, frozenset({"10.0.0.2", "10.0.0.3"}))
    lines = diff(old, new).script.splitlines()
    assert [ln.split()[0] for ln in lines] == ["delete", "delete", "add", "add"]
    assert lines[1] == "delete element inet peerwall api-abc { 10.0.0.1 }"
    assert lines[3] == "add element inet peerwall api-abc { 10.0.0.2, 10.0.0.3 }"


def test_only_changed_sets_appear() -> None:
    tx = diff(ruleset(CIDR, frozenset({"10.0.0.1"})), ruleset(CIDR, frozenset()))
    assert tx.script == "delete element inet peerwall api-abc { 10.0.0.1 }\n"
    assert (tx.full, tx.added, tx.removed) == (False, 0, 1)


def test_skeleton_changes_are_full_replaces() -> None:
    old = ruleset(PODS)
    peer = old.chain("peer-abc-C2")
    fwd = old.chain("filter-forward")
    assert fwd.hook is not None
    changes = {
        "rule": replace(old, chains=(fwd, replace(peer, rules=("counter drop",)))),
        "hook": replace(old, chains=(replace(fwd, hook=replace(fwd.hook, policy="drop")), peer)),
        "new chain": replace(old, chains=(*old.chains, Chain("extra"))),
        "new set": replace(old, sets=(*old.sets, NftSet("svc"))),
        "set flags": replace(old, sets=(replace(old.sets[0], flags=()), old.sets[1])),
        "table": replace(old, table="other"),
    }
    for what, new in changes.items():
        tx = diff(old, new)
        assert tx.full, what
        assert tx.script == render_replace(new), what


def test_full_replace_counts_the_net_element_change() -> None:
    old = ruleset(PODS, frozenset({"10.0.0.1"}))
    new = replace(ruleset(CIDR, frozenset({"10.0.0.1"})), table="other")
    tx = diff(old, new)
    assert (tx.full, tx.added, tx.removed) == (True, 1, 2)


def test_force_full() -> None:
    tx = diff(ruleset(CIDR), ruleset(PODS), force_full=True)
    assert tx.full
    assert tx.script == render_replace(ruleset(PODS))
    assert (tx.added, tx.removed) == (2, 1)


def test_hand_made_elements_still_render() -> None:
    # A live set may hold a range nobody here writes: deleting it must not crash.
    tx = diff(ruleset(frozenset({"10.0.0.1-10.0.0.9"})), ruleset(CIDR))
    assert tx.script.splitlines()[0] == (
        "delete element inet peerwall allow-abc { 10.0.0.1-10.0.0.9 }"
    )


addresses = st.frozensets(
    st.builds(lambda a, b: f"10.244.{a}.{b}", st.integers(0, 3), st.integers(1, 9)), max_size=12
)


@given(addresses, addresses)
def test_element_diff_turns_old_into_new(before: frozenset[str], after: frozenset[str]) -> None:
    tx = diff(ruleset(before), ruleset(after))
    assert not tx.full
    assert tx.empty == (before == after)
    state = set(before)
    seen_add = False
    for line in tx.script.splitlines():
        verb, _, _, _, name, body = line.split(" ", 5)
        assert name == "allow-abc"
        elements = body.strip("{} ").split(", ")
        if verb == "delete":
            assert not seen_add, "a delete after an add"
            assert set(elements) <= state
            state -= set(elements)
        else:
            seen_add = True
            assert not set(elements) & state
            state |= set(elements)
    assert state == after
    assert (tx.added, tx.removed) == (len(after - before), len(before - after))
