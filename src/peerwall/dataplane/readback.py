"""Read a live nftables table back into a ``Ruleset``, structurally.

One JSON listing (libnftables-json(5)) gives sets with their elements, maps, chains and rules;
``nft.objects`` turns each rule's expressions back into the values the compiler writes, so a live
table compares equal to the desired one whatever spelling a given nft version prints for it.
Anything unknown reads as ``Opaque`` and shows as drift. The result keeps nft's order; compare by
name when order must not matter.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from peerwall.dataplane.nft import Nft
from peerwall.errors import NftError
from peerwall.nft.objects import (
    Chain,
    Hook,
    NftMap,
    NftSet,
    Rule,
    Ruleset,
    elements_from_json,
    map_verdict_from_json,
    rule_from_json,
)


def read_table(nft: Nft, family: str, table: str) -> Ruleset | None:
    """The live table ``family table``, or ``None`` if it does not exist.

    A table with flags (``dormant``, ``owner``) makes libnftables 1.0.6 print invalid JSON for
    its listing (and garbage for the flags in ``list tables``): such a table reads as its flags
    alone, with no objects, so that it shows as drift and is replaced. Any other failure to read
    raises ``NftError``."""
    try:
        doc = nft.list_json(f"list table {family} {table}")
    except NftError:
        found = _table_entry(nft, family, table)
        if found is None:
            return None
        if "flags" not in found:
            raise
        return Ruleset(family, table, flags=_flags(nft, family, table, found["flags"]))
    rs = parse_table(doc, family, table)
    for obj in doc.get("nftables", []):
        if (t := obj.get("table")) and t.get("name") == table and "flags" in t:
            return replace(rs, flags=_flags(nft, family, table, t["flags"]))
    return rs


def table_exists(nft: Nft, family: str, table: str) -> bool:
    return _table_entry(nft, family, table) is not None


def _table_entry(nft: Nft, family: str, table: str) -> dict[str, Any] | None:
    for obj in nft.list_json("list tables").get("nftables", []):
        t = obj.get("table")
        if t and t.get("family") == family and t.get("name") == table:
            return dict(t)
    return None


TABLE_FLAGS = frozenset({"dormant", "owner", "persist"})


def _flags(nft: Nft, family: str, table: str, said: Any) -> tuple[str, ...]:
    """The table's flags: JSON's when they make sense, else the text listing's header (1.0.6
    prints some unrelated string as JSON), else ``unreadable``: flags there are, of some kind."""
    names = [said] if isinstance(said, str) else said if isinstance(said, list) else []
    if names and all(isinstance(n, str) and n in TABLE_FLAGS for n in names):
        return tuple(names)
    list_text = getattr(nft, "list_text", None)
    if list_text is not None:
        with contextlib.suppress(NftError):
            for line in list_text(f"list table {family} {table}").splitlines()[1:3]:
                words = line.split()
                if words[:1] == ["flags"] and len(words) == 2:
                    return tuple(words[1].split(","))
    return ("unreadable",)


def _mine(o: dict[str, Any], family: str, table: str, key: str = "table") -> bool:
    return bool(o.get("family") == family and o.get(key) == table)


def parse_table(doc: dict[str, Any], family: str, table: str) -> Ruleset:
    """A JSON listing -> the ``Ruleset`` of one table (other tables in it are ignored)."""
    sets: list[NftSet] = []
    maps: list[NftMap] = []
    chains: dict[str, tuple[Hook | None, str | None]] = {}
    rules: dict[str, list[Rule]] = {}
    for obj in doc.get("nftables", []):
        if (s := obj.get("set")) and _mine(s, family, table):
            flags = s.get("flags", ())
            type_ = " . ".join(s["type"]) if isinstance(s["type"], list) else str(s["type"])
            elements = elements_from_json(s.get("elem", ()))
            if elements is None:  # not addresses: the declaration cannot be what we wrote
                type_, elements = f"unreadable {type_}", frozenset()
            sets.append(
                NftSet(
                    s["name"],
                    type_,
                    (flags,) if isinstance(flags, str) else tuple(flags),
                    s.get("comment"),
                    elements,
                )
            )
        elif (m := obj.get("map")) and _mine(m, family, table):
            verdicts = {str(k): map_verdict_from_json(v) for k, v in m.get("elem", ())}
            maps.append(NftMap(m["name"], str(m["type"]), m.get("comment"), verdicts))
        elif (c := obj.get("chain")) and _mine(c, family, table):
            hook = None
            if "hook" in c:
                hook = Hook(c["type"], c["hook"], int(c["prio"]), c.get("policy", "accept"))
            chains[c["name"]] = (hook, c.get("comment"))
            rules.setdefault(c["name"], [])
        elif (r := obj.get("rule")) and _mine(r, family, table):
            rules.setdefault(r["chain"], []).append(rule_from_json(r))
    return Ruleset(
        family,
        table,
        tuple(sets),
        tuple(maps),
        tuple(Chain(n, tuple(rules.get(n, ())), h, cm) for n, (h, cm) in chains.items()),
    )
