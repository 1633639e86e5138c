"""The real-packet ``Runner``: every target of every cell becomes a TCP connection in a lab.

The prober knows nothing of how the lab is built: a ``Site`` tells it where each pod's sockets
live, what listens where, how services are addressed and which source port makes the service's
DNAT pick a given backend. A probe counts as reaching its target only when the listener that
answers names that target; someone else answering is MISDIRECTED (the cell is then ERROR, never
YES), and a service without backends must not be answered at all.

Source ports: every probe of one source has a port of its own (probes of one pod aimed at
different services could otherwise collide after DNAT), a service's probes are aligned to the
power of two its DNAT selects backends by, and each run starts where the last one ended
(``Site.port_window``), so no 5-tuple of a recent run is reused against stale conntrack state.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol, overload

from peerwall import nsenter
from peerwall.errors import LabError
from peerwall.probe.netns_prober import (
    Listener,
    ListenerSet,
    Outcome,
    Probe,
    ProbeResult,
    run_probes,
)
from peerwall.settings import ProbeSettings
from peerwall.verify.cells import CellSpec, Target
from peerwall.verify.observe import CellObservation, Reach, TargetResult

PORT_LOW, PORT_HIGH = 10000, 61000
"""Client ports the prober uses (below Linux's default ephemeral range, 32768-60999, would be
nicer, but a big lab needs room: the window rotates through all of it)."""


class Site(Protocol):
    """What the prober needs from the place it probes."""

    def netns(self, pod: str) -> str:
        """The network namespace of ``pod``'s sockets."""
        ...

    def listeners(self) -> list[Listener]:
        """Every endpoint that must answer, with its identity."""
        ...

    def service_address(self, service: str, cluster: str) -> tuple[IPv4Address, int]:
        """The ClusterIP and port of ``service`` in ``cluster``."""
        ...

    def internet_address(self, cluster: str) -> IPv4Address | None: ...

    def backend_span(self, backends: int) -> int:
        """How many consecutive source ports select each of ``backends`` backends in turn."""
        ...

    def port_window(self, size: int) -> int:
        """A first source port for a run needing ``size`` ports per source, moving on each run."""
        ...


@dataclass(frozen=True)
class _Dial:
    cell: int
    target: Target | None
    probe: Probe


def _layout(cells: Sequence[CellSpec], site: Site) -> dict[int, tuple[int, int]]:
    """Per cell index: (offset, span) of its source ports, relative to a run's base port.
    Spans are powers of two laid out largest first, so every offset is aligned to its span."""
    spans = {}
    for i, c in enumerate(cells):
        n = len(c.targets) or (1 if c.silent_service else 0)
        if n:
            spans[i] = site.backend_span(n) if c.targets and c.targets[0].service else n
    by_source: dict[str, list[int]] = {}
    for i in spans:
        by_source.setdefault(cells[i].source, []).append(i)
    out: dict[int, tuple[int, int]] = {}
    for indexes in by_source.values():
        offset = 0
        for i in sorted(indexes, key=lambda i: -spans[i]):
            out[i] = (offset, spans[i])
            offset += spans[i]
    return out


def dials_for(
    cells: Sequence[CellSpec], site: Site, source_clusters: dict[str, str]
) -> list[_Dial]:
    """One connection per target (one silent dial per service without backends)."""
    layout = _layout(cells, site)
    need: dict[str, int] = {}
    for i, (offset, span) in layout.items():
        need[cells[i].source] = max(need.get(cells[i].source, 0), offset + span)
    size = max(need.values(), default=0)
    if size > PORT_HIGH - PORT_LOW:
        raise LabError(
            f"one source needs {size} client ports for a run, more than the {PORT_HIGH - PORT_LOW} "
            "the prober has: probe fewer destinations or smaller services at a time"
        )
    largest = max((span for _, span in layout.values()), default=1)
    base = site.port_window(size + largest)
    base += -base % largest  # aligned, so every service's ports start on its span
    if base + size > PORT_HIGH:
        base = PORT_LOW + (-PORT_LOW % largest)
    dials = []
    for i, c in enumerate(cells):
        if i not in layout:
            continue
        offset, _ = layout[i]
        ns = site.netns(c.source)
        here = source_clusters[c.source]
        if c.silent_service:
            ip, port = site.service_address(c.silent_service, here)
            dials.append(_Dial(i, None, Probe(ns, str(ip), port, base + offset)))
            continue
        for t in c.targets:
            sport = base + offset + (t.index if t.service else 0)
            if t.service:
                ip, port = site.service_address(t.service, here)
                dials.append(_Dial(i, t, Probe(ns, str(ip), port, sport)))
            elif t.kind == "internet":
                addr = site.internet_address(t.cluster)
                if addr is None:
                    raise LabError(f"no Internet host for {t.cluster}")
                dials.append(_Dial(i, t, Probe(ns, str(addr), t.port, sport)))
            elif t.address is not None:
                dials.append(_Dial(i, t, Probe(ns, str(t.address), t.port, sport)))
    return dials


