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
        """A dense table (one class per source and per destination); missing cells are NO."""
        blocks = tuple(tuple(cells.get((s, d), Verdict.NO) for d in destinations) for s in sources)
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

    def compare(self, other: TruthTable) -> list[Mismatch]:
        """Cells where ``other`` (observed) differs from ``self`` (expected), in table order."""
        out = []
        for s in dict.fromkeys((*self.sources, *other.sources)):
            for d in dict.fromkeys((*self.destinations, *other.destinations)):
                a, b = self.get(s, d), other.get(s, d)
                if a != b:
                    out.append(Mismatch(s, d, a, b))
        return out

    def differing(self, baseline: TruthTable) -> set[tuple[str, str]]:
        """Cells whose verdict differs from ``baseline`` (the seed highlights them in yellow)."""
        return {(m.source, m.destination) for m in baseline.compare(self)}
