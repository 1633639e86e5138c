"""Read a live nftables table back into a ``Ruleset``, structurally.

A JSON listing (libnftables-json(5)) gives sets, maps, chains and rules; ``nft.listing`` turns
it back into the values the compiler writes (the pure part), so a live table compares equal to
the desired one whatever spelling a given nft version prints for it. Anything unknown reads as
``Opaque`` and shows as drift. The result keeps nft's order; compare by name when order must not
matter.

The elements of plain address sets (the per-peer sets: all but a
handful of the table's elements) do not go through libnftables: it holds ~0.6 KiB per element
while it lists them (139 MiB at 220,000 elements; issue 21, the agent's memory peak), and any
listing of the table fetches them all. So the table is read in parts:

- ``list ruleset <family>`` with terse output: the table, its chains and rules, and the
  declarations of its sets and maps, without elements (libnftables then fetches none);
- each plain address set (``type ipv4_addr``, no flags) over netlink (``dataplane.setdump``):
  4 bytes an address, compared with the desired set when one is given (``like``), whose
  frozenset the result then shares when they are equal: no copy of the elements is made unless
  they differ;
- every other set (interval sets: a few CIDRs) and every map (a few tunnels) by its own
  ``list set``/``list map``, which fetches that object's elements only;
- the ruleset's generation before and after: a transaction committed in between (by anyone)
  makes the parts disagree, so the table is read again, as libnftables does for its own cache.

Any ``Nft`` is read so, the in-memory fake too (it answers the same questions). If the parts
cannot be read (``list ruleset`` refused: another table of the family has flags), the table's own
whole listing is read instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from peerwall.dataplane.nft import Nft
from peerwall.errors import FlaggedTable, NftError
from peerwall.nft.listing import parse_table
from peerwall.nft.objects import NftMap, NftSet, Ruleset

TRIES = 5
"""Reads in a row that a concurrent commit spoiled, before the table counts as unreadable."""


def read_table(
    nft: Nft, family: str, table: str, like: Ruleset | None = None, *, elements: bool = True
) -> Ruleset | None:
    """The live table ``family table``, or ``None`` if it does not exist.

    ``like``: the desired table, if at hand: a live set equal to its namesake there shares its
    elements (saves a copy). ``elements=False``: sets come without their elements (maps keep
    theirs); for a look at the table's shape only.

    A table with flags (``dormant``, ``owner``) reads as its flags alone, with no objects, so
    that it shows as drift and is replaced: its flags come over netlink, and it is never listed
    as JSON (``errors.FlaggedTable``: libnftables 1.0.6 prints table flags through a
    use-after-free). Any other failure to read raises ``NftError``."""
    try:
        try:
            rs, doc = _read_in_parts(nft, family, table, like, elements)
        except NftError:
            # Also when the parts fail: ``list ruleset`` shows every table of the family, and is
            # refused if another one has flags; the table's own listing may not be.
            doc = nft.list_json(f"list table {family} {table}")
            rs = parse_table(doc, family, table)
            if not elements:
                rs = replace(rs, sets=tuple(s.declaration() for s in rs.sets))
    except FlaggedTable as e:
        if (family, table) not in e.tables:
            raise
        return Ruleset(family, table, flags=e.tables[family, table])
    except NftError:
        if not table_exists(nft, family, table):
            return None
        raise
    if rs is None:
        return None
    for obj in doc.get("nftables", []):
        t = obj.get("table")
        if t and t.get("family") == family and t.get("name") == table and "flags" in t:
            # Flagged between the question over netlink and the listing: its JSON is garbage.
            flags = nft.table_flags(family).get((family, table))
            return Ruleset(family, table, flags=flags or ("unreadable",))
    return rs


def plain(s: NftSet) -> bool:
    """Whether ``s`` is declared as a plain address set: its elements are addresses, read
    over netlink."""
    return s.type == "ipv4_addr" and not s.flags


def _read_in_parts(
    nft: Nft, family: str, table: str, like: Ruleset | None, elements: bool
) -> tuple[Ruleset | None, dict[str, Any]]:
    """``read_table`` through libnftables without elements, and the elements apart (see the
    module's docstring): the table (None: none) and the skeleton's listing."""
    want = {} if like is None else {s.name: s.elements for s in like.sets}
    for _ in range(TRIES):
        before = nft.generation()
        doc = nft.list_json_terse(f"list ruleset {family}")
        if not any(
            (t := o.get("table")) and t.get("family") == family and t.get("name") == table
            for o in doc.get("nftables", [])
        ):
            if nft.generation() == before:
                return None, doc
            continue
        rs = parse_table(doc, family, table)
        sets: list[NftSet] = []
        for s in rs.sets:
            if not elements:
                sets.append(s)
            elif plain(s):
                found = nft.set_addresses(family, table, s.name)
                if found is None:  # an element that is not an address (a catch-all)
                    sets.append(replace(s, type=f"unreadable {s.type}"))
                else:
                    sets.append(replace(s, elements=_elements(found, want.get(s.name))))
            else:
                sets.append(_listed(nft, family, table, "set", s))
        maps = [_listed(nft, family, table, "map", m) for m in rs.maps]
        if nft.generation() == before:
            return replace(rs, sets=tuple(sets), maps=tuple(maps)), doc
    raise NftError(f"table {family} {table} kept changing while it was read ({TRIES} tries)")


def _elements(found: Sequence[int], want: frozenset[Any] | None) -> frozenset[Any]:
    """The live elements: ``want`` itself when they are equal (no copy), else a frozenset of
    them. Equal: as many, and each of them in ``want`` (a set has no duplicates)."""
    if want is not None and len(found) == len(want):
        for a in found:
            if IPv4Address(a) not in want:
                break
        else:
            return want
    return frozenset(map(IPv4Address, found))


def _listed(nft: Nft, family: str, table: str, kind: str, obj: Any) -> Any:
    """A set or map with its elements, from a listing of that object alone (which fetches
    only its elements)."""
    doc = nft.list_json(f"list {kind} {family} {table} {obj.name}")
    got = parse_table(doc, family, table)
    for o in got.sets if kind == "set" else got.maps:
        if o.name == obj.name:
            assert isinstance(o, NftSet | NftMap)
            return o
    raise NftError(f"{kind} {family} {table} {obj.name} was not in its own listing")


def table_exists(nft: Nft, family: str, table: str) -> bool:
    """Over netlink: libnftables' ``list tables`` fetches every element of every table."""
    return (family, table) in nft.table_flags(family)
