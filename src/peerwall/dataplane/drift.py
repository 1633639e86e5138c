"""What differs between the live table and the desired one, object by object.

Objects are matched by name, so the order in which nft lists them never counts as drift; rules
are compared as values (``nft.objects``), counters without their counts.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError
from peerwall.nft.objects import (
    Action,
    Chain,
    Hook,
    NftMap,
    NftSet,
    Opaque,
    Rule,
    Ruleset,
    render_elements,
    render_expr,
    render_rule,
)

TABLE_MISSING = "table-missing"
TABLE_FLAGS = "table-flags"
TABLE_UNREADABLE = "table-unreadable"
GUARD_UP = "guard-up"
"""Not a difference of the table: the agent's guard table fails the gateway closed."""
CHAIN_MISSING = "chain-missing"
CHAIN_EXTRA = "chain-extra"
CHAIN_HOOK = "chain-hook"
CHAIN_RULES = "chain-rules"
SET_MISSING = "set-missing"
SET_EXTRA = "set-extra"
SET_DECLARATION = "set-declaration"
ELEMENTS_MISSING = "elements-missing"
ELEMENTS_EXTRA = "elements-extra"

ELEMENT_KINDS = frozenset({ELEMENTS_MISSING, ELEMENTS_EXTRA})
"""Drift that an element-only transaction repairs."""
WHOLE_TABLE_KINDS = frozenset({TABLE_MISSING, TABLE_FLAGS, TABLE_UNREADABLE})
"""Drift that only a whole-table replace repairs."""


@dataclass(frozen=True)
class Drift:
    """One difference: its ``kind`` (a constant above), the ``object`` it is about, what differs."""

    kind: str
    object: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.object}: {self.detail}"


def drift(live: Ruleset | None, desired: Ruleset) -> list[Drift]:
    """Every difference between ``live`` (``None``: no table) and ``desired``; empty if none."""
    if live is None:
        return [
            Drift(
                TABLE_MISSING, f"table {desired.family} {desired.table}", "the table does not exist"
            )
        ]
    out: list[Drift] = []
    if live.flags != desired.flags:
        have_flags = ", ".join(live.flags) or "none"
        want_flags = ", ".join(desired.flags) or "none"
        detail = f"flags {have_flags}, expected {want_flags}"
        if "dormant" in live.flags:
            detail += " (a dormant table hooks none of its chains: nothing is enforced)"
        out.append(Drift(TABLE_FLAGS, f"table {desired.family} {desired.table}", detail))
    for kind, have, want in (
        ("set", {s.name: s for s in live.sets}, {s.name: s for s in desired.sets}),
        ("map", {m.name: m for m in live.maps}, {m.name: m for m in desired.maps}),
    ):
        for name, w in want.items():
            obj = f"{kind} {name}"
            h = have.get(name)
            if h is None:
                out.append(Drift(SET_MISSING, obj, f"the {kind} does not exist"))
                continue
            if h.declaration() != w.declaration():
                out.append(Drift(SET_DECLARATION, obj, f"{_decl(h)}, expected {_decl(w)}"))
            missing, extra = _element_delta(h, w)
            if missing:
                out.append(Drift(ELEMENTS_MISSING, obj, missing))
            if extra:
                out.append(Drift(ELEMENTS_EXTRA, obj, extra))
        out.extend(
            Drift(SET_EXTRA, f"{kind} {n}", "not in the desired table")
            for n in sorted(have.keys() - want.keys())
        )
    live_chains = {c.name: c for c in live.chains}
    want_chains = {c.name: c for c in desired.chains}
    for name, want_chain in want_chains.items():
        obj = f"chain {name}"
        have_chain = live_chains.get(name)
        if have_chain is None:
            out.append(Drift(CHAIN_MISSING, obj, "the chain does not exist"))
            continue
        if have_chain.hook != want_chain.hook:
            detail = f"{_hook(have_chain.hook)}, expected {_hook(want_chain.hook)}"
            out.append(Drift(CHAIN_HOOK, obj, detail))
        if have_chain.rules != want_chain.rules:
            out.append(Drift(CHAIN_RULES, obj, _rules(have_chain, want_chain)))
    out.extend(
        Drift(CHAIN_EXTRA, f"chain {n}", "not in the desired table")
        for n in sorted(live_chains.keys() - want_chains)
    )
    return out


def read_drift(
    nft: Nft, desired: Ruleset, *, elements: bool = True
) -> tuple[Ruleset | None, list[Drift]]:
    """Read the live table back and compare it with ``desired``. A table that cannot be read
    back is drift of its own (``TABLE_UNREADABLE``, with the live side ``None``), never an
    error: a reader that raises would stop whoever checks, while the table stays as it is.
    A live set equal to the desired one shares its elements (``read_table``'s ``like``).
    ``elements=False``: the shape only (sets read without elements, so any desired element
    shows as missing)."""
    try:
        live = read_table(nft, desired.family, desired.table, desired, elements=elements)
        return live, drift(live, desired)
    except (NftError, KeyError, TypeError, ValueError, AttributeError) as e:
        what = f"table {desired.family} {desired.table}"
        return None, [Drift(TABLE_UNREADABLE, what, f"cannot be read back: {e}")]


def _element_delta(have: NftSet | NftMap, want: NftSet | NftMap) -> tuple[str, str]:
    if isinstance(have, NftSet) and isinstance(want, NftSet):
        missing, extra = want.elements - have.elements, have.elements - want.elements
        return (
            render_elements(missing)[2:-2] if missing else "",
            render_elements(extra)[2:-2] if extra else "",
        )
    assert isinstance(have, NftMap) and isinstance(want, NftMap)
    h, w = set(have.elements.items()), set(want.elements.items())

    def text(items: set[tuple[str, Action]]) -> str:
        return ", ".join(
            f'"{k}" : {render_expr(v)}' for k, v in sorted(items, key=lambda kv: kv[0])
        )

    return text(w - h), text(h - w)


def _decl(s: NftSet | NftMap) -> str:
    if isinstance(s, NftMap):
        return f"type {s.key_type} : verdict" + (f' comment "{s.comment}"' if s.comment else "")
    flags = f" flags {','.join(s.flags)}" if s.flags else ""
    comment = f' comment "{s.comment}"' if s.comment else ""
    return f"type {s.type}{flags}{comment}"


def _hook(h: Hook | None) -> str:
    return "regular chain" if h is None else h.render()


def _text(rule: Rule) -> str:
    if any(isinstance(e, Opaque) for e in rule.exprs):
        return "<a rule peerwall does not write>"
    return render_rule(rule)


def _rules(have: Chain, want: Chain) -> str:
    """The rule lines to add (+) and remove (-) to get from ``have`` to ``want``."""
    lines = [
        line
        for line in difflib.ndiff([_text(r) for r in have.rules], [_text(r) for r in want.rules])
        if line.startswith(("+ ", "- "))
    ]
    # ndiff marks what to do to the live chain; say it from the live side, as an operator reads it.
    said = [("missing: " if ln[0] == "+" else "unexpected: ") + ln[2:] for ln in lines]
    return "; ".join(said) or "rule order differs"
