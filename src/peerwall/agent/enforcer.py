"""The agent's side of the kernel table: hands the desired state's delta to the table's owner,
and clears the flows a step forbids.

``dataplane.table.GatewayTable`` owns ``inet peerwall``: it chooses the transaction (elements,
mode, peers, whole table), commits it, and repairs drift, under one fallback policy. The enforcer
reads the desired state (the delta, and a snapshot only when the table asks for one) and hands
it down; nothing below it reads the desired state.

After a transaction that narrows what a peer may reach, the tracked connections the new state
would not have let through are deleted (``compile.flows``); the agent does that off the event path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Network
from typing import Protocol

from peerwall.agent.desired import DesiredState
from peerwall.compile import ctmark
from peerwall.compile.changes import Changes
from peerwall.compile.flows import Flow, Verdicts
from peerwall.compile.state import GatewayState
from peerwall.dataplane.conntrack import Cleared
from peerwall.dataplane.drift import Drift
from peerwall.dataplane.element_writer import ElementWriter, WriterGone
from peerwall.dataplane.nft import Nft
from peerwall.dataplane.table import Counts, GatewayTable, Plan, Sending, StepKind

__all__ = ["Counts", "Enforcer", "FlowTable", "Prepared", "Step", "StepKind"]

log = logging.getLogger("peerwall.agent")

# Enum members are looked up through their class (~0.1 us each on the event path): bound once.
_NONE, _ELEMENTS, _FULL, _FAILED = StepKind.NONE, StepKind.ELEMENTS, StepKind.FULL, StepKind.FAILED


class FlowTable(Protocol):
    """What the enforcer needs of conntrack (``dataplane.conntrack.Conntrack``)."""

    def delete_where(
        self,
        reason: Callable[[Flow], str | None],
        about: Iterable[IPv4Network] | None = None,
        marks: Iterable[tuple[int, int]] | None = None,
    ) -> Cleared: ...


Narrowed = GatewayState | Callable[[], GatewayState] | None
"""The peers a step narrowed, or how to find them (``Step.narrowed``)."""


@dataclass(slots=True)
class Prepared:
    """A step read from the desired state, not yet committed: the table's plan, and the peers
    it narrows. Not frozen, like ``Step``: one of each is made per event, and a frozen
    dataclass takes 7x longer to make (~1-2 us, a tenth of an event)."""

    plan: Plan
    narrowed: Narrowed = None

    @property
    def changes(self) -> Changes:
        return self.plan.changes

    @property
    def kind(self) -> StepKind:
        return self.plan.kind


@dataclass(slots=True)
class Step:
    """One ``sync``: the changes it applied and how (``StepKind``), and, when it narrowed what
    some peer may reach, the state of just those peers (a peer that went away admits nothing):
    the flows to check against it (``clear_flows``)."""

    changes: Changes
    kind: StepKind
    _narrowed: Narrowed = None
    committed_at: float | None = None
    """``time.perf_counter()`` when the kernel had the transaction."""

    @property
    def narrowed(self) -> GatewayState | None:
        """Made on first use (an element step's: after the commit, off the event's path)."""
        if callable(self._narrowed):
            self._narrowed = self._narrowed()
        return self._narrowed

    @property
    def narrows(self) -> bool:
        return self._narrowed is not None


class Enforcer:
    """Hands the desired state's delta to ``table``, the kernel table's one owner, and clears the
    flows a step forbids. What the table holds (``counts``, ``applied``, ``needs_full``, the
    ``on_commit`` hook) is read from ``table`` itself."""

    def __init__(self, nft: Nft, flows: FlowTable | None = None) -> None:
        self.table = GatewayTable(nft)
        self.flows = flows

    def fail_closed(self, state: GatewayState) -> bool:
        """``GatewayTable.fail_closed``: a table with no peers until the state is known."""
        return self.table.fail_closed(state)

    # --- applying ----------------------------------------------------------------------------

    def sync(self, desired: DesiredState) -> Step:
        """Apply the desired state's pending changes in one transaction (``prepare`` then
        ``commit``). The caller clears the flows the step forbids when ``step.narrows``."""
        return self.commit(self.prepare(desired))

    def prepare(self, desired: DesiredState) -> Prepared:
        """What to commit for the pending changes: everything that reads the desired state, so
        that ``commit`` (the kernel's part) can run in another thread while events come in."""
        if self.table.needs_full:  # a whole table: the snapshot first, shared by the changes
            snapshot: GatewayState | None = desired.snapshot()
            changes = desired.take_changes(snapshot)
        else:
            changes = desired.take_changes()
            snapshot = desired.snapshot() if self.table.needs_snapshot(changes) else None
        plan = self.table.plan(changes, snapshot)
        kind = plan.kind
        if kind is _ELEMENTS:
            if not plan.changes.deleted and not plan.changes.peers:  # nothing narrowed
                return Prepared(plan)
            # Which peers lost elements is known now; their (live) views are looked up when
            # the flows are checked, after the commit: the event's kernel change does not wait.
            return Prepared(plan, lambda: self._narrowed(desired, plan.changes))
        if kind is _FULL:
            return Prepared(plan, snapshot)
        if kind is _NONE or not plan.changes.narrows:
            return Prepared(plan)
        return Prepared(plan, self._narrowed(desired, plan.changes))

    def commit(self, p: Prepared) -> Step:
        """Commit a prepared step. A refused transaction marks the table for a whole replace,
        which the next step does (``needs_full``)."""
        return self._step(p, *self.table.commit(p.plan))

    def send(self, p: Prepared, writer: ElementWriter) -> Sending:
        """Hand a prepared ``ELEMENTS`` step to the element writer process
        (``GatewayTable.send_elements``); ``finish`` makes the step once it answered. Raises
        ``WriterGone`` if it could not be handed over (nothing was sent)."""
        return self.table.send_elements(p.plan, writer)

    def finish(self, p: Prepared, sending: Sending, answer: tuple[int, bytes] | WriterGone) -> Step:
        """The step ``send`` began, once the writer answered (or died): as ``commit``."""
        return self._step(p, *self.table.finish_elements(p.plan, sending, answer))

    def _step(self, p: Prepared, kind: StepKind, committed_at: float | None) -> Step:
        plan = p.plan
        if kind is _NONE or kind is _FAILED:
            return Step(plan.changes, kind)
        if log.isEnabledFor(logging.INFO) and (kind is not _FULL or plan.kind is not _FULL):
            self._log(plan.changes, kind)
        return Step(plan.changes, kind, p.narrowed, committed_at)

    def _narrowed(self, desired: DesiredState, changes: Changes) -> GatewayState:
        """The peers whose reach may have shrunk, as they are now; a removed peer (by the
        declaration the kernel had) with nothing it may reach. Live views of those peers' sets,
        not copies: it costs nothing on the event path, and the flow check that reads it later
        sees the state as it is then."""
        names = {peer for peer, _ in changes.deleted}
        if changes.peers:
            names |= changes.peers.keys()
        peers = {n: desired.peer_view(n) for n in names if desired.declares(n)}
        for n in changes.removed:
            if not desired.declares(n) and n in self.table.applied:
                peers[n] = replace(self.table.applied[n], members={}, full_access=(), api=None)
        return GatewayState(desired.cluster, peers, desired.tunnel_pattern, desired.conncheck_port)

    def _log(self, changes: Changes, kind: StepKind) -> None:
        """At INFO level (the caller asks: not on every event of a quiet log)."""
        for name in sorted(changes.removed - changes.peers.keys()):
            log.info("peer %s: removed", name)
        for name, peer in changes.peers.items():
            log.info(
                "peer %s: %s (%s)",
                name,
                "declared" if kind is not StepKind.MODE else "mode",
                peer.mode.value,
            )
        per_set: dict[tuple[str, str], list[int]] = {}
        for (who, k), a in changes.added.items():
            per_set.setdefault((who, k.value), [0, 0])[0] += len(a)
        for (who, k), a in changes.deleted.items():
            per_set.setdefault((who, k.value), [0, 0])[1] += len(a)
        for (who, set_kind), (plus, minus) in sorted(per_set.items()):
            log.info("peer %s: +%d -%d elements in %s", who, plus, minus, set_kind)

    # --- flows and drift ---------------------------------------------------------------------

    def clear_flows(self, state: GatewayState, unmarked: bool = True) -> int:
        """Delete the tracked connections ``state`` forbids (``compile.flows.stale``, prepared
        once per clearing: ``Verdicts``), asking the kernel for only those that can be stale:
        the connections each peer of ``state`` opened (its ``from_peer`` mark), those opened
        towards it when this gateway remaps for it (``to_peer``: their NAT is checked), and,
        with ``unmarked``, the connections without a mark of ours (made while the table was
        missing: needed after a whole-table replace or a repair, not after an element change,
        which cannot create any)."""
        if self.flows is None:
            return 0
        # ``stale`` names only flows from or to a peer's valid sources (its pods, its masquerade
        # address): the others are skipped unjudged.
        about = {net for peer in state.peers.values() for net in peer.valid_sources}
        marks = [(ctmark.from_peer(p.name), ctmark.OURS) for p in state.peers.values()]
        marks += [(ctmark.to_peer(p.name), ctmark.OURS) for p in state.peers.values() if p.nat]
        if unmarked:
            # No mark at all: ``stale`` never names one with Liqo's bits only, and reads the
            # whole mark of one without ours (``delete_where`` keys verdicts by the masked bits).
            marks.append((0, 0xFFFF_FFFF))
        cleared = self.flows.delete_where(Verdicts(state), about, set(marks))
        for flow, why in cleared.sample:
            log.info(
                "flow %s %s:%s -> %s:%s cleared: %s",
                flow.proto,
                flow.orig.src,
                flow.orig.sport,
                flow.orig.dst,
                flow.orig.dport,
                why,
            )
        if cleared.count > len(cleared.sample):
            log.info("... and %d more flows cleared", cleared.count - len(cleared.sample))
        self.table.counts.flows_cleared += cleared.count
        return cleared.count

    def repair(self, state: GatewayState) -> list[Drift]:
        """``GatewayTable.repair``: read the live table back and repair any difference; the
        caller clears the flows the repaired table forbids. Never raises ``NftError``."""
        return self.table.repair(state)
