"""An in-memory ``Nft``: runs peerwall's scripts and lists tables as libnftables' JSON.

As knftables ships ``Fake``, this lets the sync, element-diff, fallback and drift logic (and the
agent) be tested without root or a kernel. It is built on ``nft.parse``, so it understands
exactly the script forms peerwall writes, and it keeps nft's semantics where they matter to
peerwall: a script is one transaction (any error leaves everything as it was); ``add`` of an
existing object with the same declaration does nothing, a different declaration is an error;
``table { ... }`` blocks *append* to existing chains and sets (which is why scripts replace the
table with ``add table; delete table; table { ... }``); deleting a missing element, or a chain or
set still referenced, is an error. The kernel tests stay for what only the kernel can show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from peerwall.errors import NftError
from peerwall.nft.netlink import Address, SetEdit
from peerwall.nft.objects import (
    Action,
    Chain,
    Element,
    Match,
    NftMap,
    NftSet,
    Range,
    Ruleset,
    SetRef,
    VMap,
    expr_to_json,
    rule_to_json,
)
from peerwall.nft.parse import Command, NftSyntaxError, element_values, parse_script
from peerwall.nft.transaction import (
    AddChain,
    AddElements,
    AddMap,
    AddMapElements,
    AddRule,
    AddSet,
    DeleteChain,
    DeleteElements,
    DeleteMap,
    DeleteMapElements,
    DeleteSet,
    DeleteTable,
    FlushChain,
    Operation,
    ReplaceTable,
    Transaction,
    element_script,
)


@dataclass
class _Table:
    family: str
    name: str
    comment: str | None = None
    sets: dict[str, NftSet] = field(default_factory=dict)
    maps: dict[str, NftMap] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    def ruleset(self) -> Ruleset:
        return Ruleset(
            self.family,
            self.name,
            tuple(self.sets.values()),
            tuple(self.maps.values()),
            tuple(self.chains.values()),
            self.comment,
        )


def _interval(e: Element) -> tuple[int, int]:
    if isinstance(e, Range):
        return int(e.lo), int(e.hi)
    if isinstance(e, IPv4Network):
        return int(e.network_address), int(e.broadcast_address)
    return int(e), int(e)


class FakeNft:
    """An ``Nft`` over tables in memory. ``scripts`` records every script that committed."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], _Table] = {}
        self.scripts: list[str] = []
        self.fail_next: str | None = None
        """Set to an error text to make the next ``run`` fail as the kernel would."""
        self.listings: list[str] = []
        """Every listing command, in order: what was read back (tests assert none)."""
        self._generation = 0
        """Bumped by every committed transaction, as the kernel's ruleset generation."""

    # --- Nft ---------------------------------------------------------------------------------

    def run(self, script: str) -> None:
        self._fail_if_asked()
        try:
            commands = parse_script(script)
        except NftSyntaxError as e:
            raise NftError(f"Error: syntax error: {e}") from None
        staged = self._staged()
        for c in commands:
            self._apply(staged, c)
        self._commit(staged, script)

    def edit_elements(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
        """As the kernel takes a netlink element batch: all deletes, then all adds, in one
        transaction, applied as operations (no text parsed); recorded in ``scripts`` as the
        equivalent script."""

        def ips(addresses: Sequence[Address]) -> tuple[IPv4Address, ...]:
            return tuple(IPv4Address(a) for a in addresses)

        if not any(e.add or e.delete for e in edits):
            return
        self._fail_if_asked()
        staged = self._staged()
        t = staged.get((family, table))
        if t is None:
            raise NftError(f"Error: No such file or directory: table {family} {table}")
        for e in edits:
            if e.set not in t.sets:
                raise NftError(f"Error: No such file or directory: set {e.set}")
        for e in edits:
            if e.delete:
                self._delete_elements(t, e.set, ips(e.delete))
        for e in edits:
            if e.add:
                self._add_elements(t, e.set, ips(e.add))
        lines = [
            line for e in edits for line in element_script(family, table, e.set, (), ips(e.delete))
        ] + [line for e in edits for line in element_script(family, table, e.set, ips(e.add))]
        self._commit(staged, "\n".join(lines) + "\n")

    def apply(self, tx: Transaction) -> None:
        """Apply ``tx``'s operations as one transaction, as the kernel runs their script: no
        text is written or parsed (recorded in ``scripts`` as the script all the same)."""
        if tx.empty:
            return
        self._fail_if_asked()
        staged = self._staged()
        for op in tx.operations:
            for c in _commands(tx.family, tx.table, op):
                self._apply(staged, c)
            if isinstance(op, AddElements | DeleteElements | AddMapElements | DeleteMapElements):
                self._edit(self._table(staged, Command("", "", tx.family, tx.table)), op)
        self._commit(staged, tx.script)

    def _commit(self, staged: dict[tuple[str, str], _Table], script: str) -> None:
        self.tables = staged
        self.scripts.append(script)
        self._generation += 1

    def _edit(
        self, t: _Table, op: AddElements | DeleteElements | AddMapElements | DeleteMapElements
    ) -> None:
        name = op.map if isinstance(op, AddMapElements | DeleteMapElements) else op.set
        if name not in t.sets and name not in t.maps:
            raise NftError(f"Error: No such file or directory: set {name}")
        if isinstance(op, AddElements | AddMapElements):
            self._add_elements(t, name, tuple(op.elements))
        elif isinstance(op, DeleteElements):
            self._delete_elements(t, name, op.elements)
        else:
            self._delete_elements(t, name, op.keys)

    def _fail_if_asked(self) -> None:
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise NftError(message)

    def _staged(self) -> dict[tuple[str, str], _Table]:
        """A copy to change: objects are immutable values replaced, never mutated, so copying
        the dicts is enough; it replaces ``tables`` only if the whole transaction succeeds."""
        return {
            k: _Table(t.family, t.name, t.comment, dict(t.sets), dict(t.maps), dict(t.chains))
            for k, t in self.tables.items()
        }

    def list_json(self, command: str) -> dict[str, Any]:
        self.listings.append(command)
        return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *self._listed(command)]}

    def list_json_terse(self, command: str) -> dict[str, Any]:
        """``list_json`` without set and map elements, as libnftables' terse output."""
        doc = self.list_json(command)
        for obj in doc["nftables"]:
            for kind in ("set", "map"):
                if kind in obj:
                    obj[kind].pop("elem", None)
        return doc

    def set_addresses(self, family: str, table: str, name: str) -> Sequence[int] | None:
        """The set's addresses as ints; None if an element is not one address."""
        t = self.tables.get((family, table))
        if t is None or name not in t.sets:
            raise NftError(f"nf_tables netlink: No such file or directory: set {name}")
        elements = t.sets[name].elements
        addresses = [int(e) for e in elements if isinstance(e, IPv4Address)]
        return addresses if len(addresses) == len(elements) else None

    def generation(self) -> int:
        return self._generation

    def table_flags(self, family: str | None = None) -> dict[tuple[str, str], tuple[str, ...]]:
        """Every table and its flags: the fake's tables have none."""
        return {k: () for k in self.tables if family is None or k[0] == family}

    def _listed(self, command: str) -> list[dict[str, Any]]:
        words = command.split()
        if words[:2] == ["list", "tables"] and len(words) <= 3:
            return [
                {"table": {"family": f, "name": n}}
                for f, n in self.tables
                if len(words) == 2 or f == words[2]
            ]
        if words[:2] == ["list", "ruleset"] and len(words) <= 3:
            return [
                obj
                for (f, _), t in self.tables.items()
                if len(words) == 2 or f == words[2]
                for obj in self._json(t)
            ]
        t = self.tables.get((words[2], words[3])) if len(words) >= 4 else None
        if words[:2] == ["list", "table"] and len(words) == 4:
            if t is None:
                raise NftError("Error: No such file or directory")
            return self._json(t)
        if words[:2] == ["list", "chain"] and len(words) == 5:
            if t is None or words[4] not in t.chains:
                raise NftError("Error: No such file or directory")
            return self._chain_json(t, t.chains[words[4]])
        if words[1:2] in (["set"], ["map"]) and len(words) == 5:
            kind = words[1]
            found = (
                [o for o in self._json(t) if kind in o and o[kind]["name"] == words[4]] if t else []
            )
            if not found:
                raise NftError("Error: No such file or directory")
            return found
        raise NftError(f"the fake does not list {command!r}")

    def ruleset(self, family: str, table: str) -> Ruleset | None:
        t = self.tables.get((family, table))
        return None if t is None else t.ruleset()

    # --- commands ----------------------------------------------------------------------------

    def _table(self, tables: dict[tuple[str, str], _Table], c: Command) -> _Table:
        t = tables.get((c.family, c.table))
        if t is None:
            raise NftError(f"Error: No such file or directory: table {c.family} {c.table}")
        return t

    def _apply(self, tables: dict[tuple[str, str], _Table], c: Command) -> None:
        key = (c.family, c.table)
        if c.kind == "table":
            if c.verb in ("add", "create"):
                if c.verb == "create" and key in tables:
                    raise NftError("Error: File exists")
                t = tables.setdefault(key, _Table(c.family, c.table))
                if c.comment is not None:
                    t.comment = c.comment
            elif c.verb in ("delete", "destroy"):
                if key not in tables and c.verb == "delete":
                    raise NftError("Error: No such file or directory")
                tables.pop(key, None)
            elif c.verb == "flush":
                t = self._table(tables, c)
                t.chains = {n: replace(ch, rules=()) for n, ch in t.chains.items()}
            return
        t = self._table(tables, c)
        assert c.name is not None
        if c.kind in ("set", "map"):
            self._set_or_map(t, c)
        elif c.kind == "chain":
            self._chain(t, c)
        elif c.kind == "rule":
            if c.verb != "add" or c.rule is None:
                raise NftError(f"the fake does not {c.verb} rules")
            chain = self._need_chain(t, c.name)
            self._check_refs(t, c.rule.exprs)
            t.chains[c.name] = replace(chain, rules=(*chain.rules, c.rule))
        elif c.kind == "element":
            self._element(t, c)

    def _need_chain(self, t: _Table, name: str) -> Chain:
        if name not in t.chains:
            raise NftError(f"Error: No such file or directory: chain {name}")
        return t.chains[name]

    def _check_refs(self, t: _Table, exprs: tuple[Any, ...]) -> None:
        for e in exprs:
            if isinstance(e, Match) and isinstance(e.value, SetRef) and e.value.name not in t.sets:
                raise NftError(
                    f"Error: Could not process rule: No such file or directory: @{e.value.name}"
                )
            if isinstance(e, VMap) and isinstance(e.map, str) and e.map not in t.maps:
                raise NftError(
                    f"Error: Could not process rule: No such file or directory: @{e.map}"
                )
            if isinstance(e, Action) and e.target is not None:
                self._need_chain(t, e.target)

    def _set_or_map(self, t: _Table, c: Command) -> None:
        assert c.name is not None
        store: dict[str, Any] = t.sets if c.kind == "set" else t.maps
        if c.verb == "add":
            obj = c.obj
            assert isinstance(obj, NftSet | NftMap)
            old = store.get(c.name)
            if old is None:
                store[c.name] = obj.declaration()
            elif old.declaration() != obj.declaration():
                raise NftError(f"Error: Could not process rule: File exists: {c.kind} {c.name}")
            if obj.elements:
                items = (
                    tuple(obj.elements.items()) if isinstance(obj, NftMap) else tuple(obj.elements)
                )
                self._add_elements(t, c.name, items)
        elif c.verb in ("delete", "destroy"):
            if c.name not in store:
                if c.verb == "delete":
                    raise NftError(f"Error: No such file or directory: {c.kind} {c.name}")
                return
            if self._referenced(t, c.name):
                raise NftError(f"Error: Could not process rule: Device or resource busy: {c.name}")
            del store[c.name]
        elif c.verb == "flush":
            old = store.get(c.name)
            if old is None:
                raise NftError(f"Error: No such file or directory: {c.kind} {c.name}")
            store[c.name] = old.declaration()

    def _referenced(self, t: _Table, name: str) -> bool:
        for ch in t.chains.values():
            for r in ch.rules:
                for e in r.exprs:
                    if isinstance(e, Match) and e.value == SetRef(name):
                        return True
                    if isinstance(e, VMap) and e.map == name:
                        return True
        return False

    def _chain(self, t: _Table, c: Command) -> None:
        assert c.name is not None
        if c.verb == "add":
            assert isinstance(c.obj, Chain)
            old = t.chains.get(c.name)
            if old is None:
                t.chains[c.name] = replace(c.obj, rules=())
            elif old.hook != c.obj.hook and c.obj.hook is not None:
                raise NftError(f"Error: Could not process rule: File exists: chain {c.name}")
            for rule in c.obj.rules:
                self._check_refs(t, rule.exprs)
                chain = t.chains[c.name]
                t.chains[c.name] = replace(chain, rules=(*chain.rules, rule))
        elif c.verb == "flush":
            t.chains[c.name] = replace(self._need_chain(t, c.name), rules=())
        elif c.verb in ("delete", "destroy"):
            if c.name not in t.chains:
                if c.verb == "delete":
                    raise NftError(f"Error: No such file or directory: chain {c.name}")
                return
            for ch in t.chains.values():
                for r in ch.rules:
                    for e in r.exprs:
                        targets = [e] if isinstance(e, Action) else []
                        if isinstance(e, VMap) and not isinstance(e.map, str):
                            targets = [v for _, v in e.map]
                        if any(v.target == c.name for v in targets):
                            raise NftError(
                                f"Error: Could not process rule: Device or resource busy: chain {c.name}"
                            )
            for m in t.maps.values():
                if any(v.target == c.name for v in m.elements.values()):
                    raise NftError(
                        f"Error: Could not process rule: Device or resource busy: chain {c.name}"
                    )
            del t.chains[c.name]

    def _element(self, t: _Table, c: Command) -> None:
        assert c.name is not None
        if c.name in t.maps:
            values = element_values(c.elements, "ifname")
        elif c.name in t.sets:
            values = element_values(c.elements, t.sets[c.name].type)
        else:
            raise NftError(f"Error: No such file or directory: set {c.name}")
        if c.verb == "add":
            self._add_elements(t, c.name, values)
        elif c.verb == "delete":
            self._delete_elements(t, c.name, values)
        else:
            raise NftError(f"the fake does not {c.verb} elements")

    def _add_elements(self, t: _Table, name: str, values: tuple[Any, ...]) -> None:
        if name in t.maps:
            m = t.maps[name]
            new = dict(m.elements)
            for item in values:
                if not isinstance(item, tuple):
                    raise NftError(f"Error: map {name} needs key : verdict elements")
                key, verdict = item
                if verdict.target is not None and verdict.target not in t.chains:
                    raise NftError(f"Error: No such file or directory: chain {verdict.target}")
                if key in new and new[key] != verdict:
                    raise NftError(f"Error: Could not process rule: File exists: {key}")
                new[key] = verdict
            t.maps[name] = replace(m, elements=new)
            return
        s = t.sets[name]
        elements = set(s.elements)
        for e in values:
            if s.type == "ipv4_addr" and "interval" not in s.flags and not _single(e):
                raise NftError(f"Error: set {name}: you must add 'flags interval' to add ranges")
            if "interval" in s.flags and e not in elements:
                lo, hi = _interval(e)
                for other in elements:
                    olo, ohi = _interval(other)
                    if lo <= ohi and olo <= hi:
                        raise NftError(
                            f"Error: interval overlaps with an existing one: {e} in {name}"
                        )
            elements.add(e)
        t.sets[name] = replace(s, elements=frozenset(elements))

    def _delete_elements(self, t: _Table, name: str, values: tuple[Any, ...]) -> None:
        if name in t.maps:
            m = t.maps[name]
            new = dict(m.elements)
            for item in values:
                key = item[0] if isinstance(item, tuple) else item
                if key not in new:
                    raise NftError(
                        f"Error: Could not process rule: No such file or directory: {key}"
                    )
                del new[key]
            t.maps[name] = replace(m, elements=new)
            return
        s = t.sets[name]
        elements = set(s.elements)
        for e in values:
            if e not in elements:
                raise NftError(
                    f"Error: Could not process rule: No such file or directory: {e} in {name}"
                )
            elements.discard(e)
        t.sets[name] = replace(s, elements=frozenset(elements))

    # --- listing -----------------------------------------------------------------------------

    def _json(self, t: _Table) -> list[dict[str, Any]]:
        base = {"family": t.family, "table": t.name}
        out: list[dict[str, Any]] = [{"table": {"family": t.family, "name": t.name}}]
        for m in t.maps.values():
            d: dict[str, Any] = {**base, "name": m.name, "type": m.key_type, "map": "verdict"}
            if m.comment:
                d["comment"] = m.comment
            if m.elements:
                d["elem"] = [[k, expr_to_json(v)] for k, v in sorted(m.elements.items())]
            out.append({"map": d})
        for s in t.sets.values():
            d = {**base, "name": s.name, "type": s.type}
            if s.comment:
                d["comment"] = s.comment
            if s.flags:
                d["flags"] = list(s.flags)
            if s.elements:
                d["elem"] = [_element_json(e) for e in sorted(s.elements, key=_interval)]
            out.append({"set": d})
        for ch in t.chains.values():
            out += self._chain_json(t, ch)
        return out

    def _chain_json(self, t: _Table, ch: Chain) -> list[dict[str, Any]]:
        base = {"family": t.family, "table": t.name}
        d: dict[str, Any] = {**base, "name": ch.name}
        if ch.comment:
            d["comment"] = ch.comment
        if ch.hook:
            d.update(
                type=ch.hook.type, hook=ch.hook.hook, prio=ch.hook.priority, policy=ch.hook.policy
            )
        out: list[dict[str, Any]] = [{"chain": d}]
        for r in ch.rules:
            rule = rule_to_json(r)
            rule["expr"] = [
                {"counter": {"packets": 0, "bytes": 0}} if "counter" in e else e
                for e in rule["expr"]
            ]
            out.append({"rule": {**base, "chain": ch.name, **rule}})
        return out


