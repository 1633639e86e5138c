"""Truth-table cells -> real connection probes in a lab -> the observed truth table.

Each cell becomes one probe, or one per backend for a service: the lab's service DNAT picks the
backend by the low bits of the client port, so the prober aims at every backend and reports
PARTIAL when only some answer. A probe counts as reaching its destination only when the listener
that answers names the expected pod, Internet or API server; reaching someone else (an overlapping
address with no remapping, for instance) is not reaching the destination.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from peerwall.errors import LabError
from peerwall.lab.kube import spread
from peerwall.lab.plan import LabPlan
from peerwall.model.topology import Pod
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict
from peerwall.probe.netns_prober import (
    Listener,
    ListenerSet,
    Outcome,
    Probe,
    ProbeResult,
    run_probes,
)
from peerwall.settings import LabSettings, ProbeSettings


@dataclass(frozen=True)
class CellProbe:
    source: str
    destination: str
    probes: tuple[Probe, ...]
    expected: tuple[str | None, ...]
    """Identity each probe must reach (None: a service without backends, nothing should answer)."""


@dataclass(frozen=True)
class CellResult:
    cell: CellProbe
    verdict: Verdict
    results: tuple[ProbeResult, ...]

    def detail(self) -> str:
        return "; ".join(
            f"{r.probe.address}:{r.probe.port}"
            + (f" from port {r.probe.source_port}" if r.probe.source_port else "")
            + f" -> {r.outcome.value}"
            + (f" ({r.identity})" if r.identity else f" ({r.detail})" if r.detail else "")
            for r in self.results
        )

    def reproducers(self, timeout: float) -> list[str]:
        return [p.reproducer(timeout) for p in self.cell.probes]


@dataclass(frozen=True)
class Observed:
    table: TruthTable
    cells: dict[tuple[str, str], CellResult]
    seconds: float
    probes: int


def listeners(plan: LabPlan, settings: LabSettings) -> list[Listener]:
    t = plan.topology
    port = settings.pod_port
    out = [Listener(plan.pod_ns(p.name), port, p.name) for p in t.pods]
    out += [Listener(plan.internet_ns(c.name), port, c.internet) for c in t.clusters]
    out += [Listener(plan.api_ns(c.name), port, c.api_server) for c in t.clusters if c.api_server]
    return out


def _targets(
    plan: LabPlan, src: Pod, lab: LabSettings
) -> Iterator[tuple[str, tuple[str | None, ...], IPv4Address, int]]:
    """(destination, identities to reach, address, port) for every destination of ``src``."""
    t = plan.topology
    addr = plan.addresses
    a = src.physical
    for d in t.pods:
        # Not peered: dial the raw address anyway; it leads nowhere, or to someone else.
        yield d.name, (d.name,), addr.pod_seen_from(d, a) or d.ip, lab.pod_port
    for s in t.services:
        # Absent here: dial the home ClusterIP, as a pod that knows it would.
        ip = addr.service_ips[(s.name, a if a in s.present_in else s.home)]
        yield s.name, s.backends or (None,), ip, lab.service_port
    for c in t.clusters:
        yield c.internet, (c.internet,), plan.internet_ip(c.name), lab.pod_port
    for c in t.clusters:
        if c.api_server:
            api = addr.api_ip(c.name)
            yield c.api_server, (c.api_server,), addr.seen_from(api, c.name, a) or api, lab.pod_port


def plan_cells(plan: LabPlan, lab: LabSettings, probe: ProbeSettings) -> list[CellProbe]:
    """One probe per cell, one per backend for services, each from a source port of its own."""
    t = plan.topology
    k = spread(max((len(s.backends) for s in t.services), default=1))
    if probe.source_port_base + len(t.destinations) * k > 65536:
        raise LabError("too many destinations to give each probe its own source port")
    cells = []
    for src in t.pods:
        ns = plan.pod_ns(src.name)
        for column, (dst, expected, ip, port) in enumerate(_targets(plan, src, lab)):
            if dst == src.name:
                continue
            sport = probe.source_port_base + column * k
            probes = tuple(Probe(ns, str(ip), port, sport + i) for i in range(len(expected)))
            cells.append(CellProbe(src.name, dst, probes, expected))
    return cells


def verdict_of(cell: CellProbe, results: list[ProbeResult]) -> Verdict:
    if any(r.outcome in (Outcome.REFUSED, Outcome.ERROR) for r in results):
        return Verdict.ERROR
    if cell.expected == (None,):
        return Verdict.YES if results[0].outcome is Outcome.CONNECTED else Verdict.NO
    reached = sum(
        r.outcome is Outcome.CONNECTED and r.identity == want
        for r, want in zip(results, cell.expected, strict=True)
    )
    if reached == len(results):
        return Verdict.YES
    return Verdict.PARTIAL if reached else Verdict.NO


FD_MARGIN = 64
"""File descriptors kept free for everything that is not a probe socket."""


def fd_budget(listeners: int, wanted: int) -> int:
    """Concurrency the open-file limit allows, after raising the soft limit as far as allowed.

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


async def observe_async(
    plan: LabPlan,
    mode: str,
    lab: LabSettings = LabSettings(),
    probe: ProbeSettings = ProbeSettings(),
    progress: Callable[[int, int], None] | None = None,
) -> Observed:
    loop = asyncio.get_running_loop()
    started = loop.time()
    cells = plan_cells(plan, lab, probe)
    flat = [p for c in cells for p in c.probes]
    hosts = listeners(plan, lab)
    concurrency = fd_budget(len(hosts), probe.concurrency)
    async with ListenerSet(hosts):
        results = await run_probes(
            flat, timeout=probe.timeout, concurrency=concurrency, progress=progress
        )
    out: dict[tuple[str, str], CellResult] = {}
    i = 0
    for c in cells:
        chunk = results[i : i + len(c.probes)]
        i += len(c.probes)
        out[(c.source, c.destination)] = CellResult(c, verdict_of(c, chunk), tuple(chunk))
    t = plan.topology
    table = TruthTable.from_cells(
        mode, t.sources, t.destinations, {k: v.verdict for k, v in out.items()}
    )
    return Observed(table, out, loop.time() - started, len(flat))


def observe(
    plan: LabPlan,
    mode: str,
    lab: LabSettings = LabSettings(),
    probe: ProbeSettings = ProbeSettings(),
    progress: Callable[[int, int], None] | None = None,
) -> Observed:
    return asyncio.run(observe_async(plan, mode, lab, probe, progress))
