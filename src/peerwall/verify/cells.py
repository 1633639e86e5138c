"""What verifying one cell means: whom a source must reach, at which address, for each cell.

Both ways of observing a table — the packet tracer over compiled rulesets and the prober over a
real data plane — verify the same ``CellSpec``s, so they cannot disagree about what a cell asks.
A destination is addressed as a pod would address it: a peer's pod through the peer's remapped
CIDR in this cluster (its own pod CIDR when nothing clashes), a service by its name, which resolves only where the service exists
(at home, or reflected), the API server through the remapped cluster address. When a pod has no
address for the destination at all (a service absent from its cluster, a cluster it is not
peered with), the cell is NO with that reason and nothing is dialled: dialling someone else's
address instead would observe someone else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from peerwall.compile.state import API_PORT
from peerwall.model.topology import Pod, Topology

__all__ = ["CellSpec", "Endpoints", "Target", "cell_spec", "cell_specs"]

POD_PORT = 8080
"""TCP port every emulated pod, Internet host (and the tracer's packets) use."""


@dataclass(frozen=True)
class Target:
    """One endpoint a probe of the cell must reach, identified by who answers."""

    identity: str
    """The pod, Internet or API server that must answer (a service: one target per backend)."""
    kind: Literal["pod", "internet", "api"]
    cluster: str
    """Where it is."""
    address: IPv4Address | None
    """How the source's cluster addresses it; None: it has no address there (no route)."""
    port: int
    service: str | None = None
    """Dialled through this service (its ClusterIP in the source's cluster)."""
    index: int = 0
    """Position among the service's backends (the lab's DNAT picks it by source port)."""


@dataclass(frozen=True)
class CellSpec:
    source: str
    destination: str
    targets: tuple[Target, ...]
    note: str = ""
    """Why there is nothing to reach, when ``targets`` is empty."""
    cause: str = ""
    """``note`` without the cell's own names: the same for every cell of one source cluster with
    that cause (so that such cells can be reported together)."""
    silent_service: str | None = None
    """A service without backends that exists where the source runs: dialling its ClusterIP
    must get no answer at all (a service with no backends is never YES)."""


@dataclass(frozen=True)
class Endpoints:
    """What the cells need beyond the topology: ports, and the Internet hosts (lab only)."""

    internet_address: Callable[[str], IPv4Address | None] = lambda _cluster: None
    pod_port: int = POD_PORT
    api_port: int = API_PORT


def cell_spec(
    topology: Topology, src: Pod, destination: str, how: Endpoints = Endpoints()
) -> CellSpec:
    """What one cell asks (``destination`` is a pod, service, Internet or API server name)."""
    t = topology
    a = src.physical
    if (d := t.pod_by_name.get(destination)) is not None:
        seen = t.addresses.pod_seen_from(d, a)
        if seen is None:
            cause = f"no route: {a} and {d.physical} are not peered"
            note = f"{cause} ({d.name} has no address in {a})"
            return CellSpec(src.name, d.name, (), note, cause)
        return CellSpec(src.name, d.name, (Target(d.name, "pod", d.physical, seen, how.pod_port),))
    if (s := t.service_by_name.get(destination)) is not None:
        if a not in s.present_in:
            note = f"{s.name} is not present in {a}: its name does not resolve there"
            cause = f"not present in {a}: no such name resolves there"
            return CellSpec(src.name, s.name, (), note, cause)
        if not s.backends:
            return CellSpec(
                src.name, s.name, (), f"{s.name} has no backends", silent_service=s.name
            )
        targets = tuple(
            Target(
                b,
                "pod",
                t.pod_by_name[b].physical,
                t.addresses.pod_seen_from(t.pod_by_name[b], a),
                how.pod_port,
                s.name,
                i,
            )
            for i, b in enumerate(s.backends)
        )
        return CellSpec(src.name, s.name, targets)
    for c in t.clusters:
        if destination == c.internet:
            target = Target(
                c.internet, "internet", c.name, how.internet_address(c.name), how.pod_port
            )
            return CellSpec(src.name, c.internet, (target,))
        if destination == c.api_server:
            seen = t.addresses.seen_from(t.addresses.api_ip(c.name), c.name, a)
            if seen is None:
                cause = f"no route: {a} and {c.name} are not peered"
                return CellSpec(src.name, destination, (), cause, cause)
            return CellSpec(
                src.name, destination, (Target(destination, "api", c.name, seen, how.api_port),)
            )
    raise KeyError(destination)


def cell_specs(topology: Topology, how: Endpoints = Endpoints()) -> list[CellSpec]:
    """Every off-diagonal cell of the table, in table order (rows, then columns)."""
    return [
        cell_spec(topology, src, d, how)
        for src in topology.pods
        for d in topology.destinations
        if d != src.name
    ]
