"""Topology and values text -> plain data (dicts, lists, scalars), or ``TopologyInvalid`` saying
where the text is wrong. No I/O: the caller reads the file.

YAML is read by PyYAML's safe loader (libyaml when installed), with these differences:

- a key repeated in one mapping is an error (YAML forbids it; PyYAML keeps the last one), while
  merge keys (``<<: *defaults``) work as YAML specifies: explicit keys win over merged ones;
- keys must be scalars: a complex key (``? [a, b]``) is an error, not a ``TypeError``;
- a value that cannot be built (``2001-13-45`` read as a date, a 5,000-digit integer) is an
  error naming its field, and so are aliases that refer to themselves or that expand the
  document by more than ``MAX_ALIAS_EXPANSION`` values (a "billion laughs");
- exactly one document is expected.

Text that starts with ``{`` is tried as JSON first (JSON is YAML): the standard library parses a
10,000-pod file in 0.01 s where PyYAML takes 0.9 s.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model.describe import byte_size, field_path, quote

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "MAX_ALIAS_EXPANSION",
    "Document",
    "TextStream",
    "gc_paused",
    "parse_document",
    "parse_stream",
]

DEFAULT_MAX_INPUT_BYTES = 128 * 1024 * 1024
"""Inputs larger than this are refused before parsing (the CLI reads no more than this)."""

MAX_ALIAS_EXPANSION = 1_000_000
"""How many values aliases may add to a document beyond those written in it."""

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml reports the position of an unreadable character in bytes, PyYAML's reader in characters.
_READER_COUNTS_BYTES = _Base is not yaml.SafeLoader
_MERGE_TAG = "tag:yaml.org,2002:merge"
_JSON_START = re.compile(r"[ \t\r\n]*\{")
_JSON_LOOKING = re.compile(r'[ \t\r\n]*\{[ \t\r\n]*["}]')
_MESSAGE_CHARS = 200
_TAG_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "timestamp": "a date",
    "binary": "binary data",
}


@dataclass(frozen=True)
class Document:
    """Parsed data, and for YAML the text it was read from (to quote what was written)."""

    data: object
    yaml_text: str | None = field(default=None, repr=False, compare=False)
    yaml_reread: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    """For YAML parsed from a stream: the text again, read only for an error message."""

    @cached_property
    def root(self) -> Node | None:
        """The YAML node tree, merges applied. Built again, and only for an error message:
        keeping the tree of a large file alive doubles its memory and slows every later
        garbage collection."""
        text = self.yaml_text
        if text is None and self.yaml_reread is not None:
            text = self.yaml_reread()
        if text is None:
            return None
        loader = _Loader(text)
        try:
            with gc_paused():
                root: Node | None = loader.get_single_node()
                if root is not None:
                    loader.construct_document(root)  # applies the merges to the nodes
        finally:
            loader.dispose()
        return root

    def written(self, loc: Sequence[object]) -> str | None:
        """The plain (unquoted) YAML scalar at ``loc`` as written, e.g. ``off`` where the data
        holds ``False``; None for JSON, quoted scalars, or when ``loc`` leads nowhere.

        ``loc`` is a pydantic error location: keys and indexes, ending in ``"[key]"`` when it
        designates a mapping key rather than its value.
        """
        node = self.root
        parts = list(loc)
        want_key = bool(parts) and parts[-1] == "[key]"
        if want_key:
            parts.pop()
        for i, part in enumerate(parts):
            if isinstance(node, MappingNode):
                # After merging, a key may appear twice; the last one is the one in the data.
                pairs = [(k, v) for k, v in node.value if _is_key(k, part)]
                if not pairs:
                    return None
                key_node, value_node = pairs[-1]
                node = key_node if want_key and i == len(parts) - 1 else value_node
            elif isinstance(node, SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    return None
                node = node.value[part]
            else:
                return None
        # A plain scalar's style is '' from libyaml, None from PyYAML.
        if isinstance(node, ScalarNode) and not node.style:
            return str(node.value)
        return None


def parse_document(text: str, source: str, *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Document:
    """One YAML or JSON document -> ``Document``, or ``TopologyInvalid`` naming line and column."""
    _check_size(text, source, max_bytes)
    if _JSON_START.match(text):
        document = _parse_json(text, source)
        if document is not None:
            return document
    return _parse_yaml(text, source)


class TextStream(Protocol):
    """What ``parse_stream`` reads: text in pieces (the shell decodes the file and counts its
    bytes against the input limit as it goes)."""

    def read(self, size: int = -1, /) -> str: ...


_HEAD = 64 * 1024


class _Replayed:
    """The stream, with the piece read to tell JSON from YAML given back first; notes whether
    an anchor (``&``) may occur, as the text check does."""

    def __init__(self, stream: TextStream, head: str) -> None:
        self.stream = stream
        self.head = head
        self.anchors = "&" in head

    def read(self, size: int = -1, /) -> str:
        if self.head:
            piece, self.head = (
                (self.head, "")
                if size < 0 or size >= len(self.head)
                else (self.head[:size], self.head[size:])
            )
            return piece
        piece = self.stream.read(size)
        self.anchors = self.anchors or "&" in piece
        return piece


def parse_stream(stream: TextStream, source: str, reread: Callable[[], str]) -> Document:
    """One YAML or JSON document read from ``stream``: YAML is parsed as it is read, never held
    whole as text; JSON is read whole first (the standard library's parser takes one string,
    and is 90 times faster than the YAML one). ``reread`` gives the whole text again, only to
    word an error. The size limit is the stream's to enforce."""
    head = stream.read(_HEAD)
    if _JSON_START.match(head):
        pieces = [head]
        while piece := stream.read(_HEAD * 16):  # no copy of the whole file in bytes
            pieces.append(piece)
        text = "".join(pieces)
        del pieces, head
        document = _parse_json(text, source)
        if document is not None:
            return document
        return _parse_yaml(text, source)
    return _parse_yaml(_Replayed(stream, head), source, reread)


