"""The smallest nft transaction that turns one table into the next, object by object.

Set and map elements are edited in place; a chain whose rules changed is flushed and refilled;
chains, sets and maps that appear or disappear are added or deleted; everything else, and the
counters of untouched chains, is left alone. Only a change that nft cannot make in place (a set's
type or flags, a base chain's hook) replaces the whole table, as does the first apply.

``nft`` runs a script's commands in order inside one transaction, so the order below is what makes
references valid at every step: references to what goes away are removed first (map elements,
flushed rules), then objects are deleted, created, filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from peerwall.nft.objects import (
    Chain,
    Element,
    NftMap,
    NftSet,
    Rule,
    Ruleset,
    Verdict,
    render_elements,
    render_map_elements,
    render_replace,
    render_rule,
)


@dataclass(frozen=True)
class Transaction:
    """One nft script, applied as one atomic kernel transaction.

    ``added``/``removed`` count set and map elements that enter/leave the table; ``chains`` names
    the chains (re)written; a full replace reports the net change all the same.
    """

    script: str
    full: bool
    added: int
    removed: int
    chains: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.script == ""


EMPTY = Transaction("", full=False, added=0, removed=0)


def element_script(
    family: str,
    table: str,
    name: str,
    add: Iterable[Element] = (),
    delete: Iterable[Element] = (),
) -> list[str]:
    """Commands that edit one set's elements (deletes first: an interval set refuses an element
    that overlaps one still present)."""
    out = []
    if delete := list(delete):
        out.append(f"delete element {family} {table} {name} {render_elements(delete)}")
    if add := list(add):
        out.append(f"add element {family} {table} {name} {render_elements(add)}")
    return out


def _map_script(prefix: str, name: str, elements: Mapping[str, Verdict], verb: str) -> str:
    if verb == "delete":
        keys = ", ".join(f'"{k}"' for k in sorted(elements))
        return f"delete element {prefix} {name} {{ {keys} }}"
    return f"add element {prefix} {name} {render_map_elements(elements)}"


def _set_decl(prefix: str, s: NftSet) -> str:
    body = [f"type {s.type};"]
    if s.flags:
        body.append(f"flags {','.join(s.flags)};")
    if s.comment:
        body.append(f'comment "{s.comment}";')
    return f"add set {prefix} {s.name} {{ {' '.join(body)} }}"


def _map_decl(prefix: str, m: NftMap) -> str:
    comment = f' comment "{m.comment}";' if m.comment else ""
    return f"add map {prefix} {m.name} {{ type {m.key_type} : verdict;{comment} }}"


def _chain_decl(prefix: str, c: Chain) -> str:
    body = []
    if c.hook:
        body.append(c.hook.render())
    if c.comment:
        body.append(f'comment "{c.comment}";')
    return (
        f"add chain {prefix} {c.name} {{ {' '.join(body)} }}"
        if body
        else f"add chain {prefix} {c.name}"
    )


def _rules(prefix: str, chain: str, rules: tuple[Rule, ...]) -> list[str]:
    return [f"add rule {prefix} {chain} {render_rule(r)}" for r in rules]


def _element_delta(old: Ruleset | None, new: Ruleset) -> tuple[int, int]:
    def counts(rs: Ruleset | None) -> dict[str, set[object]]:
        if rs is None:
            return {}
        out: dict[str, set[object]] = {s.name: set(s.elements) for s in rs.sets}
        out.update({m.name: set(m.elements.items()) for m in rs.maps})
        return out

    before, after = counts(old), counts(new)
    added = sum(len(e - before.get(n, set())) for n, e in after.items())
    removed = sum(len(e - after.get(n, set())) for n, e in before.items())
    return added, removed


def _replace(old: Ruleset | None, new: Ruleset) -> Transaction:
    added, removed = _element_delta(old, new)
    return Transaction(render_replace(new), True, added, removed, tuple(c.name for c in new.chains))


def diff(old: Ruleset | None, new: Ruleset, *, force_full: bool = False) -> Transaction:
    """The transaction from ``old`` (``None``: no table) to ``new``; empty if they are equal.

    ``force_full`` asks for a full replace even when edits would do (after a failure).
    """
    if force_full or old is None or (old.family, old.table) != (new.family, new.table):
        return _replace(old, new)
    if old.flags != new.flags:  # only a new table drops flags such as ``dormant``
        return _replace(old, new)
    prefix = f"{new.family} {new.table}"
    old_sets, new_sets = {s.name: s for s in old.sets}, {s.name: s for s in new.sets}
    old_maps, new_maps = {m.name: m for m in old.maps}, {m.name: m for m in new.maps}
    old_chains, new_chains = {c.name: c for c in old.chains}, {c.name: c for c in new.chains}
    for name in old_sets.keys() & new_sets.keys():
        if old_sets[name].declaration() != new_sets[name].declaration():
            return _replace(old, new)
    for name in old_maps.keys() & new_maps.keys():
        if old_maps[name].declaration() != new_maps[name].declaration():
            return _replace(old, new)
    for name in old_chains.keys() & new_chains.keys():
        o, n = old_chains[name], new_chains[name]
        if o.hook != n.hook:
            return _replace(old, new)

    unref: list[str] = []  # 1. references to what goes away: map elements, rules
    deletes: list[str] = []  # 2. objects that go away
    creates: list[str] = []  # 3. new objects
    fills: list[str] = []  # 4. rules and elements
    touched: list[str] = []

    for name, m in new_maps.items():
        before = old_maps[name].elements if name in old_maps else {}
        gone = {k: v for k, v in before.items() if m.elements.get(k) != v}
        came = {k: v for k, v in m.elements.items() if before.get(k) != v}
        if name not in old_maps:
            creates.append(_map_decl(prefix, m))
        if gone:
            unref.append(_map_script(prefix, name, gone, "delete"))
        if came:
            fills.append(_map_script(prefix, name, came, "add"))
    for name, m in old_maps.items():
        if name not in new_maps:
            if m.elements:
                unref.append(_map_script(prefix, name, m.elements, "delete"))
            deletes.append(f"delete map {prefix} {name}")

    for name, c in new_chains.items():
        if name not in old_chains:
            creates.append(_chain_decl(prefix, c))
            fills += _rules(prefix, name, c.rules)
            touched.append(name)
        elif old_chains[name].rules != c.rules:
            unref.append(f"flush chain {prefix} {name}")
            fills += _rules(prefix, name, c.rules)
            touched.append(name)
    for name in old_chains:
        if name not in new_chains:
            unref.append(f"flush chain {prefix} {name}")
            deletes.append(f"delete chain {prefix} {name}")
            touched.append(name)

    for name, s in new_sets.items():
        if name not in old_sets:
            creates.append(_set_decl(prefix, s))
            fills += element_script(new.family, new.table, name, s.elements)
        else:
            had = old_sets[name].elements
            fills[:0] = element_script(
                new.family, new.table, name, s.elements - had, had - s.elements
            )
    for name in old_sets:
        if name not in new_sets:
            deletes.append(f"delete set {prefix} {name}")

    script = unref + deletes + creates + fills
    if not script:
        return EMPTY
    added, removed = _element_delta(old, new)
    return Transaction("\n".join(script) + "\n", False, added, removed, tuple(touched))
