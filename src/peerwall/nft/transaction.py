"""Typed operations on one table, transactions of them, and the smallest transaction that turns
one table into the next, object by object.

As knftables' ``Transaction`` holds typed operations, a ``Transaction`` here is a tuple of
``Operation`` values; ``render_operations`` is the one place that writes them as nft text.

Set and map elements are edited in place; a chain whose rules changed is flushed and refilled;
chains, sets and maps that appear or disappear are added or deleted; everything else, and the
counters of untouched chains, is left alone. Only a change that nft cannot make in place (a set's
type or flags, a base chain's hook) replaces the whole table, as does the first apply.

``nft`` runs a script's commands in order inside one transaction, so the order below is what makes
references valid at every step: references to what goes away are removed first (map elements,
flushed rules), then objects are deleted, created, filled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property

from peerwall.nft.objects import (
    Action,
    Chain,
    Element,
    NftMap,
    NftSet,
    Rule,
    Ruleset,
    render_elements,
    render_map_elements,
    render_replace,
    render_rule,
)

# --- operations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaceTable:
    """The whole table, replaced exactly whether or not it exists (``render_replace``)."""

    ruleset: Ruleset


@dataclass(frozen=True)
class DeleteTable:
    pass


@dataclass(frozen=True)
class AddSet:
    """A set's declaration (its elements come as ``AddElements``)."""

    set: NftSet


@dataclass(frozen=True)
class DeleteSet:
    name: str


@dataclass(frozen=True)
class AddMap:
    """A verdict map's declaration (its elements come as ``AddMapElements``)."""

    map: NftMap


@dataclass(frozen=True)
class DeleteMap:
    name: str


@dataclass(frozen=True)
class AddChain:
    """A chain's declaration, without rules (they come as ``AddRule``)."""

    chain: Chain


@dataclass(frozen=True)
class FlushChain:
    name: str


@dataclass(frozen=True)
class DeleteChain:
    name: str


@dataclass(frozen=True)
class AddRule:
    chain: str
    rule: Rule


@dataclass(frozen=True)
class AddElements:
    set: str
    elements: tuple[Element, ...]


@dataclass(frozen=True)
class DeleteElements:
    set: str
    elements: tuple[Element, ...]


@dataclass(frozen=True)
class AddMapElements:
    map: str
    elements: tuple[tuple[str, Action], ...]


@dataclass(frozen=True)
class DeleteMapElements:
    map: str
    keys: tuple[str, ...]


Operation = (
    ReplaceTable
    | DeleteTable
    | AddSet
    | DeleteSet
    | AddMap
    | DeleteMap
    | AddChain
    | FlushChain
    | DeleteChain
    | AddRule
    | AddElements
    | DeleteElements
    | AddMapElements
    | DeleteMapElements
)
"""One step of a transaction, on the transaction's table; nft runs them in order."""


# --- text ----------------------------------------------------------------------------------------


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


def render_operation(family: str, table: str, op: Operation) -> str:
    """One operation as one nft command (a table block for ``ReplaceTable``), no newline."""
    prefix = f"{family} {table}"
    if isinstance(op, ReplaceTable):
        return render_replace(op.ruleset).rstrip("\n")
    if isinstance(op, DeleteTable):
        return f"delete table {prefix}"
    if isinstance(op, AddSet):
        return _set_decl(prefix, op.set)
    if isinstance(op, DeleteSet):
        return f"delete set {prefix} {op.name}"
    if isinstance(op, AddMap):
        return _map_decl(prefix, op.map)
    if isinstance(op, DeleteMap):
        return f"delete map {prefix} {op.name}"
    if isinstance(op, AddChain):
        return _chain_decl(prefix, op.chain)
    if isinstance(op, FlushChain):
        return f"flush chain {prefix} {op.name}"
    if isinstance(op, DeleteChain):
        return f"delete chain {prefix} {op.name}"
    if isinstance(op, AddRule):
        return f"add rule {prefix} {op.chain} {render_rule(op.rule)}"
    if isinstance(op, AddElements):
        return f"add element {prefix} {op.set} {render_elements(op.elements)}"
    if isinstance(op, DeleteElements):
        return f"delete element {prefix} {op.set} {render_elements(op.elements)}"
    if isinstance(op, AddMapElements):
        return f"add element {prefix} {op.map} {render_map_elements(dict(op.elements))}"
    keys = ", ".join(f'"{k}"' for k in sorted(op.keys))
    return f"delete element {prefix} {op.map} {{ {keys} }}"


def render_operations(family: str, table: str, ops: Iterable[Operation]) -> str:
    """A script of ``ops``, one command a line; empty if there are none."""
    lines = [render_operation(family, table, op) for op in ops]
    return "\n".join(lines) + "\n" if lines else ""


# --- transactions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transaction:
    """Operations on table ``family table``, applied as one atomic kernel transaction.

    ``added``/``removed`` count set and map elements that enter/leave the table; ``chains`` names
    the chains (re)written; a full replace reports the net change all the same.
    """

    family: str
    table: str
    operations: tuple[Operation, ...]
    full: bool = False
    added: int = 0
    removed: int = 0
    chains: tuple[str, ...] = ()

    @cached_property
    def script(self) -> str:
        """The operations as one nft script (what libnftables runs)."""
        return render_operations(self.family, self.table, self.operations)

    @property
    def empty(self) -> bool:
        return not self.operations


