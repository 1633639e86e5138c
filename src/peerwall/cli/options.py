"""Options shared by the commands: the topology file, ``--set KEY=VALUE`` and ``--values FILE``.

Mode selection mirrors the seed (Liqo's Helm chart): ``networking.securityMode`` from a values
file, overridden by ``--set networking.securityMode=...``, else the built-in default. The chosen
mode is the *global default*; a cluster's or a peering's ``securityMode`` in the topology is more
specific and still wins (DESIGN.md §1).

Both sources of values go through one registry, ``VALUE_KEYS``: a key it does not list is an
error naming the key, with a near match if there is one (a misspelt key must not silently mean
the default).

Every input is read up to a size limit (``--max-input-size``, ``PEERWALL_MAX_INPUT_BYTES``, default 128 MiB), never
whole: ``-f /dev/zero`` is an error, not a ``MemoryError``.

Every problem is raised as a ``PeerwallError`` (the CLI prints it and exits with status 2).
"""

from __future__ import annotations

import codecs
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model.describe import byte_size
from peerwall.model.modes import DEFAULT_MODE, MODE_KEY, SecurityMode
from peerwall.settings import MAX_INPUT_ENV, max_input_bytes
from peerwall.values import (
    AUDIT_KEY,
    known_keys,
    set_values,
    values_from_text,
)

if TYPE_CHECKING:
    from peerwall.agent.kube.snapshot import ClusterRef
    from peerwall.model import Topology


