"""Options shared by the commands: the topology file, ``--set KEY=VALUE`` and ``--values FILE``.

Mode selection mirrors the seed (Liqo's Helm chart): ``networking.securityMode`` from a values
file, overridden by ``--set networking.securityMode=...``, else the built-in default. The chosen
mode is the *global default*; a cluster's or a peering's ``securityMode`` in the topology is more
specific and still wins (DESIGN.md §1).

Both sources of values go through one registry, ``VALUE_KEYS``: a key it does not list is an
error naming the key, with a near match if there is one (a misspelt key must not silently mean
the default).

Every input is read up to a size limit (``PEERWALL_MAX_INPUT_BYTES``, default 128 MiB), never
whole: ``-f /dev/zero`` is an error, not a ``MemoryError``.

Every problem is raised as a ``PeerwallError`` (the CLI prints it and exits with status 2).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from peerwall.errors import ModeInvalid, Problem, TopologyInvalid
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.model.describe import byte_size, describe, field_path, quote
from peerwall.model.load import mode_from
from peerwall.model.parse import DEFAULT_MAX_INPUT_BYTES, parse_document

MODE_KEY = "networking.securityMode"
DEFAULT_MODE = SecurityMode.FULL_POD_TO_POD
MAX_INPUT_ENV = "PEERWALL_MAX_INPUT_BYTES"


@dataclass(frozen=True)
class ValueKey:
    """A Helm-style value peerwall understands."""

    path: str
    """Dotted, as in ``--set``; nested mappings in a values file (``networking: {securityMode}``)."""
    parse: Callable[[object], object]
    """Raw value -> value, or ``ValueError`` saying why. From ``--set`` the raw value is the text
    after ``=``; from a values file, whatever YAML read (a string, a number, a boolean...)."""
    example: str
    """A valid value, for messages."""


VALUE_KEYS = (ValueKey(MODE_KEY, mode_from, SecurityMode.FULL_POD_TO_POD.value),)
"""The one place to register a value (e.g. ``image.repository``, ``agent.resyncInterval``)."""


def known_keys() -> Mapping[str, ValueKey]:
    """Registered keys by dotted path. Derived from ``VALUE_KEYS`` on each call (it is tiny), so
    nothing else needs updating when a key is registered."""
    return {k.path: k for k in VALUE_KEYS}


def _by_parts() -> Mapping[tuple[object, ...], ValueKey]:
    return {tuple(k.path.split(".")): k for k in VALUE_KEYS}


def _groups() -> set[tuple[object, ...]]:
    """Leading parts of registered keys (``("networking",)``): their values are mappings."""
    return {parts[:i] for parts in _by_parts() for i in range(1, len(parts))}


# Typer parameter types, to share one spelling and help text across commands.
TopologyFile = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        metavar="FILE",
        help="Topology file (YAML or JSON); '-' reads standard input.",
        show_default=False,
    ),
]
SetValues = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help=f"Set a value, as with Helm (repeatable). Known keys: {', '.join(known_keys())}.",
        show_default=False,
    ),
]
ValuesFile = Annotated[
    Path | None,
    typer.Option(
        "--values",
        metavar="FILE",
        help=f"Helm-style values file ({', '.join(known_keys())}); --set wins over it.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class ModeChoice:
    """The global default mode and where it came from."""

    mode: SecurityMode
    origin: str
    """``--set``, ``values file FILE`` or ``built-in default``."""

    def describe(self) -> str:
        return f"{self.mode.value} (from {self.origin})"


# --- values: one registry for --set and --values -------------------------------------------


def key_hint(parts: tuple[object, ...]) -> str:
    """`` (did you mean networking.securityMode?)``, or the known keys if none is near.

    A key is compared with its siblings (``networking.mtu`` with ``securityMode``, not with the
    whole of ``networking.securityMode``, which it would resemble by its prefix alone).
    """
    known = list(known_keys())
    prefix = ".".join(str(p) for p in parts[:-1])
    siblings = {k[len(prefix) + 1 :].lower(): k for k in known if k.startswith(f"{prefix}.")}
    name = str(parts[-1]) if siblings else ".".join(str(p) for p in parts)
    candidates = siblings or {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    if close:
        return f" (did you mean {', '.join(candidates[c] for c in close)}?)"
    return f" (known keys: {', '.join(known)})"


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``--set`` arguments -> {key: text}; later ones win, commas separate pairs (as Helm).

    Keys are checked here, values by ``set_values``.
    """
    known = known_keys()
    out: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                example = VALUE_KEYS[0]
                raise ModeInvalid(
                    f"--set {quote(pair)}: expected KEY=VALUE, e.g. {example.path}={example.example}"
                )
            if key not in known:
                hint = key_hint(tuple(key.split(".")))
                raise ModeInvalid(f"--set {pair}: unknown key {quote(key)}{hint}")
            out[key] = raw.strip()
    return out