def element_operations(
    name: str, add: Iterable[Element] = (), delete: Iterable[Element] = ()
) -> list[Operation]:
    """The operations that edit one set's elements (deletes first: an interval set refuses an
    element that overlaps one still present)."""
    out: list[Operation] = []
    if delete := tuple(delete):
        out.append(DeleteElements(name, delete))
    if add := tuple(add):
        out.append(AddElements(name, add))
    return out


def element_script(
    family: str,
    table: str,
    name: str,
    add: Iterable[Element] = (),
    delete: Iterable[Element] = (),
) -> list[str]:
    """``element_operations`` as nft commands."""
    return [render_operation(family, table, op) for op in element_operations(name, add, delete)]


def _element_delta(old: Ruleset | None, new: Ruleset) -> tuple[int, int]:
    def counts(rs: Ruleset | None) -> dict[str, frozenset[object]]:
        if rs is None:
            return {}
        # The sets' own frozensets, not copies: a whole table's may hold 200,000 addresses.
        out: dict[str, frozenset[object]] = {s.name: s.elements for s in rs.sets}
        out.update({m.name: frozenset(m.elements.items()) for m in rs.maps})
        return out

    before, after = counts(old), counts(new)
    none: frozenset[object] = frozenset()
    added = sum(len(e - before.get(n, none)) for n, e in after.items() if e is not before.get(n))
    removed = sum(len(e - after.get(n, none)) for n, e in before.items() if e is not after.get(n))
    return added, removed


def replace_table(new: Ruleset, old: Ruleset | None = None) -> Transaction:
    """The transaction that replaces the table with ``new`` (``old``: what it held, to count)."""
    added, removed = _element_delta(old, new)
    chains = tuple(c.name for c in new.chains)
    return Transaction(new.family, new.table, (ReplaceTable(new),), True, added, removed, chains)


def delete_table(family: str, table: str) -> Transaction:
    return Transaction(family, table, (DeleteTable(),))


def diff(old: Ruleset | None, new: Ruleset, *, force_full: bool = False) -> Transaction:
    """The transaction from ``old`` (``None``: no table) to ``new``; empty if they are equal.

    ``force_full`` asks for a full replace even when edits would do (after a failure).
    """
    if force_full or old is None or (old.family, old.table) != (new.family, new.table):
        return replace_table(new, old)
    if old.flags != new.flags:  # only a new table drops flags such as ``dormant``
        return replace_table(new, old)
    old_sets, new_sets = {s.name: s for s in old.sets}, {s.name: s for s in new.sets}
    old_maps, new_maps = {m.name: m for m in old.maps}, {m.name: m for m in new.maps}
    old_chains, new_chains = {c.name: c for c in old.chains}, {c.name: c for c in new.chains}
    for name in old_sets.keys() & new_sets.keys():
        if old_sets[name].declaration() != new_sets[name].declaration():
            return replace_table(new, old)
    for name in old_maps.keys() & new_maps.keys():
        if old_maps[name].declaration() != new_maps[name].declaration():
            return replace_table(new, old)
    for name in old_chains.keys() & new_chains.keys():
        o, n = old_chains[name], new_chains[name]
        if o.hook != n.hook:
            return replace_table(new, old)

    unref: list[Operation] = []  # 1. references to what goes away: map elements, rules
    deletes: list[Operation] = []  # 2. objects that go away
    creates: list[Operation] = []  # 3. new objects
    fills: list[Operation] = []  # 4. rules and elements
    touched: list[str] = []

    for name, m in new_maps.items():
        before = old_maps[name].elements if name in old_maps else {}
        gone = {k: v for k, v in before.items() if m.elements.get(k) != v}
        came = {k: v for k, v in m.elements.items() if before.get(k) != v}
        if name not in old_maps:
            creates.append(AddMap(m.declaration()))
        if gone:
            unref.append(DeleteMapElements(name, tuple(sorted(gone))))
        if came:
            fills.append(AddMapElements(name, tuple(sorted(came.items()))))
    for name, m in old_maps.items():
        if name not in new_maps:
            if m.elements:
                unref.append(DeleteMapElements(name, tuple(sorted(m.elements))))
            deletes.append(DeleteMap(name))

    for name, c in new_chains.items():
        if name not in old_chains:
            creates.append(AddChain(replace(c, rules=())))
            fills += [AddRule(name, r) for r in c.rules]
            touched.append(name)
        elif old_chains[name].rules != c.rules:
            unref.append(FlushChain(name))
            fills += [AddRule(name, r) for r in c.rules]
            touched.append(name)
    for name in old_chains:
        if name not in new_chains:
            unref.append(FlushChain(name))
            deletes.append(DeleteChain(name))
            touched.append(name)

    for name, s in new_sets.items():
        if name not in old_sets:
            creates.append(AddSet(s.declaration()))
            fills += element_operations(name, s.elements)
        else:
            had = old_sets[name].elements
            fills[:0] = element_operations(name, s.elements - had, had - s.elements)
    for name in old_sets:
        if name not in new_sets:
            deletes.append(DeleteSet(name))

    ops = (*unref, *deletes, *creates, *fills)
    if not ops:
        return Transaction(new.family, new.table, ())
    added, removed = _element_delta(old, new)
    return Transaction(new.family, new.table, ops, False, added, removed, tuple(touched))
