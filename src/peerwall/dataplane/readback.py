"""Read a live nftables table back into a ``Ruleset``.

Chains come from the stateless text listing, because rules are compared as the text nft prints;
sets come from the JSON listing, whose elements need no parsing of nft's wrapped text lines. The
result keeps nft's order (sets first, then chains, each in creation order), which is the order of
the script for a table created in one transaction; compare with ``same_skeleton`` or by name when
order must not matter.

Two listings are two reads: a table changed between them reads back inconsistent, which a later
sync repairs. Named maps, counters and other objects are not part of a ``Ruleset`` and are skipped.
"""

from __future__ import annotations

import re
from typing import Any

from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset
from peerwall.dataplane.nft import Nft
from peerwall.errors import NftError

_HOOK = re.compile(
    r"type (?P<type>\S+) hook (?P<hook>\S+)(?: device \S+| devices = \{[^}]*\})?"
    r" priority (?P<priority>[^;]+);(?: policy (?P<policy>\S+);)?"
)
_BLOCK = re.compile(r"\t(?P<kind>\S+) (?P<name>\S+) \{$")


def read_table(nft: Nft, family: str, table: str) -> Ruleset | None:
    """The live table ``family table``, or ``None`` if it does not exist."""
    try:
        text = nft.list_text(f"list table {family} {table}")
    except NftError:
        if not _table_exists(nft, family, table):
            return None
        raise
    chains = parse_chains(text)
    sets = parse_sets(nft.list_json(f"list sets table {family} {table}"), family, table)
    return Ruleset(family, table, sets, chains)


def _table_exists(nft: Nft, family: str, table: str) -> bool:
    for obj in nft.list_json("list tables").get("nftables", []):
        t = obj.get("table")
        if t and t.get("family") == family and t.get("name") == table:
            return True
    return False


def parse_chains(text: str) -> tuple[Chain, ...]:
    """Chains of one table in ``nft -s list table`` output, rules as printed (stripped)."""
    chains: list[Chain] = []
    kind = name = ""
    body: list[str] = []
    for line in text.splitlines():
        if not kind:
            if m := _BLOCK.match(line):
                kind, name, body = m["kind"], m["name"].strip('"'), []
            continue
        if line == "\t}":
            if kind == "chain":
                chains.append(_chain(name, body))
            kind = ""
        elif kind == "chain" and line.strip():
            body.append(line.strip())
    return tuple(chains)


def _chain(name: str, body: list[str]) -> Chain:
    if body and (m := _HOOK.fullmatch(body[0])):
        hook = Hook(m["type"], m["hook"], m["priority"].strip(), m["policy"] or "accept")
        return Chain(name, tuple(body[1:]), hook)
    return Chain(name, tuple(body))


def parse_sets(doc: dict[str, Any], family: str, table: str) -> tuple[NftSet, ...]:
    """Named sets of one table in a JSON listing, elements normalized to nft's text form."""
    sets: list[NftSet] = []
    for obj in doc.get("nftables", []):
        s = obj.get("set")
        if not s or s.get("family") != family or s.get("table") != table:
            continue
        type_ = s["type"]
        flags = s.get("flags", ())
        sets.append(
            NftSet(
                name=s["name"],
                type=" . ".join(type_) if isinstance(type_, list) else str(type_),
                flags=(flags,) if isinstance(flags, str) else tuple(flags),
                elements=frozenset(element_text(e) for e in s.get("elem", ())),
            )
        )
    return tuple(sets)


def element_text(e: Any) -> str:
    """A JSON set element as nft writes it: ``10.0.0.1``, ``10.0.0.0/16``, ``10.0.0.1-10.0.0.9``."""
    if isinstance(e, dict):
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "range" in e:
            lo, hi = e["range"]
            return f"{element_text(lo)}-{element_text(hi)}"
        if "elem" in e:  # an element with a timeout, counter or comment attached
            return element_text(e["elem"]["val"])
        if "concat" in e:
            return " . ".join(element_text(x) for x in e["concat"])
    if isinstance(e, list):  # a map element: [key, value]
        return " : ".join(element_text(x) for x in e)
    return str(e)
