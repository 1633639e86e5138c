"""What differs between the live table and the desired one, object by object.

Objects are matched by name, so the order in which nft lists them never counts as drift.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset, sort_elements

TABLE_MISSING = "table-missing"
CHAIN_MISSING = "chain-missing"
CHAIN_EXTRA = "chain-extra"
CHAIN_HOOK = "chain-hook"
CHAIN_RULES = "chain-rules"
SET_MISSING = "set-missing"
SET_EXTRA = "set-extra"
SET_DECLARATION = "set-declaration"
ELEMENTS_MISSING = "elements-missing"
ELEMENTS_EXTRA = "elements-extra"


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
    table = f"table {desired.family} {desired.table}"
    if live is None:
        return [Drift(TABLE_MISSING, table, "the table does not exist")]
    out: list[Drift] = []
    live_sets = {s.name: s for s in live.sets}
    want_sets = {s.name: s for s in desired.sets}
    for name, want in want_sets.items():
        obj = f"set {name}"
        have = live_sets.get(name)
        if have is None:
            out.append(Drift(SET_MISSING, obj, "the set does not exist"))
            continue
        if have.declaration() != want.declaration():
            out.append(Drift(SET_DECLARATION, obj, f"{_decl(have)}, expected {_decl(want)}"))
        if missing := want.elements - have.elements:
            out.append(Drift(ELEMENTS_MISSING, obj, _elements(missing)))
        if extra := have.elements - want.elements:
            out.append(Drift(ELEMENTS_EXTRA, obj, _elements(extra)))
    out.extend(
        Drift(SET_EXTRA, f"set {n}", "not in the desired table")
        for n in sorted(live_sets.keys() - want_sets)
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


def _decl(s: NftSet) -> str:
    flags = f" flags {','.join(s.flags)}" if s.flags else ""
    return f"type {s.type}{flags}"


def _hook(h: Hook | None) -> str:
    if h is None:
        return "regular chain"
    return f"type {h.type} hook {h.hook} priority {h.priority}; policy {h.policy}"


def _elements(elements: frozenset[str]) -> str:
    try:
        ordered = sort_elements(elements)
    except ValueError:  # not IPv4 addresses: any stable order will do
        ordered = sorted(elements)
    return ", ".join(ordered)


def _rules(have: Chain, want: Chain) -> str:
    """The rule lines to add (+) and remove (-) to get from ``have`` to ``want``."""
    lines = [
        line
        for line in difflib.ndiff(list(have.rules), list(want.rules))
        if line.startswith(("+ ", "- "))
    ]
    # ndiff marks what to do to the live chain; say it from the live side, as an operator reads it.
    said = [("missing: " if ln[0] == "+" else "unexpected: ") + ln[2:] for ln in lines]
    return "; ".join(said) or "rule order differs"