def set_values(items: Iterable[str]) -> dict[str, object]:
    """``--set`` arguments -> {key: value}, each value parsed as its key's registration says."""
    known = known_keys()
    out: dict[str, object] = {}
    for key, raw in parse_sets(items).items():
        try:
            out[key] = known[key].parse(raw)
        except ValueError as exc:
            raise ModeInvalid(f"--set {key}: {exc}") from None
    return out


def values_from_data(data: object, source: str) -> dict[str, object]:
    """A values file's data -> {key: value} for the keys it sets (null sets nothing, as in Helm).

    Every unknown key, misplaced value and invalid value is reported, each on its line.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TopologyInvalid(
            source, [Problem("", f"expected a mapping of values, got {describe(data)}")]
        )
    out: dict[str, object] = {}
    problems: list[Problem] = []
    _walk_values((), data, _by_parts(), _groups(), out, problems)
    if problems:
        raise TopologyInvalid(source, problems)
    return out


def _walk_values(
    prefix: tuple[object, ...],
    mapping: dict[object, object],
    keys: Mapping[tuple[object, ...], ValueKey],
    groups: set[tuple[object, ...]],
    out: dict[str, object],
    problems: list[Problem],
) -> None:
    # Only registered groups are entered, so the recursion is as deep as the deepest key.
    for name, value in mapping.items():
        parts = (*prefix, name)
        path = field_path(parts)
        key = keys.get(parts)
        if key is not None:
            if value is None:
                continue
            try:
                out[key.path] = key.parse(value)
            except ValueError as exc:
                problems.append(Problem(path, str(exc)))
        elif parts in groups:
            if isinstance(value, dict):
                _walk_values(parts, value, keys, groups, out, problems)
            elif value is not None:
                problems.append(Problem(path, f"expected a mapping, got {describe(value)}"))
        else:
            problems.append(Problem(path, f"unknown key{key_hint(parts)}"))


def read_values(path: Path) -> dict[str, object]:
    """The values a Helm-style values file sets, by dotted key. An empty file sets none."""
    source, text = read_source(path)
    return values_from_data(parse_document(text, source, max_bytes=max_input_bytes()).data, source)


# --- reading inputs --------------------------------------------------------------------------


def max_input_bytes() -> int:
    """The input size limit: ``PEERWALL_MAX_INPUT_BYTES`` if set, else 128 MiB."""
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise TopologyInvalid(
            MAX_INPUT_ENV, [Problem("", f"expected a positive number of bytes, got {quote(raw)}")]
        )
    return limit


def _source(path: Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def read_text(path: Path) -> str:
    """A file's text (``-`` is standard input), or a one-line ``TopologyInvalid``.

    At most the limit plus one byte is read: enough to know the input is too large.
    """
    limit = max_input_bytes()
    try:
        if str(path) == "-":
            data = _read_capped(sys.stdin, limit)
        else:
            with path.open("rb") as f:
                data = _read_capped(f, limit)
        if len(data) <= limit:
            return data.decode("utf-8")
        problem = (
            f"larger than {byte_size(limit)}, the input limit (set {MAX_INPUT_ENV} to change it)"
        )
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "is a directory, not a file"
    except PermissionError:
        problem = "permission denied"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    raise TopologyInvalid(_source(path), [Problem("", problem)])


_CHUNK = 1 << 20


def _read_capped(stream: IO[Any], limit: int) -> bytearray:
    """Up to ``limit + 1`` bytes of ``stream`` (text streams are read through their buffer).

    In chunks, until the end: one ``read(n)`` may return less than asked (a terminal, a pipe).
    """
    binary = getattr(stream, "buffer", stream)
    data = bytearray()
    while len(data) <= limit:
        chunk = binary.read(min(_CHUNK, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk.encode() if isinstance(chunk, str) else chunk
    return data


def read_source(path: Path) -> tuple[str, str]:
    """(name to report, text) of the topology file; ``-`` is standard input, read once."""
    return _source(path), read_text(path)


def read_topology(path: Path) -> Topology:
    """Read, parse and validate the topology file."""
    source, text = read_source(path)
    return load_topology(text, source, max_bytes=max_input_bytes())


# --- the mode --------------------------------------------------------------------------------


def resolve_mode(sets: Iterable[str] | None = None, values: Path | None = None) -> ModeChoice:
    """The global default mode: ``--set`` over the values file over the built-in default."""
    on_command_line = set_values(sets or ())
    # The values file is checked even when --set overrides it: a typo there still fails loudly.
    in_file = read_values(values) if values is not None else {}
    if MODE_KEY in on_command_line:
        return ModeChoice(_mode(on_command_line[MODE_KEY]), "--set")
    if MODE_KEY in in_file:
        return ModeChoice(_mode(in_file[MODE_KEY]), f"values file {values}")
    return ModeChoice(DEFAULT_MODE, "built-in default")


def _mode(value: object) -> SecurityMode:
    assert isinstance(value, SecurityMode)  # what the registry's parser returns for MODE_KEY
    return value


def load(
    file: Path, sets: Iterable[str] | None = None, values: Path | None = None
) -> tuple[Topology, ModeChoice]:
    """What most commands start with. Options are checked before the topology is read."""
    choice = resolve_mode(sets, values)
    return read_topology(file), choice