def _reach(target: Target | None, r: ProbeResult) -> TargetResult:
    o = r.outcome
    if o in (Outcome.BLOCKED, Outcome.UNREACHABLE):
        return TargetResult(target, Reach.BLOCKED, r.detail)
    if o is Outcome.CONNECTED:
        if target is not None and r.identity == target.identity:
            return TargetResult(target, Reach.REACHED, "")
        who = f"answered by {r.identity}" if r.identity else f"connected, but {r.detail}"
        if target is None:
            return TargetResult(
                target, Reach.MISDIRECTED, f"{who}, though the service has no backends"
            )
        return TargetResult(target, Reach.MISDIRECTED, f"{who}, not {target.identity}")
    if o is Outcome.REFUSED:
        return TargetResult(
            target, Reach.ERROR, f"refused ({r.detail}): a host without a listener answered"
        )
    return TargetResult(target, Reach.ERROR, r.detail)


class Reproducers(Sequence[str]):
    """A cell's commands that repeat its probes by hand, each written when it is read: a run of a
    hundred thousand probes shows the few of its wrong cells, and writing every one was a tenth
    of the run's own CPU. Equal to any sequence of the same commands."""

    __slots__ = ("_probes", "_timeout")

    def __init__(self, probes: tuple[Probe, ...], timeout: float) -> None:
        self._probes = probes
        self._timeout = timeout

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        if isinstance(i, slice):
            return tuple(p.reproducer(self._timeout) for p in self._probes[i])
        return self._probes[i].reproducer(self._timeout)

    def __len__(self) -> int:
        return len(self._probes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


FD_MARGIN = 64
"""File descriptors kept free for everything that is not a probe socket."""

CONFIRM_CONCURRENCY = 16384
"""Retries in flight at once (as the open-file limit allows): nearly all of them meet silence
again and hold nothing but a socket, so one round of the retry's timeout is enough for a big lab."""


def fd_budget(listeners: int, wanted: int) -> int:
    """Concurrency the open-file limit allows, after raising the soft limit as far as allowed;
    ``listeners``: the descriptors the run holds besides its probes' sockets.

    Each probe in flight holds a socket; with the common default of 1,024 open files, 2,000
    concurrent probes would fail with EMFILE and show up as errors instead of verdicts.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + listeners + FD_MARGIN
    if soft < need:
        raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    return max(1, min(wanted, soft - listeners - FD_MARGIN))


class NetnsRunner:
    """A ``Runner`` with real TCP connections inside a ``Site``'s network namespaces."""

    def __init__(
        self,
        site: Site,
        source_clusters: dict[str, str],
        settings: ProbeSettings = ProbeSettings(),
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.site = site
        self.source_clusters = source_clusters
        self.settings = settings
        self.progress = progress
        self.seconds = 0.0
        self.attempts = 0

    def run(self, cells: Sequence[CellSpec]) -> list[CellObservation]:
        with nsenter.kept_open():
            return asyncio.run(self.run_async(cells))

    async def run_async(self, cells: Sequence[CellSpec]) -> list[CellObservation]:
        started = time.perf_counter()
        dials = dials_for(cells, self.site, self.source_clusters)
        hosts = self.site.listeners()
        # Besides the probes' sockets, the run holds the listeners and, for as long as it lasts,
        # one file per namespace it enters (nsenter.kept_open): near the limit, leaving them out
        # of the budget would make accept() or a new probe socket fail with EMFILE.
        held = len(hosts) + len({d.probe.netns for d in dials} | {h.netns for h in hosts})
        concurrency = fd_budget(held, self.settings.concurrency)
        async with ListenerSet(hosts) as listening:
            results = await run_probes(
                [d.probe for d in dials],
                timeout=self.settings.timeout,
                concurrency=concurrency,
                progress=self.progress,
                confirm=self.settings.confirm_timeout,
                confirm_concurrency=fd_budget(held, max(concurrency, CONFIRM_CONCURRENCY)),
                serve=listening.serve_pending,
            )
        per_cell: dict[int, list[tuple[_Dial, ProbeResult]]] = {}
        for d, r in zip(dials, results, strict=True):
            per_cell.setdefault(d.cell, []).append((d, r))
        out = []
        for i, c in enumerate(cells):
            pairs = per_cell.get(i, [])
            observed = tuple(_reach(d.target, r) for d, r in pairs)
            # Targets with no address in the source's cluster were not dialled: no route.
            dialled = {id(d.target) for d, _ in pairs}
            missing = tuple(
                TargetResult(t, Reach.BLOCKED, "no address in the source's cluster")
                for t in c.targets
                if id(t) not in dialled
            )
            reproducers = Reproducers(tuple(d.probe for d, _ in pairs), self.settings.timeout)
            out.append(CellObservation(c, missing + observed, reproducers))
        self.seconds = time.perf_counter() - started
        self.attempts = len(dials)
        return out
