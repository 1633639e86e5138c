"""Read a live nftables table back into a ``Ruleset``, structurally.

One JSON listing (libnftables-json(5)) gives sets with their elements, maps, chains and rules;
``nft.listing`` turns it back into the values the compiler writes (the pure part), so a live
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
from peerwall.nft.listing import parse_table
from peerwall.nft.objects import Ruleset


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
