"""A truth table written as the contract's JSON, streamed: ``--output json`` (the dense table,
``TruthTable.to_dict``) and ``--output json-classes`` (the compact form, ``classes_dict``), byte
for byte what ``json.dumps`` of those dictionaries gives, plus a newline, without building them:
a million pods make a dense table of a trillion cells and a compact one of 94 million verdicts.
The table itself (``policy.truthtable``) stays a value; writing it is here.
"""

from __future__ import annotations

import codecs
import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from peerwall.policy.truthtable import JSON_CLASSES_FORMAT, TruthTable
from peerwall.policy.verdict import Verdict

__all__ = ["classes_chunks", "json_chunks", "write_json", "write_json_classes"]

_ASCII_COMPATIBLE = frozenset({"utf-8", "ascii", "latin-1", "iso8859-15", "cp1252"})


def _binary_sink(out: IO[str]) -> IO[bytes] | None:
    """The binary buffer under a text stream, if ASCII bytes can be written to it directly."""
    if not isinstance(out, io.TextIOWrapper):
        return None
    try:
        name = codecs.lookup(out.encoding).name
    except LookupError:
        return None
    return out.buffer if name in _ASCII_COMPATIBLE else None


def _write(chunks: Iterable[bytes | memoryview], out: IO[str]) -> None:
    """A text stream over a binary buffer (a file, standard output) gets the bytes through its
    buffer: the output is ASCII, as ``json.dumps`` escapes everything else."""
    raw = _binary_sink(out)
    if raw is None:
        for chunk in chunks:
            out.write(bytes(chunk).decode("ascii"))
        return
    out.flush()
    write = raw.write
    for chunk in chunks:
        write(chunk)


def _enc(value: object) -> bytes:
    return json.dumps(value).encode("ascii")


def write_json(table: TruthTable, out: IO[str]) -> None:
    """Stream the contract JSON (the dense table)."""
    _write(json_chunks(table), out)


def json_chunks(table: TruthTable) -> Iterator[bytes | memoryview]:
    """The dense contract JSON as a sequence of byte strings. Each row class's text is built
    once; a row is its class's text with the source's own column cut out, written as slices of
    it (no copy)."""
    yield b'{"securityMode": ' + _enc(table.security_mode)
    yield b', "sources": ' + _enc(list(table.sources))
    yield b', "destinations": ' + _enc(list(table.destinations))
    yield b', "matrix": {'
    keys = [_enc(d) + b": " for d in table.destinations]
    values = {v: _enc(v.value) for v in Verdict}
    # For each verdict, every destination's cell text: a row is a choice among them.
    cells = {v: [k + text for k in keys] for v, text in values.items()}
    last = len(keys) - 1
    rows: dict[int, tuple[memoryview, list[int]]] = {}
    for i, s in enumerate(table.sources):
        rc = table.row_class[i]
        row = rows.get(rc)
        if row is None:
            block = table.blocks[rc]
            picked = [cells[block[c]][j] for j, c in enumerate(table.col_class)]
            # starts[j]: where cell j begins; starts[j + 1] - 2: where it ends.
            starts = [0, *itertools.accumulate(len(c) + 2 for c in picked)]
            row = rows[rc] = (memoryview(b", ".join(picked)), starts)
        text, starts = row
        yield (b"" if i == 0 else b", ") + _enc(s) + b": {"
        j = table.destination_index.get(s)
        if j is None:
            yield text
        elif j == last:
            yield text[: max(0, starts[j] - 2)]
        else:
            yield text[: starts[j]]
            yield text[starts[j + 1] :]
        yield b"}"
    yield b"}}\n"


def write_json_classes(table: TruthTable, out: IO[str]) -> None:
    """Write the compact form (docs/json-classes.md)."""
    _write(classes_chunks(table), out)


def classes_chunks(table: TruthTable) -> Iterator[bytes]:
    """The compact form as byte strings: the verdicts (row classes x column classes) row by row,
    each a join of the verdicts' ready texts, never as one list of strings."""
    yield b'{"format": ' + _enc(JSON_CLASSES_FORMAT)
    yield b', "securityMode": ' + _enc(table.security_mode)
    yield b', "sources": ' + _enc(list(table.sources))
    yield b', "destinations": ' + _enc(list(table.destinations))
    yield b', "sourceClass": ' + _enc(list(table.row_class))
    yield b', "destinationClass": ' + _enc(list(table.col_class))
    yield b', "verdicts": ['
    for i, row in enumerate(table.blocks):
        yield (b"[" if i == 0 else b", [") + _verdicts(row) + b"]"
    yield b"]}\n"


# A verdict is a str whose text needs no escape: a row is one join of the strings themselves
# (a copy of their characters, 2x faster than looking each verdict's text up: 100,000,000
# verdicts for a million pods).
assert all(_enc(v.value) == f'"{v.value}"'.encode() and v == v.value for v in Verdict)


def _verdicts(row: Sequence[Verdict]) -> bytes:
    """``json.dumps(row)``'s items: ``"YES", "NO", ...``."""
    return ('"' + '", "'.join(row) + '"').encode("ascii") if row else b""