def _check_size(text: str, source: str, max_bytes: int) -> None:
    # Characters are a lower bound of UTF-8 bytes: encode only when the difference matters.
    size = len(text)
    if size <= max_bytes < 4 * size and not text.isascii():
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TopologyInvalid(
            source,
            [
                Problem(
                    "",
                    f"the input is larger than the limit of {byte_size(max_bytes)} (the setting "
                    "--max-input-size, or PEERWALL_MAX_INPUT_BYTES, raises it)",
                )
            ],
        )


@contextmanager
def gc_paused() -> Iterator[None]:
    """The parsers allocate millions of small containers; the collector's passes over them cost
    more than the parse itself (PyYAML 2.3x faster without). They create no garbage cycles.
    So do validation and resolution (pydantic: 5.4 s instead of 30 s for 1,000,000 pods).

    On the way out, if the youngest generation holds ``PROMOTED_FROM`` objects or more (a big
    parse's), every object of the younger generations is moved to the oldest (``gc.freeze`` then
    ``gc.unfreeze``: two list splices, no pass over the objects). Left in the youngest, the
    first allocation after the pause set off a collection over all of them, then another as
    they aged: 4.6 s of CPU for a 1,000,000-pod topology and its table.

    Not below that: the move takes every young object, not only the pause's, with the garbage
    cycles the rest of the process made (an agent's status written by ``json.dump``, its HTTP
    connections). Moved so, they wait for a full collection, which CPython starts only when the
    objects that aged into the oldest generation *by collection* reach a quarter of it; the
    moved ones are not counted, so they never set it off. A lab agent switched twice a second
    loads its small topology through here each time, and grew by ~20 MiB an hour of such
    garbage (the soak, docs/RELIABILITY.md). A big load still moves the young garbage of its
    moment: hundreds of objects per load, next to the parse's hundreds of thousands."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_count()[0] >= PROMOTED_FROM:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


PROMOTED_FROM = 100_000
"""Young objects from which a pause's end moves them to the oldest generation: a collection over
100,000 young objects costs ~3 ms here, ~56 ms over 1,000,000 (and again as they age)."""


# --- JSON ----------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _parse_json(text: str, source: str) -> Document | None:
    """The document, or None when the text is not JSON but may be YAML (``{a: 1}``)."""
    try:
        with gc_paused():
            return Document(json.loads(text, object_pairs_hook=_unique_pairs))
    except _DuplicateKey as dup:
        # json says nothing of where; the YAML loader reads JSON too and does (slowly, but only
        # for a file that is wrong anyway).
        try:
            _parse_yaml(text, source)
        except TopologyInvalid as exc:
            if any("duplicate key" in p.message for p in exc.problems):
                raise
        raise TopologyInvalid(
            source, [Problem("", f"malformed JSON: duplicate key {quote(dup.key)}")]
        ) from None
    except json.JSONDecodeError as exc:
        if not _JSON_LOOKING.match(text):
            return None  # a YAML flow mapping such as {clusters: [...]}
        where = f"line {exc.lineno}, column {exc.colno}"
        raise TopologyInvalid(source, [Problem(where, f"malformed JSON: {exc.msg}")]) from None
    except RecursionError:
        raise TopologyInvalid(source, [Problem("", "malformed JSON: nested too deeply")]) from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        reason = _one_line(str(exc).split(":")[0])
        raise TopologyInvalid(source, [Problem("", f"malformed JSON: {reason}")]) from None


# --- YAML ----------------------------------------------------------------------------------


class _NodeProblem(Exception):
    """A problem at a node of the document; the field is found from the root when reported."""

    def __init__(
        self, at: Node | None, what: str, field_node: Node | None = None, malformed: bool = False
    ) -> None:
        self.at = at
        """Where the problem is in the text; None when it is not in one place."""
        self.what = what
        self.field_node = field_node or at
        self.malformed = malformed
        """A violation of YAML itself, said "malformed YAML" when no field can be named."""

    def problem(self, root: Node) -> Problem:
        if self.at is None:
            return Problem("", self.what)
        mark = self.at.start_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        parts = _path_to(root, self.field_node) if self.field_node is not None else []
        if parts:
            return Problem(field_path(parts), f"{self.what} ({where})")
        return Problem(where, f"malformed YAML: {self.what}" if self.malformed else self.what)


class _Loader(_Base):  # type: ignore[misc]
    def __init__(self, text: str | _Replayed, reread: Callable[[], str] | None = None) -> None:
        super().__init__(text)
        self._given = text
        self._reread = reread
        self._flattened: set[int] = set()

    @cached_property
    def _text(self) -> str:
        """The text, to quote from in an error (read again if it was streamed)."""
        if isinstance(self._given, str):
            return self._given
        assert self._reread is not None
        return self._reread()

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, KeyError, AttributeError, TypeError) as exc:
            # PyYAML's scalar constructors trust their tag: int('1' * 5000) raises ValueError,
            # "!!bool maybe" a KeyError, "!!timestamp soon" an AttributeError.
            if not isinstance(node, ScalarNode):
                raise
            kind = node.tag.rsplit(":", 1)[-1]
            what = _TAG_KINDS.get(kind, f"a {quote(kind)} value")
            reason = ""
            if isinstance(exc, ValueError | OverflowError):  # their text says what is wrong
                text = _one_line(re.split(r"[:;]", str(exc))[0])
                reason = f" ({text[:1].lower()}{text[1:]})"
            raise _NodeProblem(
                node,
                f"{quote(str(node.value))} cannot be read as {what}{reason}; "
                "quote it if it is meant as a string",
            ) from None

    def flatten_mapping(self, node: MappingNode) -> None:
        """Checks the keys, then merges ``<<`` values into ``node.value`` as YAML specifies:
        explicit keys win, then earlier merged mappings over later ones.

        Unlike PyYAML's, each key is kept once: PyYAML appends every merged pair, so merges of
        merges grow exponentially.
        """
        if id(node) in self._flattened:
            return
        self._flattened.add(id(node))
        # Keyed by (type, value): 1 == True in Python, but the keys 1 and on differ in YAML.
        explicit: dict[tuple[type, object], tuple[Node, Node]] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                if merges:
                    raise _NodeProblem(key_node, "duplicate key '<<'", node, malformed=True)
                merges.append(value_node)
                continue
            key = self._key(key_node, node)
            if key in explicit:
                shown = quote(key[1]) if isinstance(key[1], str) else repr(key[1])
                raise _NodeProblem(key_node, f"duplicate key {shown}", node, malformed=True)
            explicit[key] = (key_node, value_node)
        if not merges:
            return
        merged: dict[tuple[type, object], tuple[Node, Node]] = {}
        for sub in merges[0].value if isinstance(merges[0], SequenceNode) else merges:
            if not isinstance(sub, MappingNode):
                raise _NodeProblem(
                    sub, "a merge key (<<) takes a mapping or a list of mappings", node
                )
            self.flatten_mapping(sub)
            for key_node, value_node in sub.value:
                merged.setdefault(self._key(key_node, sub), (key_node, value_node))
        node.value = [pair for key, pair in merged.items() if key not in explicit]
        node.value += explicit.values()

    def _key(self, key_node: Node, mapping: MappingNode) -> tuple[type, object]:
        if not isinstance(key_node, ScalarNode):
            kind = "list" if isinstance(key_node, SequenceNode) else "mapping"
            start, end = key_node.start_mark.index, key_node.end_mark.index
            written = quote(self._text[start:end]) if 0 <= start < end else ""
            raise _NodeProblem(
                key_node, f"a key must be a string, not a {kind} {written}".rstrip(), mapping
            )
        key = self.construct_object(key_node)
        return type(key), key


def _parse_yaml(
    given: str | _Replayed, source: str, reread: Callable[[], str] | None = None
) -> Document:
    """``given``: the whole text, or a stream parsed as it is read (``reread`` then gives the
    text again, only to word an error)."""
    loader = _Loader(given, reread)
    try:
        with gc_paused():
            root = loader.get_single_node()
            if root is None:
                return Document(None)
            try:
                # Without anchors there are no aliases to expand (a stream knows once read).
                anchors = "&" in given if isinstance(given, str) else given.anchors
                if anchors:
                    _check_expansion(root)
                data = loader.construct_document(root)
            except _NodeProblem as exc:
                raise TopologyInvalid(source, [exc.problem(root)]) from None
    except yaml.YAMLError as exc:
        if isinstance(given, str):
            text = given
        else:
            # Only a character the reader refused needs the text (to place it): the rest of
            # the file, never read, may not even be text.
            assert reread is not None
            text = reread() if isinstance(exc, yaml.reader.ReaderError) else ""
        raise TopologyInvalid(source, [_yaml_problem(exc, text)]) from None
    finally:
        loader.dispose()
    if isinstance(given, str):
        return Document(data, given)
    return Document(data, yaml_reread=reread)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        position = exc.position
        if _READER_COUNTS_BYTES:
            position = len(
                text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "ignore")
            )
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Problem(
            f"line {line}, column {column}",
            f"malformed YAML: control character {_codepoint(char)} is not allowed "
            f"(write it as an escape such as \\x{char:02x} in a double-quoted string)"
            if char < 0x100
            else f"malformed YAML: character {_codepoint(char)} is not allowed",
        )
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
    if isinstance(exc, yaml.composer.ComposerError) and "another document" in what:
        what = "one YAML document expected, but a second one starts here"
    return Problem(where, f"malformed YAML: {_one_line(what)}")


def _codepoint(char: int) -> str:
    return f"U+{char:04X}"


def _one_line(text: str) -> str:
    """A message from a parser, escaped onto one line and cut (it may quote the input)."""
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text[:_MESSAGE_CHARS])
    return flat + ("…" if len(text) > _MESSAGE_CHARS else "")


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: Node) -> None:
    """Counts the values the document expands to, each alias counted as a copy of its target.

    The graph of nodes is shared where aliases point, so a few lines can stand for billions of
    values, which every later step would walk (and a recursive alias for infinitely many).
    """
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            ancestors.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            continue
        if id(node) in sizes:
            continue
        ancestors.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in ancestors:
                raise _NodeProblem(
                    node,
                    f"an alias refers to the value anchored at line {child.start_mark.line + 1}, "
                    "which contains it (recursive data is not supported)",
                )
            if id(child) not in sizes:
                stack.append((child, False))
    extra = sizes[id(root)] - len(sizes)
    if extra > MAX_ALIAS_EXPANSION:
        raise _NodeProblem(
            None,
            f"aliases (*name) expand the document by {extra:,} values, more than the "
            f"{MAX_ALIAS_EXPANSION:,} allowed",
        )


def _path_to(root: Node, target: Node) -> list[object]:
    """The keys and indexes leading from ``root`` to ``target`` ([] for the root or if unseen)."""
    seen: set[int] = set()
    stack: list[tuple[Node, list[object]]] = [(root, [])]
    while stack:
        node, parts = stack.pop()
        if node is target:
            return parts
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key_node, value_node in reversed(node.value):
                key = key_node.value if isinstance(key_node, ScalarNode) else "?"
                stack.append((value_node, [*parts, key]))
        elif isinstance(node, SequenceNode):
            for i in reversed(range(len(node.value))):
                stack.append((node.value[i], [*parts, i]))
    return []


def _is_key(key_node: Node, part: object) -> bool:
    if not isinstance(key_node, ScalarNode):
        return False
    if key_node.tag == "tag:yaml.org,2002:str":
        return bool(key_node.value == part)
    try:  # a key such as 1 or on: compare what it was read as
        value = yaml.constructor.SafeConstructor().construct_object(key_node)
    except (yaml.YAMLError, ValueError, OverflowError):
        return False
    return type(value) is type(part) and bool(value == part)
