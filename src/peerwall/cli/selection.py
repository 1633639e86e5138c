"""``--from``, ``--to``, ``--cluster`` and ``--namespace``: which cells of a table a command shows.

One meaning for every command that prints cells (``matrix``, ``diff``, ``lab probe``):

- ``--from SRC`` keeps the sources (pods) whose name matches SRC, ``--to DST`` the destinations;
  each is a shell-style pattern (``web*``) and repeatable (any pattern may match).
- ``--cluster C`` keeps, on both sides, the pods whose home or physical cluster is C, the
  services of C, and C's Internet and API server; ``--namespace NS`` keeps the pods and services
  of namespace NS (Internets and API servers are in no namespace). Both are repeatable.

Filters of different kinds all apply; a filter that names nothing in the topology is an error
that says so (a typo must not look like an empty answer).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from peerwall.cli import complete
from peerwall.cli.suggest import unknown
from peerwall.errors import UnknownName

if TYPE_CHECKING:
    from peerwall.model import Topology
    from peerwall.policy import TruthTable

FromFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--from",
        autocompletion=complete.sources,
        metavar="SRC",
        help="Only sources matching SRC, a name or a pattern like 'web*' (repeatable).",
        show_default=False,
    ),
]
ToFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--to",
        autocompletion=complete.destinations,
        metavar="DST",
        help="Only destinations matching DST, a name or a pattern (repeatable).",
        show_default=False,
    ),
]
ClusterFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--cluster",
        autocompletion=complete.clusters,
        metavar="CLUSTER",
        help="Only pods (home or running there), services, Internet and API server of CLUSTER (repeatable).",
        show_default=False,
    ),
]
NamespaceFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--namespace",
        autocompletion=complete.namespaces,
        metavar="NS",
        help="Only pods and services of namespace NS (repeatable).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Selection:
    """The filters a command was given; empty ones select everything."""

    sources: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        sources: Sequence[str] | None = None,
        destinations: Sequence[str] | None = None,
        clusters: Sequence[str] | None = None,
        namespaces: Sequence[str] | None = None,
    ) -> Selection:
        return cls(
            tuple(sources or ()),
            tuple(destinations or ()),
            tuple(clusters or ()),
            tuple(namespaces or ()),
        )

    def __bool__(self) -> bool:
        return bool(self.sources or self.destinations or self.clusters or self.namespaces)

    def describe(self) -> str:
        """``from web*, cluster C1``: the filters as a caption says them."""
        parts = [
            f"{word} {', '.join(values)}"
            for word, values in (
                ("from", self.sources),
                ("to", self.destinations),
                ("cluster", self.clusters),
                ("namespace", self.namespaces),
            )
            if values
        ]
        return "; ".join(parts)

    def names(self, topology: Topology) -> tuple[list[str], list[str]]:
        """The sources and destinations kept, in table order; an error if a filter names
        nothing, or if together they leave no cell."""
        self._check(topology)
        member = _membership(topology)
        sources = [
            s for s in topology.sources if self._in_scope(member[s]) and _matches(s, self.sources)
        ]
        destinations = [
            d
            for d in topology.destinations
            if self._in_scope(member[d]) and _matches(d, self.destinations)
        ]
        if not sources or not destinations or (sources == destinations and len(sources) == 1):
            raise UnknownName(f"no cell is left by the filters ({self.describe()})")
        return sources, destinations

    def apply(self, topology: Topology, table: TruthTable) -> TruthTable:
        """``table`` restricted to the selected cells (itself without filters)."""
        if not self:
            return table
        return table.restrict(*self.names(topology))

    def _in_scope(self, where: tuple[frozenset[str], str | None]) -> bool:
        clusters, namespace = where
        if self.clusters and not clusters.intersection(self.clusters):
            return False
        return not self.namespaces or namespace in self.namespaces

    def _check(self, topology: Topology) -> None:
        known_clusters = [c.name for c in topology.clusters]
        for c in self.clusters:
            if c not in topology.cluster_by_name:
                raise unknown("cluster (--cluster)", c, known_clusters)
        known_namespaces = sorted({n.name for n in topology.namespaces} | {"default"})
        for n in self.namespaces:
            if n not in known_namespaces:
                raise unknown("namespace (--namespace)", n, known_namespaces)
        for option, patterns, names in (
            ("--from", self.sources, topology.sources),
            ("--to", self.destinations, topology.destinations),
        ):
            for p in patterns:
                if not any(fnmatch.fnmatchcase(n, p) for n in names):
                    kind = "source pod" if option == "--from" else "destination"
                    raise unknown(f"{kind} ({option})", p, names)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _membership(topology: Topology) -> dict[str, tuple[frozenset[str], str | None]]:
    """Each name of the table: the clusters it belongs to, and its namespace."""
    out: dict[str, tuple[frozenset[str], str | None]] = {}
    for p in topology.pods:
        out[p.name] = (frozenset({p.home, p.physical}), p.namespace)
    for v in topology.services:
        out[v.name] = (frozenset({v.home}), v.namespace)
    for c in topology.clusters:
        out[c.internet] = (frozenset({c.name}), None)
        if c.api_server:
            out[c.api_server] = (frozenset({c.name}), None)
    return out


def event_filter(topology: Topology, selection: Selection) -> Callable[[Mapping[str, Any]], bool]:
    """Which explained drops (``lab drops``) the filters keep. An event's ends may be what no
    table has (a gateway, a spoofed address), so ``--from``/``--to`` match an end's name or its
    address; ``--cluster C`` keeps what C's gateway saw or what has an end in C; ``--namespace NS``
    what has an end in NS."""
    if not selection:
        return lambda event: True
    member = _membership(topology)

    def end_matches(end: Mapping[str, Any], patterns: tuple[str, ...]) -> bool:
        names = [x for x in (end.get("name"), end.get("address")) if x]
        return not patterns or any(fnmatch.fnmatchcase(x, p) for p in patterns for x in names)

    def where(end: Mapping[str, Any]) -> tuple[frozenset[str], str | None]:
        return member.get(end.get("name") or "", (frozenset(), None))

    def keep(event: Mapping[str, Any]) -> bool:
        src, dst = event["src"], event["dst"]
        if not (end_matches(src, selection.sources) and end_matches(dst, selection.destinations)):
            return False
        ends = (where(src), where(dst))
        if selection.clusters:
            seen_by = {event.get("cluster")} if event.get("cluster") else set()
            if not set(selection.clusters) & (seen_by | {c for cs, _ in ends for c in cs}):
                return False
        return not selection.namespaces or any(ns in selection.namespaces for _, ns in ends)

    return keep
