"""Truth tables: who may connect to whom, computed or observed, in the contract's JSON shape.

A table is stored by equivalence classes: every source belongs to a row class and every destination
to a column class, and one verdict is kept per pair of classes. A computed table over 10,000 pods
has a hundred million cells but only a few thousand distinct (row class, column class) pairs; an
observed table simply gives each source and destination a class of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from peerwall.errors import PeerwallError
from peerwall.policy.verdict import Verdict


@dataclass(frozen=True)
class Mismatch:
    source: str
    destination: str
    expected: Verdict | None
    observed: Verdict | None


@dataclass(frozen=True)
class TruthTable:
    security_mode: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    row_class: tuple[int, ...]
    col_class: tuple[int, ...]
    blocks: tuple[tuple[Verdict, ...], ...]
    """``blocks[row_class][col_class]``."""
    _src_index: dict[str, int] = field(init=False, repr=False, compare=False)
    _dst_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_src_index", {s: i for i, s in enumerate(self.sources)})
        object.__setattr__(self, "_dst_index", {d: j for j, d in enumerate(self.destinations)})

    @classmethod
    def from_cells(
        cls,
        security_mode: str,
        sources: Sequence[str],
        destinations: Sequence[str],
        cells: Mapping[tuple[str, str], Verdict],
    ) -> TruthTable:
        """A dense table (one class per source and per destination) from every off-diagonal cell.

        A table is never guessed: a missing cell raises ``TableIncomplete`` naming it (an
        observation that did not happen is not a NO). The diagonal is ignored.
        """
        missing = [(s, d) for s in sources for d in destinations if s != d and (s, d) not in cells]
        if missing:
            raise TableIncomplete(missing)
        blocks = tuple(
            tuple(cells.get((s, d), Verdict.NO) if s != d else Verdict.NO for d in destinations)
            for s in sources
        )
        return cls(
            security_mode,
            tuple(sources),
            tuple(destinations),
            tuple(range(len(sources))),
            tuple(range(len(destinations))),
            blocks,
        )

    def get(self, source: str, destination: str) -> Verdict | None:
        """The verdict of one cell; None on the diagonal or for unknown names."""
        if source == destination:
            return None
        i = self._src_index.get(source)
        j = self._dst_index.get(destination)
        if i is None or j is None:
            return None
        return self.blocks[self.row_class[i]][self.col_class[j]]

    def __getitem__(self, key: tuple[str, str]) -> Verdict:
        v = self.get(*key)
        if v is None:
            raise KeyError(key)
        return v

    def row(self, source: str) -> dict[str, Verdict]:
        block = self.blocks[self.row_class[self._src_index[source]]]
        return {
            d: block[c]
            for d, c in zip(self.destinations, self.col_class, strict=True)
            if d != source
        }

    def cells(self) -> Iterator[tuple[str, str, Verdict]]:
        for s in self.sources:
            for d, v in self.row(s).items():
                yield s, d, v

    def to_dict(self) -> dict[str, Any]:
        return {
            "securityMode": self.security_mode,
            "sources": list(self.sources),
            "destinations": list(self.destinations),
            "matrix": {s: {d: v.value for d, v in self.row(s).items()} for s in self.sources},
        }

    def write_json(self, out: IO[str]) -> None:
        """Stream the contract JSON; large tables are written row by row from class fragments."""
        enc = json.dumps
        out.write('{"securityMode": ' + enc(self.security_mode))
        out.write(', "sources": ' + enc(list(self.sources)))
        out.write(', "destinations": ' + enc(list(self.destinations)))
        out.write(', "matrix": {')
        keys = {d: enc(d) + ": " for d in self.destinations}
        values = {v: enc(v.value) for v in Verdict}
        rows = self.formatted_rows(lambda d, v: keys[d] + values[v])
        for i, (s, frags, j) in enumerate(rows):
            body = ", ".join(frags if j is None else frags[:j] + frags[j + 1 :])
            out.write(("" if i == 0 else ", ") + enc(s) + ": {" + body + "}")
        out.write("}}\n")

    def formatted_rows(
        self, cell: Callable[[str, Verdict], str]
    ) -> Iterator[tuple[str, list[str], int | None]]:
        """Each source, its cells as ``cell(destination, verdict)`` in destination order, and the
        index of its own column (the diagonal) if it has one. Cells are formatted once per row
        class, so writing a large table costs little more than joining strings."""
        cache: dict[int, list[str]] = {}
        for i, s in enumerate(self.sources):
            rc = self.row_class[i]
            if rc not in cache:
                block = self.blocks[rc]
                cache[rc] = [
                    cell(d, block[c])
                    for d, c in zip(self.destinations, self.col_class, strict=True)
                ]
            yield s, cache[rc], self._dst_index.get(s)

    def compare(self, other: TruthTable) -> Comparison:
        """Where ``other`` (observed, or another state) differs from ``self`` (expected).

        Worked out on equivalence classes: sources that are in the same row class of both tables
        behave alike, so one comparison per pair of (class here, class there) for rows and for
        columns decides a whole block of cells. Two tables over 10,000 pods compare in the time
        of their classes, not of their hundred million cells.
        """
        if self.sources == other.sources and self.destinations == other.destinations:
            return self._compare_classes(other)
        return self._compare_names(other)

    def _compare_classes(self, other: TruthTable) -> Comparison:
        rows: dict[tuple[int, int], list[str]] = {}
        for s, a, b in zip(self.sources, self.row_class, other.row_class, strict=True):
            rows.setdefault((a, b), []).append(s)
        cols: dict[tuple[int, int], list[str]] = {}
        for d, a, b in zip(self.destinations, self.col_class, other.col_class, strict=True):
            cols.setdefault((a, b), []).append(d)
        blocks = []
        for (ra, rb), srcs in rows.items():
            mine, theirs = self.blocks[ra], other.blocks[rb]
            for (ca, cb), dsts in cols.items():
                if mine[ca] != theirs[cb]:
                    block = DiffBlock(tuple(srcs), tuple(dsts), mine[ca], theirs[cb])
                    if block.size:
                        blocks.append(block)
        blocks.sort(
            key=lambda b: (self._src_index[b.sources[0]], self._dst_index[b.destinations[0]])
        )
        return Comparison(tuple(blocks))

    def _compare_names(self, other: TruthTable) -> Comparison:
        blocks = []
        for s in dict.fromkeys((*self.sources, *other.sources)):
            for d in dict.fromkeys((*self.destinations, *other.destinations)):
                a, b = self.get(s, d), other.get(s, d)
                if a != b:
                    blocks.append(DiffBlock((s,), (d,), a, b))
        return Comparison(tuple(blocks))

    def differing(self, baseline: TruthTable) -> set[tuple[str, str]]:
        """Cells whose verdict differs from ``baseline`` (the seed highlights them in yellow)."""
        return {(m.source, m.destination) for m in baseline.compare(self).mismatches()}


class TableIncomplete(PeerwallError):
    """Cells of an observed table that were never observed."""

    def __init__(self, missing: Sequence[tuple[str, str]]) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(f"{s} -> {d}" for s, d in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(f"incomplete table: no verdict for {shown}{more}")


@dataclass(frozen=True)
class DiffBlock:
    """Every cell of ``sources`` x ``destinations`` (the diagonal aside) goes from ``expected``
    to ``observed``; ``None``: the cell is not in that table."""

    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    expected: Verdict | None
    observed: Verdict | None

    @property
    def size(self) -> int:
        same = len(set(self.sources).intersection(self.destinations))
        return len(self.sources) * len(self.destinations) - same

    def mismatches(self) -> Iterator[Mismatch]:
        for s in self.sources:
            for d in self.destinations:
                if s != d:
                    yield Mismatch(s, d, self.expected, self.observed)


@dataclass(frozen=True)
class Comparison:
    """The cells where two tables differ, as blocks of cells that differ alike."""

    blocks: tuple[DiffBlock, ...]

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def __len__(self) -> int:
        return sum(b.size for b in self.blocks)

    def mismatches(self) -> Iterator[Mismatch]:
        """Every differing cell, block by block."""
        for b in self.blocks:
            yield from b.mismatches()

    def cells(self) -> list[tuple[str, str]]:
        return [(m.source, m.destination) for m in self.mismatches()]
