"""The agent's loop: a source of state in, one coalesced transaction per burst of events out.

1. Start fail-closed (``Enforcer.fail_closed``): until the source has delivered the whole state,
   unknown tunnels are dropped (a table left by a previous run is kept as the last known state).
2. Once synced: one whole-table replace, then one transaction per burst of changes. A lone
   event is applied at once; events that arrive while a transaction is being committed (or
   within ``coalesce`` seconds of the first, if set), and a burst of events (another one
   in the loop's next turn: then until 0.5 ms pass without one, 2 ms at most), share the next
   one, so a burst costs a few transactions and an isolated event no wait. A burst's element
   transaction is sent by the element writer, a process the agent starts beside its loop
   (``WRITER_ELEMENTS``, ``dataplane.element_writer``), and the loop takes events in meanwhile.
3. After a step that narrows what a peer may reach, the flows it forbids are cleared: in the
   loop when that is quick (``FLOWS_INLINE_S``), else in a worker thread; during a burst of
   element changes, once for the burst's narrowing steps (``FLOWS_OWED_S``).
4. Every ``resync_interval`` seconds (and at once on SIGUSR1, or on nftables' notification that
   another process changed the table, ``dataplane.nftevents``) the live table is read back and
   any drift repaired.
5. ``/metrics``, ``/healthz``, ``/readyz``, ``/status`` and a status file (for the lab) tell what
   happened; the endpoint runs in a thread of its own and cannot stall the loop (``endpoint``).
6. Drops the kernel reports (NFLOG) become explained events: JSON lines in the log, ``/flows``
   (``agent.flowevents``, ``agent.flowsapi``). Reading them never holds up enforcement for long:
   the kernel rate-limits them.

If the agent dies, the kernel keeps the last rules: nothing is removed on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any, Protocol

from peerwall.agent.desired import DesiredState
from peerwall.agent.enforcer import Enforcer, FlowTable, Prepared, Step, StepKind
from peerwall.agent.flowevents import FlowEvent, FlowNamer, FlowRecorder, FlowRing
from peerwall.agent.flowsapi import flows_route
from peerwall.agent.metrics import (
    CountsCollector,
    LiveCollector,
    Metrics,
    SourceCollector,
    counts_json,
    public_status,
    scrape_handle,
    serve,
)
from peerwall.compile.state import GatewayState
from peerwall.dataplane.element_writer import ElementWriter, WriterGone
from peerwall.dataplane.nflog import NflogReader
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.errors import NftError
from peerwall.settings import AgentSettings

log = logging.getLogger("peerwall.agent")

INLINE_ELEMENTS = 4096
"""An element step of at most this many elements is committed in the event loop (the kernel's
share, 0.7-1.2 us an element inside ``send``: ~3-5 ms at most); a bigger one in a worker thread. A
worker thread does not take the kernel's share off the loop while events keep coming in: the
thread needs the interpreter lock back after ``send`` (and before it), and the loop, which
releases the lock at every turn (its ``epoll``), wakes the waiting thread each time and takes
the lock again before it, so the thread's timed wait never expires and it never asks for the
lock: measured on the churn benchmark (16 events a turn), a 571-element step handed to a thread
at 3.6 ms was sent at 15.9 ms and answered after the last event, at 61 ms, the loop slowed by
the thread's wake-ups meanwhile (the feed 61 ms against 42 ms without enforcing); committed in
the loop, the same steps cost 0.5 ms each and the feed ended at 56 ms. With an element writer
(``WRITER_ELEMENTS``), this applies only when the writer is gone."""

FLOWS_OWED_S = 0.1
"""A narrowing element step made while changes keep coming (a burst) leaves its flows to the
step after it, for at most this long after the first step that left them: one clearing for the
burst's steps, not one each. A clearing walks the kernel's whole conntrack hash (every
namespace's: 262,144 buckets by default) once per kind of flow it asks for, 1-5 ms each whatever
it finds; after every step of a burst (every few ms) that was most of the loop's time, or, in a
thread the busy loop starves, a step waiting for the burst's end. The flows a burst forbids live
this much longer at most; a mode or peer change, and a step with nothing after it, clear at once."""

FLOWS_INLINE_S = 0.002
"""The flows a narrowing step forbids are cleared in the loop while the last clearing took at
most this much CPU time (a few hundred flows to check), else in a worker thread
(``Agent._clear_flows``)."""

WRITER_TIMEOUT_S = 5.0
"""A writer that has not answered a batch in this many seconds (its kernel share is ~1 ms) is
taken for dead: killed, the step failed (the whole table next), later steps in this process."""

WRITER_ELEMENTS = 32
"""An element step of more than this many elements goes to the element writer process
(``dataplane.element_writer``), when there is one: the loop encodes the batch, hands it over and
takes events in while the kernel commits it in the writer; the step is done (applied, counted,
its flows cleared) when the writer's answer comes. A smaller one (a lone event: one element) is
committed in the loop: its kernel share (~10 us) is less than handing it over and reading the
answer in another turn of the loop."""


class Source(Protocol):
    listed: asyncio.Event
    """Set once the source has read everything there is (a file, every list of the API: client-go's
    "has synced"); "sync" in peerwall means making the kernel's table equal the desired one."""
    changed: asyncio.Event
    loaded_digest: str | None
    """A digest of the state last loaded (a topology file's), shown in the status; None if the
    source has none (the Kubernetes API)."""

    async def run(self) -> None: ...


class TableWatch(Protocol):
    """What the agent needs of nftables' notifications (``dataplane.nftevents.TableEvents``)."""

    def fileno(self) -> int: ...

    def foreign_changes(self) -> int: ...


class Agent:
    def __init__(
        self,
        source: Source,
        desired: DesiredState,
        nft: Nft,
        flows: FlowTable | None,
        settings: AgentSettings = AgentSettings(),
        events: TableWatch | None = None,
    ) -> None:
        self.source = source
        self.events = events
        self.desired = desired
        self.settings = settings
        self.enforcer = Enforcer(nft, flows)
        self.metrics = Metrics()
        self.enforcer.table.on_commit = self.metrics.committed
        self.ready = False
        self.beat = time.monotonic()
        self.applied_digest: str | None = None
        self.applied_versions: dict[str, str] = {}
        """The source's versions (the Kubernetes API's resourceVersions) the enforced table
        was built from: one can wait for a change of the API to be enforced."""
        self.address: tuple[Any, ...] | None = None
        """Where the HTTP endpoints listen, once running."""
        self._lock = asyncio.Lock()
        self._status_error: str | None = None
        """Why the last status-file write failed (retried every heartbeat); None: written."""
        self.collector = LiveCollector(scrape_handle(nft))
        self.metrics.registry.register(self.collector)
        self.metrics.registry.register(CountsCollector(self.enforcer.table.counts))
        self.metrics.registry.register(SourceCollector(source))
        for extra in getattr(source, "collectors", ()):
            self.metrics.registry.register(extra)
        self.flows = FlowRing(settings.flows_ring)
        self.namer = FlowNamer(lambda: self.desired.cluster, self.desired.declarations)
        self.recorder: FlowRecorder | None = None
        self._nflog_failed = False
        self.metrics.flows_ring = self.flows
        self.writer: ElementWriter | None = None
        """The element writer process, while there is one (``run`` starts it)."""
        self._owed: GatewayState | None = None
        """The peers whose flows narrowing steps left to a later step (``FLOWS_OWED_S``): live
        views, as ``Step.narrowed``'s, judged when cleared; ``_owed_unmarked``: with the
        unmarked flows; ``_owed_since``: when the first of those steps was made."""
        self._owed_unmarked = False
        self._owed_since = 0.0
        self._flows_seconds = float("inf")
        """How long the last ``_clear_flows`` took (it decides where the next one runs). The
        first (the whole table's, at start: the flow table's size unknown) runs in a thread."""
        self._answer: asyncio.Future[tuple[int, bytes] | WriterGone] | None = None
        """Where the writer's answer to the batch in flight goes."""

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        self._check_now = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, self._check_now.set)
        if self.events is not None:
            asyncio.get_running_loop().add_reader(self.events.fileno(), self._table_changed)
        self.enforcer.fail_closed(self.desired.snapshot())
        self._write_status()
        self._listen_for_drops()
        server = None
        if self.settings.metrics_address:
            server = serve(
                self.settings.metrics_address,
                self.metrics,
                lambda: self.ready and self.enforcer.table.counts.guard is None,
                self._alive,
                lambda: public_status(self.status()),
                self.settings.endpoint,
                routes={
                    "/flows": flows_route(
                        self.flows, lambda: f"peerwall: drops at {self.desired.cluster}"
                    )
                },
            )
            self.address = server.server_address
        # Its interpreter starts while the source lists and the first whole table is written.
        self._start_writer()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.source.run(), name="source")
                group.create_task(self._enforce(), name="enforce")
                group.create_task(self._resync(), name="resync")
                group.create_task(self._heartbeat(), name="heartbeat")
        finally:
            if self.writer is not None:
                asyncio.get_running_loop().remove_reader(self.writer.fileno())
                self.writer.close()
                self.writer = None
            if server is not None:
                server.shutdown()
            scrapes = self.collector.nft
            if scrapes is not self.enforcer.table.nft and isinstance(scrapes, LibNft):
                scrapes.close()
            if self.recorder is not None:
                asyncio.get_running_loop().remove_reader(self.recorder.reader.fileno())
                self.recorder.reader.close()
            if self.events is not None:  # the caller's to close: only no longer watched
                asyncio.get_running_loop().remove_reader(self.events.fileno())

    def _listen_for_drops(self) -> None:
        """Bind the NFLOG group the drop rules log to; without it (another listener, no
        nfnetlink_log), enforcement goes on and drops are only counted."""
        flow_log = self.desired.flow_log
        if flow_log is None:
            return
        try:
            reader = NflogReader(flow_log.group)
        except (OSError, NftError) as e:
            if not self._nflog_failed:
                log.error("cannot read drops from NFLOG group %d: %s", flow_log.group, e)
            self._nflog_failed = True
            return
        self.recorder = FlowRecorder(
            reader,
            self.namer,
            self.flows,
            sys.stderr if self.settings.flow_lines else None,
            self._counted,
        )
        asyncio.get_running_loop().add_reader(reader.fileno(), self.recorder.readable)
        self.metrics.flow_lost = lambda: reader.lost
        log.info("reporting drops from NFLOG group %d", flow_log.group)

    def _start_writer(self) -> None:
        """Start the element writer process, for a table written through libnftables (in the
        namespace of its context); without one (a fake, the setting off, or it cannot start),
        element steps are committed in this process."""
        nft = self.enforcer.table.nft
        if not self.settings.element_writer or not isinstance(nft, LibNft):
            return
        try:
            self.writer = ElementWriter(nft.netns)
        except NftError as e:
            log.warning("%s: element steps are committed in the agent's process", e)
            return
        asyncio.get_running_loop().add_reader(self.writer.fileno(), self._writer_readable)

    def _writer_readable(self) -> None:
        """The writer answered (or its channel ended): hand the answer to the step waiting."""
        assert self.writer is not None
        try:
            answer = self.writer.answer()
        except WriterGone as e:
            self._lost_writer(e)
            return
        if answer is not None and self._answer is not None and not self._answer.done():
            self._answer.set_result(answer)

    def _lost_writer(self, why: WriterGone) -> None:
        """The writer died: commit in this process from now on. A step waiting for its answer
        learns it (its batch's fate is unknown: the table's fallback policy writes the whole
        table next)."""
        writer = self.writer
        assert writer is not None
        self.writer = None
        asyncio.get_running_loop().remove_reader(writer.fileno())
        writer.close(kill=True)
        log.error("%s: element steps are committed in the agent's process from now on", why)
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(why)

    @property
    def writing(self) -> bool:
        """Whether a batch is with the writer, not answered yet (not applied, not counted)."""
        return self._answer is not None

    async def _commit_in_writer(self, prepared: Prepared, writer: ElementWriter) -> Step:
        """Commit an element step in the writer process; the loop takes events in meanwhile
        (the lock held: no other step or check starts before the answer)."""
        try:
            sending = self.enforcer.send(prepared, writer)
        except WriterGone as e:  # nothing was sent: commit it here
            self._lost_writer(e)
            return await self._commit_here(prepared)
        if sending.ticket is None:  # no element to send
            return self.enforcer.finish(prepared, sending, (0, b""))
        self._answer = answer = asyncio.get_running_loop().create_future()
        try:
            try:
                got = await asyncio.wait_for(asyncio.shield(answer), WRITER_TIMEOUT_S)
            except TimeoutError:
                # A writer that does not answer (stopped, stuck) is as good as dead.
                self._lost_writer(
                    WriterGone(f"the element writer did not answer in {WRITER_TIMEOUT_S} s")
                )
                got = answer.result()
            return self.enforcer.finish(prepared, sending, got)
        finally:
            self._answer = None

    async def _commit_here(self, prepared: Prepared) -> Step:
        """Commit a step in this process: an element step of up to ``INLINE_ELEMENTS`` in the
        loop, anything else in a worker thread."""
        if prepared.kind is StepKind.ELEMENTS and sum(prepared.changes.count()) <= INLINE_ELEMENTS:
            return self.enforcer.commit(prepared)
        return await asyncio.to_thread(self.enforcer.commit, prepared)

    def _counted(self, event: FlowEvent) -> None:
        self.metrics.flow_events.labels(event.peer, event.verdict, event.reason).inc()

    async def _enforce(self) -> None:
        await self.source.listed.wait()
        log.info("state synced: enforcing")
        refused = 0
        while True:
            await self.source.changed.wait()
            await asyncio.sleep(self.settings.coalesce)
            self.source.changed.clear()
            coming = await self._drain()
            async with self._lock:
                # Not the step itself: kept over the wait for the next event, a whole-table
                # step would keep the snapshot it wrote, every address twice (issue 21).
                failed = (await self.step(coming)).kind is StepKind.FAILED
            # A refused step is retried whole at once (what it would have narrowed stays open
            # until then); a whole table refused too is retried with backoff, so that a table
            # the kernel keeps refusing (another process holds it) costs a retry now and then,
            # not a busy loop.
            refused = refused + 1 if failed else 0
            if refused > 1:
                await asyncio.sleep(min(0.05 * 2 ** (refused - 2), 5.0))

    async def _drain(self) -> bool:
        """If the source delivered another change in the loop's next turn (a burst), wait for
        the rest of it, on a timer (the loop then turns only for the source): in quarters of
        ``burst_window``, until a quarter passes without a change, ``burst_window`` at most. A
        lone change costs one turn (~5 us); the end of a burst, a quarter of the window (not
        all of it: the last events of a burst wait 0.5 ms, not 2). Whether changes are still
        coming: the window ran out in the middle of a burst."""
        await asyncio.sleep(0)
        quarter = self.settings.burst_window / 4
        for _ in range(4):
            if not self.source.changed.is_set():
                return False
            self.source.changed.clear()
            await asyncio.sleep(quarter)
        coming = self.source.changed.is_set()
        self.source.changed.clear()
        return coming

    async def idle(self) -> None:
        """Return once no step (nor check of the table) is running: one that started has its
        transaction in the kernel, or refused. Pending changes are not waited for."""
        async with self._lock:
            pass

    async def step(self, coming: bool = False) -> Step:
        """One transaction for what changed (all of it, the first time), then the flows;
        ``coming``: changes are still coming in (a burst goes on: an element step's flows can
        wait for a later step's, ``FLOWS_OWED_S``)."""
        since = self.desired.pending_since
        digest = self.source.loaded_digest
        versions = dict(getattr(self.source, "versions", {}))
        # A burst's element step (one netlink batch: ~0.5 ms for 700 elements) goes to the
        # element writer process, and the loop takes events in until it answers
        # (``WRITER_ELEMENTS``); a lone event's (~10 us) runs here, between two turns of the
        # loop. Without a writer, element steps run here too, and only a bigger step (a whole
        # table, a peer, thousands of elements) goes to a worker thread (``INLINE_ELEMENTS``).
        prepared = self.enforcer.prepare(self.desired)
        writer = self.writer
        if (
            writer is not None
            and writer.ready
            and prepared.kind is StepKind.ELEMENTS
            and sum(prepared.changes.count()) > WRITER_ELEMENTS
        ):
            step = await self._commit_in_writer(prepared, writer)
        else:
            step = await self._commit_here(prepared)
        if step.kind is StepKind.FAILED:
            self.source.changed.set()  # the whole table, at once
        self.collector.publish(self.desired)
        self.namer.use(
            getattr(self.source, "topology", None),
            getattr(self.source, "mode", self.namer.default_mode),
        )
        if step.committed_at is not None and since is not None:
            self.metrics.event_latency.observe(step.committed_at - since)
        waits = True  # whether owed flows can wait for a later step: not after a peer change
        if step.narrows and self.enforcer.flows is not None:
            narrowed = step.narrowed  # made here, in the loop that owns the desired state
            assert narrowed is not None
            # Only a whole-table replace can follow a table that was missing (whose connections
            # have no mark of ours); after an element or peer change, only marked ones can be stale.
            self._owe(narrowed, step.kind is StepKind.FULL)
            waits = step.kind is StepKind.ELEMENTS
        if self._owed is not None:
            if (
                waits
                and (coming or self.source.changed.is_set())
                and time.monotonic() - self._owed_since < FLOWS_OWED_S
            ):
                self.source.changed.set()  # a later step pays them, if only an empty one
            else:
                await self._pay()
        self.ready = True
        if self._owed is None and step.kind is not StepKind.FAILED:
            # The inputs are enforced (the lab waits for this digest to call a change
            # converged) once the flows they forbid are cleared; a refused step changed
            # nothing: not until the whole table is written.
            self.applied_digest, self.applied_versions = digest, versions
        self._write_status()
        return step

    def _owe(self, narrowed: GatewayState, unmarked: bool) -> None:
        """Add ``narrowed``'s peers to the flows owed (the latest view of each peer)."""
        if self._owed is None:
            self._owed, self._owed_unmarked = narrowed, unmarked
            self._owed_since = time.monotonic()
        else:
            self._owed = replace(narrowed, peers={**self._owed.peers, **narrowed.peers})
            self._owed_unmarked |= unmarked

    async def _pay(self) -> None:
        """Clear the flows owed."""
        owed, unmarked = self._owed, self._owed_unmarked
        assert owed is not None
        self._owed = None
        self.metrics.flows.inc(await self._clear_flows(owed, unmarked))

    async def _clear_flows(self, narrowed: GatewayState, unmarked: bool) -> int:
        """``Enforcer.clear_flows`` after a narrowing step: in the loop while the last one took
        at most ``FLOWS_INLINE_S`` (a few flows), else in a worker thread. A worker thread beside
        a busy loop does not get the interpreter lock until the loop idles (``INLINE_ELEMENTS``):
        under a churn, the step (and every step after it) would wait for the events to stop.
        The clearing's own CPU time decides (its thread's: not the time a thread waited for the
        lock)."""

        def clear() -> tuple[int, float]:
            started = time.thread_time()
            cleared = self.enforcer.clear_flows(narrowed, unmarked)
            return cleared, time.thread_time() - started

        if self._flows_seconds > FLOWS_INLINE_S:
            cleared, self._flows_seconds = await asyncio.to_thread(clear)
        else:
            cleared, self._flows_seconds = clear()
        return cleared

    async def _resync(self) -> None:
        await self.source.listed.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._check_now.wait(), self.settings.resync_interval)
            self._check_now.clear()
            if self.recorder is None:
                # The group was busy (a previous agent not yet gone): try again.
                self._listen_for_drops()
            async with self._lock:
                await self._check()

    async def _check(self) -> None:
        """Read the table back and repair it (the lock held). A method of its own so that the
        snapshot it compares with goes when it returns: a local of the loop above would be
        kept over the wait for the next check, every address twice (issue 21)."""
        if not self.ready:
            return
        state = self.desired.snapshot()
        try:
            found = await asyncio.to_thread(self.enforcer.repair, state)
            if found:
                self.metrics.repairs.inc()
                cleared = await asyncio.to_thread(self.enforcer.clear_flows, state)
                self.metrics.flows.inc(cleared)
        except Exception:  # a check must never stop enforcement: the next one retries
            log.exception("the check of the live table failed; retrying at the next one")
            return
        if self.enforcer.table.counts.guard is None:
            self.metrics.last_sync.set(time.time())
        self._write_status()

    def _table_changed(self) -> None:
        """Another process changed the table: read it back now, not at the next resync."""
        assert self.events is not None
        try:
            changes = self.events.foreign_changes()
        except OSError as e:
            log.error("nftables notifications failed (%s): repairs wait for the resync", e)
            asyncio.get_running_loop().remove_reader(self.events.fileno())
            return
        if changes:
            log.warning("the table was changed by another process: reading it back now")
            self._check_now.set()

    async def _heartbeat(self) -> None:
        while True:
            self.beat = time.monotonic()
            if self._status_error is not None:
                self._write_status()  # a side file that failed: retried every second until written
            # Every 2 s otherwise, well within ``_alive``'s 5 s: each wake-up of an idle agent
            # costs CPU (several ms on a virtual machine).
            await asyncio.sleep(1.0 if self._status_error is not None else 2.0)

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
            **({"source_versions": self.applied_versions} if self.applied_versions else {}),
            "peers": list(self.desired.peers),
            "guard": self.enforcer.table.counts.guard,
            **counts_json(self.enforcer.table.counts),
            "flow_events": self.flows.seq,
        }

    def _write_status(self) -> None:
        """Write the status file. It is a side file: a failure (no file descriptor left, a full
        disk) is logged once, counted and retried every heartbeat, and never stops enforcement."""
        path = self.settings.status_file
        if not path:
            return
        tmp = None
        try:
            # A new temporary file (O_EXCL | O_NOFOLLOW, as mkstemp opens it): no link followed.
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(self.status()))  # the C encoder: no garbage cycles
            os.replace(tmp, path)
        except OSError as e:
            self.metrics.side_file_failures.inc()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if str(e) != self._status_error:
                log.error("status file %s not written (%s): enforcing anyway, retrying", path, e)
            self._status_error = str(e)
            return
        if self._status_error is not None:
            log.warning("status file %s written again", path)
        self._status_error = None
