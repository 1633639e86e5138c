"""Names are table labels: unique across the file, whatever kind of thing they name; cluster
names are also unique by their short hash (``model.hashes``)."""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter

from peerwall.errors import Problem
from peerwall.model.hashes import hash8
from peerwall.model.spec import TopologySpec


def _named(spec: TopologySpec) -> Iterator[tuple[str, str]]:
    """(name, field) of everything that appears in tables, in the order claims are made."""
    for i, c in enumerate(spec.clusters):
        yield c.name, f"clusters[{i}].name"
    for i, c in enumerate(spec.clusters):
        yield c.internet or f"internet@{c.name}", f"clusters[{i}].internet"
        if c.api_server:
            yield c.api_server, f"clusters[{i}].apiServer"
    for i, p in enumerate(spec.pods):
        yield p.name, f"pods[{i}].name"
    for i, s in enumerate(spec.services):
        yield s.name, f"services[{i}].name"


def _names(spec: TopologySpec) -> list[str]:
    """The names ``_named`` yields, without their fields."""
    name = attrgetter("name")
    return [
        *map(name, spec.clusters),
        *(c.internet or f"internet@{c.name}" for c in spec.clusters),
        *(c.api_server for c in spec.clusters if c.api_server),
        *map(name, spec.pods),
        *map(name, spec.services),
    ]


def check(spec: TopologySpec) -> list[Problem]:
    problems: list[Problem] = []
    # Naming each field costs more than the whole check (1,000,000 pods: 1.5 s of text): it is
    # done only when a name is repeated.
    names = _names(spec)
    unique = len(set(names)) == len(names)
    del names
    first: dict[str, str] = {}
    for name, path in () if unique else _named(spec):
        if name in first:
            problems.append(
                Problem(path, f"duplicate name {name!r} (already used by {first[name]})")
            )
        else:
            first[name] = path
    hashed: dict[str, tuple[str, str]] = {}
    for i, c in enumerate(spec.clusters):
        h = hash8(c.name)
        other = hashed.setdefault(h, (c.name, f"clusters[{i}].name"))
        if other[0] != c.name:
            problems.append(
                Problem(
                    f"clusters[{i}].name",
                    f"{c.name!r} and {other[0]!r} ({other[1]}) have the same 8-hex hash {h}, "
                    "which names each peer's nftables sets and the lab's tunnel to it: rename one",
                )
            )
    return problems