def _single(e: Element) -> bool:
    lo, hi = _interval(e)
    return lo == hi


def _element_json(e: Element) -> Any:
    return expr_to_json(Match("ip daddr", e))["match"]["right"]


def _commands(family: str, table: str, op: Operation) -> list[Command]:
    """The fake's commands for an operation on objects (element edits are applied as values,
    ``FakeNft._edit``): the same as its script would parse into."""
    if isinstance(op, ReplaceTable):
        # As nft runs the table block: chains declared first (a verdict map may jump to one
        # defined further down), then maps and sets with their elements, rules last.
        rs = op.ruleset
        return [
            Command("add", "table", family, table),
            Command("delete", "table", family, table),
            Command("add", "table", family, table, comment=rs.comment),
            *(
                Command("add", "chain", family, table, c.name, replace(c, rules=()))
                for c in rs.chains
            ),
            *(Command("add", "map", family, table, m.name, m) for m in rs.maps),
            *(Command("add", "set", family, table, s.name, s) for s in rs.sets),
            *(Command("add", "chain", family, table, c.name, c) for c in rs.chains),
        ]
    if isinstance(op, DeleteTable):
        return [Command("delete", "table", family, table)]
    if isinstance(op, AddSet):
        return [Command("add", "set", family, table, op.set.name, op.set)]
    if isinstance(op, AddMap):
        return [Command("add", "map", family, table, op.map.name, op.map)]
    if isinstance(op, AddChain):
        return [Command("add", "chain", family, table, op.chain.name, op.chain)]
    if isinstance(op, DeleteSet | DeleteMap | DeleteChain | FlushChain):
        verb = "flush" if isinstance(op, FlushChain) else "delete"
        kind = {DeleteSet: "set", DeleteMap: "map"}.get(type(op), "chain")
        return [Command(verb, kind, family, table, op.name)]
    if isinstance(op, AddRule):
        return [Command("add", "rule", family, table, op.chain, rule=op.rule)]
    return []
