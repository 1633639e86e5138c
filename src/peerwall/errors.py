"""Errors raised by peerwall.

Our exception hierarchy::

    PeerwallError
    ├── TopologyInvalid      the topology file (or its values) cannot be used; lists every problem
    ├── ModeInvalid          an unknown security mode or a malformed --set
    ├── UnknownName          a pod, service or destination named on the command line does not exist
    ├── NftError             libnftables refused a transaction (nothing was applied)
    ├── LabError             the emulated virtual cluster could not be built, changed or removed
    ├── ClustersUnreadable   live clusters (``--kubeconfig``) do not give one topology
    │   └── PictureError     their objects do not make one topology (a peer not read, no Liqo)
    ├── TemplateError        a Liqo gateway template ``peerwall liqo templates`` cannot extend
    ├── RemapExhausted       no free CIDR is left to remap a peer's overlapping pod CIDR
    └── TableIncomplete      an observed truth table lacks cells

The CLI prints any of them as one line per problem on stderr and exits with status 2 (but
``peerwall liqo templates``, which prints its ``TemplateError`` itself and exits with 1). The agent
never dies of a refused transaction: it replaces the whole table instead (``agent.enforcer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PeerwallError(Exception):
    """Base of every error peerwall raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a dotted field path) and what."""

    path: str
    message: str

    def render(self, source: str) -> str:
        where = f"{source}: {self.path}" if self.path else source
        return f"{where}: {self.message}"


class TopologyInvalid(PeerwallError):
    """A topology that cannot be used. ``problems`` holds every problem found, not only the first."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


class ModeInvalid(PeerwallError):
    """An unknown security mode or a malformed ``--set`` value."""


class UnknownName(PeerwallError):
    """A name given by the user that the topology does not define."""


class NftError(PeerwallError):
    """libnftables rejected a command buffer; the kernel ruleset is unchanged."""


class FlaggedTable(NftError):
    """A JSON listing not asked of libnftables: it would print a table with flags, and
    libnftables 1.0.6 frees a table's flags while printing them as JSON (nftables' "json: fix use
    after free in table_flags_json()", November 2023), which corrupts the memory of the process
    that asked. ``tables``: (family, name) -> flags, of every flagged table the listing shows."""

    def __init__(self, tables: dict[tuple[str, str], tuple[str, ...]]) -> None:
        self.tables = tables
        said = "; ".join(f"table {f} {n} has flags {','.join(v)}" for (f, n), v in tables.items())
        super().__init__(
            f"{said}: not listed as JSON (libnftables 1.0.6 corrupts its memory printing table "
            "flags as JSON)"
        )


class LabError(PeerwallError):
    """The emulated virtual cluster could not be built, probed or removed."""


class ClustersUnreadable(PeerwallError):
    """Live clusters could not be read, or their Liqo objects do not make one topology."""


class PictureError(ClustersUnreadable):
    """The clusters' objects do not make one topology (a peer not read, a cluster without Liqo)."""


class TemplateError(PeerwallError, ValueError):
    """A template that is not shaped as a Liqo gateway template. (Still a ``ValueError`` too, as
    it was before it joined this tree.)"""


class RemapExhausted(PeerwallError, ValueError):
    """No free CIDR is left to remap a peer's overlapping pod CIDR. ``path`` is the pod CIDR's
    field in the topology file; loading turns this into a ``TopologyInvalid`` naming it. (Still a
    ``ValueError`` too, as it was before it joined this tree, for callers that catch bad values.)"""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class TableIncomplete(PeerwallError):
    """Cells of an observed table that were never observed."""

    def __init__(self, missing: Sequence[tuple[str, str]]) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(f"{s} -> {d}" for s, d in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(f"incomplete table: no verdict for {shown}{more}")
