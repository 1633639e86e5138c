"""libnftables' JSON listing of a table (libnftables-json(5)) -> a ``Ruleset``: the pure part of
reading a table back (``dataplane.readback`` asks the kernel for the listing).

Each rule's expressions become the values the compiler writes (``objects.rule_from_json``), so a
live table compares equal to the desired one whatever spelling a given nft version prints for it;
anything unknown reads as ``Opaque`` and shows as drift. The result keeps nft's order.
"""

from __future__ import annotations

from typing import Any

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

__all__ = ["parse_table"]


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
