"""Truth tables: who may connect to whom, computed or observed, in the contract's JSON shape.

A table is stored by equivalence classes: every source belongs to a row class and every destination
to a column class, and one verdict is kept per pair of classes. A computed table over 10,000 pods
has a hundred million cells but only a few thousand distinct (row class, column class) pairs; an
observed table simply gives each source and destination a class of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from peerwall.errors import TableIncomplete
from peerwall.policy.verdict import Verdict

JSON_CLASSES_FORMAT = "peerwall/json-classes/v1"
"""The ``format`` of the compact table (``--output json-classes``, docs/json-classes.md)."""


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

    # Built when first needed (a million pods: 3 s that writing the compact form never needs).
    @cached_property
    def source_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.sources)}

    @cached_property
    def destination_index(self) -> dict[str, int]:
        return {d: j for j, d in enumerate(self.destinations)}

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
        i = self.source_index.get(source)
        j = self.destination_index.get(destination)
        if i is None or j is None:
            return None
        return self.blocks[self.row_class[i]][self.col_class[j]]

    def __getitem__(self, key: tuple[str, str]) -> Verdict:
        v = self.get(*key)
        if v is None:
            raise KeyError(key)
        return v

    def row(self, source: str) -> dict[str, Verdict]:
        block = self.blocks[self.row_class[self.source_index[source]]]
        return {
            d: block[c]
            for d, c in zip(self.destinations, self.col_class, strict=True)
            if d != source
        }

    def restrict(self, sources: Iterable[str], destinations: Iterable[str]) -> TruthTable:
        """The sub-table of these sources and destinations (in this table's order; unknown
        names are ignored). Classes are kept (those left unused dropped), so it costs one pass
        over the names and the classes."""
        keep_s, keep_d = set(sources), set(destinations)
        rows = [i for i, s in enumerate(self.sources) if s in keep_s]
        cols = [j for j, d in enumerate(self.destinations) if d in keep_d]
        row_new: dict[int, int] = {}
        row_class = tuple(row_new.setdefault(self.row_class[i], len(row_new)) for i in rows)
        col_new: dict[int, int] = {}
        col_class = tuple(col_new.setdefault(self.col_class[j], len(col_new)) for j in cols)
        blocks = tuple(tuple(self.blocks[r][c] for c in col_new) for r in row_new)
        return TruthTable(
            self.security_mode,
            tuple(self.sources[i] for i in rows),
            tuple(self.destinations[j] for j in cols),
            row_class,
            col_class,
            blocks,
        )

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

    # --- the compact form (``--output json-classes``, docs/json-classes.md) ------------------

    def classes_dict(self) -> dict[str, Any]:
        """The compact form: the classes and one verdict per pair of classes."""
        return {
            "format": JSON_CLASSES_FORMAT,
            "securityMode": self.security_mode,
            "sources": list(self.sources),
            "destinations": list(self.destinations),
            "sourceClass": list(self.row_class),
            "destinationClass": list(self.col_class),
            "verdicts": [[v.value for v in row] for row in self.blocks],
        }

    @classmethod
    def from_classes(cls, doc: Mapping[str, Any]) -> TruthTable:
        """The table a compact document describes (``ValueError`` if it is inconsistent)."""
        if doc.get("format") != JSON_CLASSES_FORMAT:
            raise ValueError(f"not a {JSON_CLASSES_FORMAT} document: format {doc.get('format')!r}")
        sources, destinations = tuple(doc["sources"]), tuple(doc["destinations"])
        row_class, col_class = tuple(doc["sourceClass"]), tuple(doc["destinationClass"])
        blocks = tuple(tuple(Verdict(v) for v in row) for row in doc["verdicts"])
        if len(row_class) != len(sources) or len(col_class) != len(destinations):
            raise ValueError("sourceClass/destinationClass: one class per source/destination")
        columns = len(blocks[0]) if blocks else 0
        if any(len(row) != columns for row in blocks):
            raise ValueError("verdicts: every row (source class) has one verdict per column")
        if any(not 0 <= r < len(blocks) for r in row_class):
            raise ValueError("sourceClass: a class without a row in verdicts")
        if blocks and any(not 0 <= c < columns for c in col_class):
            raise ValueError("destinationClass: a class without a column in verdicts")
        return cls(doc["securityMode"], sources, destinations, row_class, col_class, blocks)

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
            yield s, cache[rc], self.destination_index.get(s)

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
            key=lambda b: (
                self.source_index[b.sources[0]],
                self.destination_index[b.destinations[0]],
            )
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
        """Cells whose verdict differs from ``baseline`` (the seed highlights them in yellow).
        ``differences`` answers the same per class, for views of tables too large to list."""
        return {(m.source, m.destination) for m in baseline.compare(self).mismatches()}

    def differences(self, baseline: TruthTable) -> Differences:
        """Which of this table's cells differ from ``baseline``, answered per pair of classes."""
        src = baseline.source_index
        dst = baseline.destination_index
        return Differences(
            baseline,
            tuple(baseline.row_class[src[s]] if s in src else -1 for s in self.sources),
            tuple(baseline.col_class[dst[d]] if d in dst else -1 for d in self.destinations),
        )


@dataclass(frozen=True)
class Differences:
    """The "differs from the baseline" mark of a table's cells (the seed's yellow cells against
    FullPodToPod), decided per class: every source and destination of the table is given its
    class in ``baseline``, -1 where the baseline lacks the name (``compare`` counts such a cell as
    differing). The same cells as ``TruthTable.differing``, without listing them."""

    baseline: TruthTable
    row_class: tuple[int, ...]
    """For each of the table's sources: its row class in the baseline, or -1."""
    col_class: tuple[int, ...]
    """For each of the table's destinations: its column class in the baseline, or -1."""

    def differs(self, verdict: Verdict, row_class: int, col_class: int) -> bool:
        """Does a cell of these baseline classes differ from ``verdict``?"""
        if row_class < 0 or col_class < 0:
            return True
        return self.baseline.blocks[row_class][col_class] is not verdict

    def cell(self, i: int, j: int, verdict: Verdict) -> bool:
        """Does the table's cell (source ``i``, destination ``j``), of ``verdict``, differ?"""
        return self.differs(verdict, self.row_class[i], self.col_class[j])


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
