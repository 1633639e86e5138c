"""peerwall's side of the agent benchmarks: a gateway's desired state filled the way a source
fills it (one contribution per pod or EndpointSlice key), and the real agent loop
(``peerwall.agent.run.Agent``) driven by hand instead of by a file or the Kubernetes API, with
what ``peerwall agent`` gives it besides: the subscription to nftables' notifications in its
namespace (``TableEvents``: the kernel then notifies every element a step changes, and the loop
reads them), and the conntrack table (``Conntrack``: each step that narrows clears the flows it
forbids).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from peerwall.agent.desired import DesiredState
from peerwall.agent.run import Agent, AgentSettings
from peerwall.compile import names
from peerwall.compile.state import ApiServer, PeerState
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.nftevents import TableEvents
from peerwall.model.spec import SecurityMode

SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
LOCAL_CIDR = IPv4Network("10.64.0.0/10")
"""This gateway's pod CIDR: room for 4 million pods."""
API = IPv4Address("10.64.0.1")
FIRST_POD = int(LOCAL_CIDR.network_address) + 16


def address(i: int) -> IPv4Address:
    """The ``i``-th local pod address."""
    return IPv4Address(FIRST_POD + i)


def peer_state(name: str, index: int) -> PeerState:
    return PeerState(
        name=name,
        tunnel=names.tunnel_ifname(name),
        mode=SEG,
        sources=(IPv4Network(f"10.{200 + index}.0.0/16"),),
        full_access=(LOCAL_CIDR,),
        api=ApiServer(API),
    )


def new_desired(peers: list[str]) -> DesiredState:
    d = DesiredState("here", names.LAB_TUNNEL_PATTERN, 12345)
    for i, p in enumerate(peers):
        d.upsert_peer(peer_state(p, i))
    return d


def pod_key(i: int) -> str:
    return f"pod/offloaded/p{i}"


def slice_key(i: int) -> str:
    return f"endpointslice/default/svc{i}"


class HandSource:
    """A source with nothing behind it: listed at once; events are applied by the caller."""

    loaded_digest: str | None = None  # no file behind it (``agent.run.Source``)

    def __init__(self) -> None:
        self.listed = asyncio.Event()
        self.changed = asyncio.Event()

    async def run(self) -> None:
        self.listed.set()
        self.changed.set()
        await asyncio.Event().wait()


class Recorder:
    """Stands in for the agent's event-latency histogram: keeps every observation."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


@dataclass
class LoopHarness:
    """The agent, running in this event loop, with its commits and event latencies recorded."""

    agent: Agent
    source: HandSource
    latencies: Recorder
    commits: list[tuple[str, float]] = field(default_factory=list)
    commit_seconds: float = 0.0
    """Time inside the committed transactions (encoding, the kernel, its answer), added up."""
    committed: asyncio.Event = field(default_factory=asyncio.Event)

    def event(self) -> None:
        """Tell the loop that the desired state changed (what a source does after an event)."""
        self.source.changed.set()

    async def settled(self, timeout: float = 60.0) -> None:
        """Wait until every change made so far is in the kernel: none pending, none waiting for
        a step, and the step in progress (its commit may run in a worker thread) over."""
        async with asyncio.timeout(timeout):
            while True:
                if self.agent.desired.pending_since is None and not self.source.changed.is_set():
                    await self.agent.idle()
                    if self.agent.desired.pending_since is None:
                        return
                    continue
                self.committed.clear()
                # A burst that nets to nothing commits nothing: poll as well.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.committed.wait(), 0.005)


@contextlib.asynccontextmanager
async def running_agent(
    desired: DesiredState,
    nft: Nft,
    coalesce: float = AgentSettings.coalesce,
    metrics_address: str | None = None,
    element_writer: bool = True,
) -> Any:
    """Start ``Agent.run`` (fail-closed, then a whole-table write of ``desired``) and yield a
    ``LoopHarness`` once the first table is in; stop the agent on exit. ``metrics_address``:
    where its HTTP endpoint listens (none by default). On a real table (``LibNft``), the agent
    listens to nftables' notifications in its namespace and clears flows there, as ``peerwall
    agent`` does."""
    source = HandSource()
    settings = AgentSettings(
        resync_interval=3600.0,
        coalesce=coalesce,
        metrics_address=metrics_address,
        element_writer=element_writer,
    )
    real = isinstance(nft, LibNft)
    events = TableEvents(names.FAMILY, names.TABLE, nft.netns) if real else None
    flows = Conntrack(nft.netns) if real else None
    agent = Agent(source, desired, nft, flows, settings, events)
    rec = Recorder()
    agent.metrics.event_latency = rec  # type: ignore[assignment]
    harness = LoopHarness(agent, source, rec)
    inner = agent.enforcer.table.on_commit
    loop = asyncio.get_running_loop()

    def on_commit(kind: str, seconds: float) -> None:
        # Called in the worker thread of a big step: the event is the loop's to set.
        harness.commits.append((kind, time.perf_counter()))
        harness.commit_seconds += seconds
        loop.call_soon_threadsafe(harness.committed.set)
        if inner is not None:
            inner(kind, seconds)

    agent.enforcer.table.on_commit = on_commit
    task = asyncio.create_task(agent.run())
    try:
        async with asyncio.timeout(120):
            while not agent.ready:
                await asyncio.sleep(0.01)
                if task.done():
                    task.result()
        rec.values.clear()
        harness.commits.clear()
        harness.commit_seconds = 0.0
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if events is not None:
            events.close()
        if flows is not None:
            flows.close()
