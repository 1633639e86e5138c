"""Shell completion of names: labs (``--name``), and the pods, destinations, clusters and
namespaces of the topology given with ``-f`` (read when the shell asks, never an error: a file
that does not load completes nothing)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peerwall.model import Topology


def lab_names(incomplete: str) -> list[str]:
    """Labs with a state in this state folder, and labs of any state folder on the machine."""
    from peerwall.lab.state import OWNERS
    from peerwall.settings import LabSettings

    names: set[str] = set()
    for folder in (LabSettings().state_dir, OWNERS):
        with contextlib.suppress(OSError):
            names.update(e for e in os.listdir(folder) if "." not in e)
    return sorted(n for n in names if n.startswith(incomplete))


def _topology(ctx: Any) -> Topology | None:
    file = ctx.params.get("file")
    if not isinstance(file, Path) or str(file) == "-":
        return None
    from peerwall.cli.options import read_topology

    try:
        return read_topology(file)
    except Exception:  # completion must never fail: no names is the answer
        return None


def _names(of: Callable[[Topology], list[str]] | Callable[[Topology], tuple[str, ...]]) -> Any:
    def complete(ctx: Any, incomplete: str) -> list[str]:
        topology = _topology(ctx)
        if topology is None:
            return []
        return [n for n in of(topology) if n.startswith(incomplete)]

    return complete


sources = _names(lambda t: t.sources)
destinations = _names(lambda t: t.destinations)
clusters = _names(lambda t: [c.name for c in t.clusters])
namespaces = _names(lambda t: sorted({n.name for n in t.namespaces} | {"default"}))