class TextOrJson(str, Enum):
    """``--output`` of the commands that print a document: text, or the same as data."""

    text = "text"
    json = "json"
    yaml = "yaml"


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
InputFile = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        metavar="FILE",
        help="Topology file (YAML or JSON); '-' reads standard input. Or --kubeconfig.",
        show_default=False,
    ),
]
Kubeconfigs = Annotated[
    list[Path] | None,
    typer.Option(
        "--kubeconfig",
        metavar="FILE",
        help="Read the topology from live Liqo clusters instead of -f: one kubeconfig per "
        "cluster (repeatable), every peer included.",
        show_default=False,
    ),
]
Contexts = Annotated[
    list[str] | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="kubeconfig context (repeatable): with one --kubeconfig, one cluster per context; "
        "with several, one per --kubeconfig in order (default: each file's current context).",
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


def read_values(path: Path) -> dict[str, object]:
    """The values a Helm-style values file sets, by dotted key. An empty file sets none."""
    source, text = read_source(path)
    return values_from_text(text, source, max_bytes=max_input_bytes())


# --- reading inputs --------------------------------------------------------------------------


def _source(path: Path) -> str:
    return "<stdin>" if str(path) == "-" else str(path)


def read_text(path: Path) -> str:
    """A file's text (``-`` is standard input), or a one-line ``TopologyInvalid``.

    At most the limit plus one byte is read: enough to know the input is too large.
    """
    limit = max_input_bytes()
    data: bytearray | None
    try:
        if str(path) == "-":
            data = _read_capped(sys.stdin, limit)
        else:
            with path.open("rb") as f:
                # A regular file's size is known before reading: refuse it at once, not after
                # reading the limit's worth (a pipe or a device is judged by what it gives).
                info = os.fstat(f.fileno())
                fits = not stat.S_ISREG(info.st_mode) or info.st_size <= limit
                data = _read_capped(f, limit) if fits else None
        if data is not None and len(data) <= limit:
            return data.decode("utf-8")
        problem = _too_large(limit)
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


def _too_large(limit: int) -> str:
    return f"larger than {byte_size(limit)}, the input limit (--max-input-size or {MAX_INPUT_ENV} to change it)"


class _CappedText:
    """A file's text, read in pieces by a parser: decoded as UTF-8 as it comes, its bytes
    counted against the input limit. Each problem is the one ``read_text`` reports."""

    def __init__(self, binary: IO[bytes], source: str, limit: int) -> None:
        self.binary = binary
        self.source = source
        self.limit = limit
        self.read_bytes = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()

    def read(self, size: int = -1, /) -> str:
        while True:
            # The parsers ask for characters; a byte each is what ASCII takes.
            want = min(size, _CHUNK) if size >= 0 else self.limit + 1 - self.read_bytes
            raw = self.binary.read(max(want, 1))
            start = self.read_bytes - len(self.decoder.getstate()[0])
            self.read_bytes += len(raw)
            if self.read_bytes > self.limit:
                raise TopologyInvalid(self.source, [Problem("", _too_large(self.limit))])
            try:
                text = self.decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                problem = f"not UTF-8 text ({exc.reason} at byte {start + exc.start})"
                raise TopologyInvalid(self.source, [Problem("", problem)]) from None
            # "" only at the end: the bytes of a character cut by the read come with the next.
            if text or not raw:
                return text


def read_source(path: Path) -> tuple[str, str]:
    """(name to report, text) of the topology file; ``-`` is standard input, read once."""
    return _source(path), read_text(path)


def read_topology(path: Path) -> Topology:
    """Read, parse and validate the topology file: a file is streamed through the parser (a
    YAML one is never held whole as text); standard input is read whole (once)."""
    from peerwall.model import load_topology
    from peerwall.model.load import load_topology_stream

    if str(path) == "-" or not _regular(path):
        # Standard input, a pipe or a device: read whole (once), then parsed; the text is not
        # kept here: load_topology lets go of it once parsed.
        return load_topology(read_text(path), _source(path), max_bytes=max_input_bytes())
    try:
        f = path.open("rb")
        too_large = os.fstat(f.fileno()).st_size > max_input_bytes()
    except OSError:
        read_text(path)  # says why in one line (it cannot read it either)
        raise
    with f:
        if too_large:
            read_text(path)  # refused by its size, before reading
        return load_topology_stream(
            _CappedText(f, str(path), max_input_bytes()), str(path), lambda: read_text(path)
        )


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def cluster_refs(kubeconfigs: list[Path], contexts: list[str] | None) -> list[ClusterRef]:
    """One reference per cluster from ``--kubeconfig`` and ``--context``."""
    from peerwall.agent.kube.snapshot import ClusterRef

    contexts = contexts or []
    if len(kubeconfigs) == 1 and contexts:
        return [ClusterRef(kubeconfigs[0], c) for c in contexts]
    if contexts and len(contexts) != len(kubeconfigs):
        raise typer.BadParameter(
            f"--context given {len(contexts)} times for {len(kubeconfigs)} --kubeconfig: give "
            "one context per kubeconfig, or several contexts of one kubeconfig"
        )
    return [ClusterRef(k, contexts[i] if contexts else None) for i, k in enumerate(kubeconfigs)]


def read_input(
    file: Path | None, kubeconfigs: list[Path] | None, contexts: list[str] | None
) -> tuple[str, Topology]:
    """(what was read, the topology): ``-f FILE``, or the live clusters of ``--kubeconfig``."""
    if file is not None and kubeconfigs:
        raise typer.BadParameter("give either -f FILE or --kubeconfig, not both")
    if file is not None:
        return str(file), read_topology(file)
    if not kubeconfigs:
        raise typer.BadParameter(
            "missing: give a topology file, or --kubeconfig FILE for live clusters",
            param_hint="'--file' / '-f'",
        )
    from peerwall.agent.kube.snapshot import read_topology_document
    from peerwall.model.load import topology_from_data

    refs = cluster_refs(kubeconfigs, contexts)
    source = "clusters of " + "; ".join(map(str, refs))
    return source, topology_from_data(read_topology_document(refs), source)


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


def resolve_audit(sets: Iterable[str] | None = None, values: Path | None = None) -> bool:
    """The global default of ``networking.securityAudit``: ``--set`` over the values file over
    false."""
    on_command_line = set_values(sets or ())
    in_file = read_values(values) if values is not None else {}
    value = on_command_line.get(AUDIT_KEY, in_file.get(AUDIT_KEY, False))
    return value is True


def _mode(value: object) -> SecurityMode:
    assert isinstance(value, SecurityMode)  # what the registry's parser returns for MODE_KEY
    return value


def load(
    file: Path, sets: Iterable[str] | None = None, values: Path | None = None
) -> tuple[Topology, ModeChoice]:
    """What most commands start with. Options are checked before the topology is read."""
    choice = resolve_mode(sets, values)
    return read_topology(file), choice


def load_input(
    file: Path | None,
    kubeconfigs: list[Path] | None,
    contexts: list[str] | None,
    sets: Iterable[str] | None = None,
    values: Path | None = None,
) -> tuple[Topology, ModeChoice]:
    """``load`` for the views that also read live clusters (``--kubeconfig``)."""
    choice = resolve_mode(sets, values)
    return read_input(file, kubeconfigs, contexts)[1], choice
