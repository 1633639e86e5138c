"""Value objects for one nftables table, and their rendering to nft script text.

Rules are kept as nft statement text in the canonical form that ``nft -s list`` prints back, so a
live table read back from the kernel compares equal to the desired one when nothing drifted.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain."""

    type: str  # filter | nat
    hook: str  # prerouting | forward | postrouting | ...
    priority: str  # as nft prints it: "filter", "dstnat", "srcnat", "dstnat - 10"
    policy: str = "accept"


@dataclass(frozen=True)
class NftSet:
    name: str
    type: str = "ipv4_addr"
    flags: tuple[str, ...] = ("interval",)
    elements: frozenset[str] = field(default_factory=frozenset)
    """Addresses ("10.0.0.1") and prefixes ("10.0.0.0/16"), as nft prints them."""

    def declaration(self) -> NftSet:
        """The set without its elements: what must match for an element-only update."""
        return NftSet(self.name, self.type, self.flags)


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...] = ()
    hook: Hook | None = None


@dataclass(frozen=True)
class Ruleset:
    """One table: the unit peerwall owns in a gateway and replaces atomically."""

    family: str
    table: str
    sets: tuple[NftSet, ...] = ()
    chains: tuple[Chain, ...] = ()

    def set(self, name: str) -> NftSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    def chain(self, name: str) -> Chain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)

    def skeleton(self) -> Ruleset:
        """Everything but set elements: equal skeletons mean a diff can be element-only."""
        return Ruleset(
            self.family, self.table, tuple(s.declaration() for s in self.sets), self.chains
        )


def sort_elements(elements: frozenset[str]) -> list[str]:
    """Numeric order (addresses, prefixes, ranges ``a-b``), so scripts are stable and readable."""

    def key(e: str) -> tuple[int, int, str]:
        first = e.split("-", 1)[0].split("/", 1)[0]
        try:
            return (0, int(ipaddress.ip_address(first)), e)
        except ValueError:
            return (1, 0, e)

    return sorted(elements, key=key)


def render_elements(elements: frozenset[str]) -> str:
    return "{ " + ", ".join(sort_elements(elements)) + " }"


def render_table(rs: Ruleset) -> str:
    """The table as an nft script block (``table inet peerwall { ... }``)."""
    out = [f"table {rs.family} {rs.table} {{"]
    for s in rs.sets:
        out.append(f"\tset {s.name} {{")
        out.append(f"\t\ttype {s.type}")
        if s.flags:
            out.append(f"\t\tflags {','.join(s.flags)}")
        if s.elements:
            out.append(f"\t\telements = {render_elements(s.elements)}")
        out.append("\t}")
    for c in rs.chains:
        out.append(f"\tchain {c.name} {{")
        if c.hook:
            h = c.hook
            out.append(f"\t\ttype {h.type} hook {h.hook} priority {h.priority}; policy {h.policy};")
        out.extend(f"\t\t{r}" for r in c.rules)
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def render_replace(rs: Ruleset) -> str:
    """One transaction that replaces the table exactly.

    ``flush table`` would keep old set elements; creating then deleting the table first makes the
    script valid whether or not the table exists, and the whole buffer is one atomic transaction.
    """
    return (
        f"add table {rs.family} {rs.table}\ndelete table {rs.family} {rs.table}\n"
        + render_table(rs)
    )
