"""The agent's loop: a source of state in, one coalesced transaction per burst of events out.

1. Start fail-closed (``Enforcer.fail_closed``): until the source has delivered the whole state,
   unknown tunnels are dropped (a table left by a previous run is kept as the last known state).
2. Once synced: one whole-table replace, then one transaction per burst of changes. A lone
   event is applied at once; events that arrive while a transaction is being committed (or
   within ``coalesce`` seconds of the first, if set) share the next one, so a burst costs a few
   transactions and an isolated event no wait.
3. After a step that narrows what a peer may reach, the flows it forbids are cleared, in a
   worker thread so that events keep coming in.
4. Every ``resync_interval`` seconds (and at once on SIGUSR1) the live table is read back and
   any drift repaired.
5. ``/metrics``, ``/healthz``, ``/readyz`` and a status file (for the lab) tell what happened.

If the agent dies, the kernel keeps the last rules: nothing is removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Protocol

from peerwall.agent.desired import DesiredState
from peerwall.agent.enforcer import Enforcer, FlowTable, Step
from peerwall.agent.metrics import (
    CountsCollector,
    LiveCollector,
    Metrics,
    SourceCollector,
    counts_json,
    serve,
)
from peerwall.dataplane.nft import Nft

log = logging.getLogger("peerwall.agent")


class Source(Protocol):
    synced: asyncio.Event
    changed: asyncio.Event

    async def run(self) -> None: ...


@dataclass(frozen=True)
class AgentSettings:
    resync_interval: float = 10.0
    """Seconds between read-backs of the live table (drift repair)."""
    coalesce: float = 0.0
    """Seconds to wait after a first event for others to join its transaction. 0: none, beyond
    the events already queued (those that came during the previous transaction)."""
    metrics_address: str | None = "0.0.0.0:9090"
    """``host:port`` of /metrics, /healthz, /readyz; None: no HTTP endpoint."""
    status_file: str | None = None
    """Where to write a JSON status after every step (the lab waits on it)."""


class Agent:
    def __init__(
        self,
        source: Source,
        desired: DesiredState,
        nft: Nft,
        flows: FlowTable | None,
        settings: AgentSettings = AgentSettings(),
    ) -> None:
        self.source = source
        self.desired = desired
        self.settings = settings
        self.enforcer = Enforcer(nft, flows)
        self.metrics = Metrics()
        self.enforcer.on_commit = self.metrics.committed
        self.ready = False
        self.beat = time.monotonic()
        self.applied_digest: str | None = None
        self.address: tuple[Any, ...] | None = None
        """Where the HTTP endpoints listen, once running."""
        self._lock = asyncio.Lock()
        self._status_error: str | None = None
        """Why the last status-file write failed (retried every heartbeat); None: written."""
        self.collector = LiveCollector(nft)
        self.metrics.registry.register(self.collector)
        self.metrics.registry.register(CountsCollector(self.enforcer.counts))
        self.metrics.registry.register(SourceCollector(source))

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self._check_now = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self._check_now.set)
        self.enforcer.fail_closed(self.desired.snapshot())
        self._write_status()
        server = None
        if self.settings.metrics_address:
            server = serve(
                self.settings.metrics_address,
                self.metrics,
                lambda: self.ready and self.enforcer.counts.guard is None,
                self._alive,
                self.status,
            )
            self.address = server.server_address
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.source.run(), name="source")
                group.create_task(self._enforce(), name="enforce")
                group.create_task(self._resync(), name="resync")
                group.create_task(self._heartbeat(), name="heartbeat")
        finally:
            if server is not None:
                server.shutdown()

    async def _enforce(self) -> None:
        await self.source.synced.wait()
        log.info("state synced: enforcing")
        refused = 0
        while True:
            await self.source.changed.wait()
            await asyncio.sleep(self.settings.coalesce)
            self.source.changed.clear()
            async with self._lock:
                step = await self.step()
            # A refused step is retried whole; back off so that a table the kernel keeps
            # refusing (another process holds it) costs a retry now and then, not a busy loop.
            refused = refused + 1 if step.kind == "failed" else 0
            if refused:
                await asyncio.sleep(min(0.05 * 2 ** (refused - 1), 5.0))

    async def step(self) -> Step:
        """One transaction for what changed (all of it, the first time), then the flows."""
        since = self.desired.pending_since
        digest = getattr(self.source, "loaded_digest", None)
        # The kernel's part runs in a worker thread: events that come in meanwhile gather for
        # the next step, so a burst costs a few transactions and a lone event no wait.
        prepared = self.enforcer.prepare(self.desired)
        step = await asyncio.to_thread(self.enforcer.commit, prepared)
        if step.kind == "failed":
            self.source.changed.set()  # the whole table, at once
        self.collector.publish(self.desired)
        if step.committed_at is not None and since is not None:
            self.metrics.event_latency.observe(step.committed_at - since)
        if step.narrowed is not None and self.enforcer.flows is not None:
            cleared = await asyncio.to_thread(self.enforcer.clear_flows, step.narrowed)
            self.metrics.flows.inc(cleared)
        self.ready = True
        self.applied_digest = digest
        self._write_status()
        return step

    async def _resync(self) -> None:
        await self.source.synced.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self.settings.resync_interval)
            self._check_now.clear()
            async with self._lock:
                if not self.ready:
                    continue
                state = self.desired.snapshot()
                try:
                    found = await asyncio.to_thread(self.enforcer.repair, state)
                    if found:
                        self.metrics.repairs.inc()
                        cleared = await asyncio.to_thread(self.enforcer.clear_flows, state)
                        self.metrics.flows.inc(cleared)
                except Exception:  # a check must never stop enforcement: the next one retries
                    log.exception("the check of the live table failed; retrying at the next one")
                    continue
                if self.enforcer.counts.guard is None:
                    self.metrics.last_sync.set(time.time())
                self._write_status()

    async def _heartbeat(self) -> None:
        while True:
            self.beat = time.monotonic()
            if self._status_error is not None:
                self._write_status()  # a side file that failed: retried until it is written
            await asyncio.sleep(1.0)

    def _alive(self) -> bool:
        return time.monotonic() - self.beat < 5.0

    # --- reporting ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        blind = getattr(self.source, "blind_seconds", None)
        return {
            **({"source_blind_seconds": round(blind(), 3)} if blind is not None else {}),
            "pid": os.getpid(),
            "cluster": self.desired.cluster,
            "ready": self.ready,
            "digest": self.applied_digest,
            "peers": list(self.desired.peers),
            "guard": self.enforcer.counts.guard,
            **counts_json(self.enforcer.counts),
        }

    def _write_status(self) -> None:
        """Write the status file. It is a side file: a failure (no file descriptor left, a full
        disk) is logged once, counted and retried every heartbeat, and never stops enforcement."""
        path = self.settings.status_file
        if not path:
            return
        tmp = f"{path}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.status(), f)
            os.replace(tmp, path)
        except OSError as e:
            self.metrics.side_file_failures.inc()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if str(e) != self._status_error:
                log.error("status file %s not written (%s): enforcing anyway, retrying", path, e)
            self._status_error = str(e)
            return
        if self._status_error is not None:
            log.warning("status file %s written again", path)
        self._status_error = None
