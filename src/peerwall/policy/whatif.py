"""What a change would do: the cells whose verdict differs between two states, with the
explanation of each on both sides. Worked out on equivalence classes (``TruthTable.compare``),
so two states of 10,000 pods compare in seconds; every cell of a block changes alike, and is
explained by one representative."""

from __future__ import annotations

from dataclasses import dataclass, replace

from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Peering, Topology, link_key
from peerwall.policy.expected import Expected
from peerwall.policy.explain import Explanation
from peerwall.policy.truthtable import DiffBlock
from peerwall.policy.verdict import Verdict

RANK = {Verdict.NO: 0, Verdict.PARTIAL: 1, Verdict.YES: 2}


@dataclass(frozen=True)
class Change:
    """A block of cells that change alike: ``sources`` x ``destinations`` (the diagonal aside)."""

    block: DiffBlock
    before: Explanation | None
    """Of the representative cell, in the old state (None: the cell did not exist)."""
    after: Explanation | None

    @property
    def loses(self) -> bool:
        """Access that was there is narrowed: YES -> PARTIAL or NO, PARTIAL -> NO. A cell that
        disappears (its pod or service removed) is a change, not a loss of access."""
        b, a = self.block.expected, self.block.observed
        return b is not None and a is not None and RANK[a] < RANK[b]

    @property
    def cells(self) -> int:
        return self.block.size


def changes(before: Expected, after: Expected) -> list[Change]:
    """Every block of cells whose verdict differs, in table order of its first cell."""
    out = []
    for block in before.table.compare(after.table).blocks:
        first = next(block.mismatches())
        s, d = first.source, first.destination
        old = before.explain(s, d) if block.expected is not None else None
        new = after.explain(s, d) if block.observed is not None else None
        out.append(Change(block, old, new))
    return out


def with_peering_mode(topology: Topology, a: str, b: str, mode: SecurityMode) -> Topology:
    """``topology`` with the connection between ``a`` and ``b`` set to ``mode`` (both directions,
    as they share one connection). Raises ``KeyError`` if they are not peered."""
    key = link_key(a, b)
    if key not in topology.links:
        raise KeyError(key)
    peerings = tuple(
        Peering(p.consumer, p.provider, mode) if link_key(p.consumer, p.provider) == key else p
        for p in topology.peerings
    )
    return replace(topology, peerings=peerings)
