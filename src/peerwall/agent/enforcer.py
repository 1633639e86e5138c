"""The kernel side of the agent: turns netted changes into one transaction each, cheaply.

Three paths, from cheapest:
- elements: pod and endpoint events only add and delete elements of per-peer hash sets; one
  netlink batch names exactly those elements (O(change), whatever the set sizes: no script, no
  libnftables, no ruleset fetched), and nothing is read back;
- mode: a peer whose declaration changed only in its mode (or audit) gets one element of its
  ``cidrs`` (or ``audit``) set;
- peers: a peer added, removed or redeclared; the live table is read once and diffed object by
  object, so only that peer's chains, sets and map elements change and other peers' counters
  survive.
A whole-table replace happens at start and after a failed transaction, and nowhere else.

After a transaction that narrows what a peer may reach, the tracked connections the new state
would not have let through are deleted (``compile.flows``); the agent does that off the event path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from peerwall.agent.desired import Changes, DesiredState
from peerwall.compile import ctmark, names
from peerwall.compile.build import audit_elements, build, build_guard, cidrs_elements
from peerwall.compile.diff import diff, element_script
from peerwall.compile.flows import Flow, stale
from peerwall.compile.netlink import SetEdit
from peerwall.compile.nft import render_replace
from peerwall.compile.state import GatewayState, PeerState, SetKind
from peerwall.dataplane.apply import apply
from peerwall.dataplane.conntrack import Cleared
from peerwall.dataplane.drift import (
    TABLE_MISSING,
    TABLE_UNREADABLE,
    WHOLE_TABLE_KINDS,
    Drift,
    read_drift,
)
from peerwall.dataplane.nft import Nft, release_memory
from peerwall.dataplane.readback import read_table, table_exists
from peerwall.errors import NftError

log = logging.getLogger("peerwall.agent")


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
    """A step read from the desired state, not yet committed. Not frozen, like ``Step``: one of
    each is made per event, and a frozen dataclass takes 7x longer to make (~1-2 us, a tenth of
    an event); neither is changed once made."""

    changes: Changes
    kind: str
    script: str
    snapshot: GatewayState | None = None
    narrowed: Narrowed = None
    edits: tuple[SetEdit, ...] = ()
    """An elements step's element edits (netlink, not a script)."""


@dataclass(slots=True)
class Step:
    """One ``sync``: the changes it applied and how (elements, mode, peers, full; "" if none),
    and, when it narrowed what some peer may reach, the state of just those peers (a peer that
    went away admits nothing): the flows to check against it (``clear_flows``)."""

    changes: Changes
    kind: str
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


@dataclass
class Counts:
    """What the enforcer did, for metrics, logs and the lab's status file."""

    transactions: dict[str, int] = field(
        default_factory=lambda: {"elements": 0, "mode": 0, "peers": 0, "full": 0}
    )
    elements_added: int = 0
    elements_deleted: int = 0
    checks: int = 0
    """Read-backs of the live table (periodic, or asked for with SIGUSR1)."""
    repairs: int = 0
    apply_failures: int = 0
    flows_cleared: int = 0
    last_sync: float = 0.0
    """``time.time()`` of the last successful transaction or check."""
    readback_failures: int = 0
    """Read-backs that could not read the live table (counted as drift, and repaired)."""
    guard: str | None = None
    """Why the fail-closed guard table is up (``inet peerwall`` cannot be taken back); None: down."""


def _edits(changes: Changes) -> tuple[SetEdit, ...]:
    """The element edits of ``changes``, one per set."""
    added, deleted = changes.added, changes.deleted
    if len(added) + len(deleted) == 1:  # one event: one address in one set
        for key, a in added.items():
            return (SetEdit(names.peer_set(*key), tuple(a)),)
        for key, a in deleted.items():
            return (SetEdit(names.peer_set(*key), (), tuple(a)),)
    keys = deleted.keys() | added.keys()
    return tuple(
        SetEdit(
            names.peer_set(*key),
            tuple(changes.added.get(key, ())),
            tuple(changes.deleted.get(key, ())),
        )
        for key in sorted(keys, key=lambda k: (k[0], k[1].value))
    )


class Enforcer:
    def __init__(self, nft: Nft, flows: FlowTable | None = None) -> None:
        self.nft = nft
        self.flows = flows
        self.counts = Counts()
        self.needs_full = True
        self.applied: dict[str, PeerState] = {}
        """Peer declarations (no members) as the kernel holds them."""
        self.on_commit: Callable[[str, float], None] | None = None
        """Called with the kind and duration of every committed transaction (metrics)."""

    # --- start --------------------------------------------------------------------------------

    def fail_closed(self, state: GatewayState) -> bool:
        """Before the desired state is known: if there is no table, install one with no peers,
        which drops every tunnel's traffic but established and related. A table left by a
        previous run is kept: it is the last known state, and replacing it now would cut
        allowed connections; but not one with flags (``dormant`` enforces nothing) or one that
        cannot be read back. If the kernel refuses the fail-closed table, the guard table fails
        the gateway closed instead. Returns whether a table was installed."""
        if table_exists(self.nft, names.FAMILY, names.GUARD_TABLE):
            # A previous run died while guarded: keep the guard until a whole table is written.
            self.counts.guard = "left up by a previous run"
        fail_closed = build(replace(state, peers={}))
        live, found = read_drift(self.nft, fail_closed)
        if live is not None and not live.flags:
            log.info("kept the table of a previous run until the desired state is known")
            return False
        if found and found[0].kind != TABLE_MISSING:
            self.counts.readback_failures += live is None
            log.error("the table left by a previous run is not usable: %s", found[0])
        try:
            self.nft.run(render_replace(fail_closed))
        except NftError as e:
            self._raise_guard(state.tunnel_pattern, f"the fail-closed table was refused: {e}")
            return False
        log.info("installed a fail-closed table (every tunnel dropped)")
        return True

    # --- the guard ---------------------------------------------------------------------------

    def _raise_guard(self, tunnel_pattern: str, why: str) -> None:
        """Fail the gateway closed by a table of its own, since ``inet peerwall`` cannot be
        written (say, another process holds it with ``flags owner``). Never raises: if even the
        guard is refused, that is logged, and the next step or check tries again."""
        try:
            self.nft.run(render_replace(build_guard(tunnel_pattern)))
        except NftError as e:
            log.critical("%s; the fail-closed guard table was refused too: %s", why, e)
            return
        if self.counts.guard is None:
            log.critical(
                "%s: fail-closed guard table %s %s installed (every tunnel's new traffic dropped)",
                why,
                names.FAMILY,
                names.GUARD_TABLE,
            )
        self.counts.guard = why

    def _lower_guard(self) -> None:
        """The whole table was written: the guard is not needed any more."""
        if self.counts.guard is None:
            return
        try:
            self.nft.run(f"delete table {names.FAMILY} {names.GUARD_TABLE}\n")
        except NftError as e:
            if table_exists(self.nft, names.FAMILY, names.GUARD_TABLE):
                log.error("could not remove the guard table (kept, fail closed): %s", e)
                return
        log.warning("table %s %s is back: guard table removed", names.FAMILY, names.TABLE)
        self.counts.guard = None

    # --- applying ----------------------------------------------------------------------------

    def sync(self, desired: DesiredState) -> Step:
        """Apply the desired state's pending changes in one transaction (``prepare`` then
        ``commit``). The caller clears the flows the step forbids when ``step.narrows``."""
        return self.commit(self.prepare(desired))

    def prepare(self, desired: DesiredState) -> Prepared:
        """What to commit for the pending changes: everything that reads the desired state, so
        that ``commit`` (the kernel's part) can run in another thread while events come in."""
        changes = desired.take_changes()
        if self.needs_full:
            state = desired.snapshot()
            return Prepared(changes, "full", "", state, state)
        if not changes:
            return Prepared(changes, "", "")
        if self._elements_only(changes):
            changes = self._without_absent_sets(changes)
            # Which peers lost elements is known now; their (live) views are looked up when
            # the flows are checked, after the commit: the event's kernel change does not wait.
            later = (lambda: self._narrowed(desired, changes)) if changes.narrows else None
            return Prepared(changes, "elements", "", None, later, _edits(changes))
        narrowed = self._narrowed(desired, changes) if changes.narrows else None
        kind, script, snapshot = self._script(desired, changes)
        return Prepared(changes, kind, script, snapshot, narrowed)

    def commit(self, p: Prepared) -> Step:
        """Commit a prepared step. A refused transaction marks the table for a whole replace,
        which the next step does (``needs_full``)."""
        if p.kind == "":
            return Step(p.changes, "")
        started = time.perf_counter()
        try:
            if p.kind == "full":
                assert p.snapshot is not None
                self.full(p.snapshot)
                return Step(p.changes, "full", p.snapshot, time.perf_counter())
            kind, script = p.kind, p.script
            if kind == "peers":
                assert p.snapshot is not None
                try:
                    live = read_table(self.nft, names.FAMILY, names.TABLE)
                except NftError:  # unreadable (the check will say why): replace it whole
                    live = None
                tx = diff(live, build(p.snapshot))
                kind, script = ("full" if tx.full else "peers"), tx.script
            if p.edits:
                self.nft.edit_elements(names.FAMILY, names.TABLE, p.edits)
            elif script:
                self.nft.run(script)
            committed = time.perf_counter()
        except NftError as e:
            self.counts.apply_failures += 1
            self.needs_full = True
            if p.kind == "full" or kind == "full":
                assert p.snapshot is not None
                self._raise_guard(p.snapshot.tunnel_pattern, f"whole-table replace refused: {e}")
            log.error("transaction refused (%s): the next step replaces the whole table", e)
            return Step(p.changes, "failed")
        self._committed(kind, committed - started)
        added, deleted = p.changes.count()
        self.counts.elements_added += added
        self.counts.elements_deleted += deleted
        if p.changes.removed:
            for name in p.changes.removed - p.changes.peers.keys():
                self.applied.pop(name, None)
        for name, peer in p.changes.peers.items():
            self.applied[name] = replace(peer, members={})
        self._log(p.changes, kind)
        return Step(p.changes, kind, p.narrowed, committed)

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
            if not desired.declares(n) and n in self.applied:
                peers[n] = replace(self.applied[n], members={}, full_access=(), api=None)
        return GatewayState(desired.cluster, peers, desired.tunnel_pattern, desired.conncheck_port)

    def _without_absent_sets(self, changes: Changes) -> Changes:
        """``changes`` less the edits of sets the table does not have: a peer without an API
        server has no ``api-clients`` set (its members are kept, and written whole when the set
        comes back with the API server)."""

        def present(key: tuple[str, SetKind]) -> bool:
            peer, kind = key
            applied = self.applied.get(peer)
            return kind is not SetKind.API_CLIENTS or applied is None or applied.api is not None

        added = {k: a for k, a in changes.added.items() if present(k)}
        deleted = {k: a for k, a in changes.deleted.items() if present(k)}
        if len(added) == len(changes.added) and len(deleted) == len(changes.deleted):
            return changes
        return replace(changes, added=added, deleted=deleted)

    def _elements_only(self, changes: Changes) -> bool:
        """Whether the changes are only elements of peers the kernel has as declared."""
        if changes.removed:
            return False
        return not changes.peers or all(
            n in self.applied and self.applied[n] == replace(p, members={})
            for n, p in changes.peers.items()
        )

    def _script(
        self, desired: DesiredState, changes: Changes
    ) -> tuple[str, str, GatewayState | None]:
        """(kind, script, snapshot): the element script of an elements or mode step, or, for a
        peer added, removed or redeclared, the snapshot ``commit`` diffs the live table against."""
        prefix = (names.FAMILY, names.TABLE)
        lines: list[str] = []
        redeclared = {
            n: p for n, p in changes.peers.items() if n in self.applied and n not in changes.removed
        }
        only_mode = all(
            replace(self.applied[n], mode=p.mode, audit=p.audit) == replace(p, members={})
            for n, p in redeclared.items()
        )
        new_or_gone = bool(changes.removed) or any(n not in self.applied for n in changes.peers)
        if new_or_gone or not only_mode:
            return "peers", "", desired.snapshot()
        for name, declared in redeclared.items():
            before = cidrs_elements(self.applied[name])
            after = cidrs_elements(declared)
            lines += element_script(
                *prefix, names.peer_cidrs_set(name), after - before, before - after
            )
            before = audit_elements(self.applied[name])
            after = audit_elements(declared)
            lines += element_script(
                *prefix, names.peer_audit_set(name), after - before, before - after
            )
        for (who, kind), addresses in changes.deleted.items():
            lines += element_script(
                *prefix, names.peer_set(who, kind), (), map(IPv4Address, addresses)
            )
        for (who, kind), addresses in changes.added.items():
            lines += element_script(*prefix, names.peer_set(who, kind), map(IPv4Address, addresses))
        script = "\n".join(lines) + "\n" if lines else ""
        return ("mode" if redeclared else "elements"), script, None

    def full(self, state: GatewayState) -> None:
        """Replace the whole table (one transaction), then clear what it forbids."""
        started = time.perf_counter()
        table = build(state)
        self.nft.run(render_replace(table))
        del table
        self.needs_full = False
        self.applied = {n: replace(p, members={}) for n, p in state.peers.items()}
        self._committed("full", time.perf_counter() - started)
        release_memory()
        self._lower_guard()
        log.info(
            "whole table written: %d peer(s), %d set elements",
            len(state.peers),
            sum(len(m) for p in state.peers.values() for m in p.members.values()),
        )

    def _committed(self, kind: str, seconds: float) -> None:
        self.counts.transactions[kind] += 1
        self.counts.last_sync = time.time()
        if self.on_commit is not None:
            self.on_commit(kind, seconds)

    def _log(self, changes: Changes, kind: str) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        for name in sorted(changes.removed - changes.peers.keys()):
            log.info("peer %s: removed", name)
        for name, peer in changes.peers.items():
            log.info(
                "peer %s: %s (%s)", name, "declared" if kind != "mode" else "mode", peer.mode.value
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
        """Delete the tracked connections ``state`` forbids (``compile.flows.stale``), asking
        the kernel for only those that can be stale: the connections each peer of ``state``
        opened (its ``from_peer`` mark), those opened towards it when this gateway remaps for it
        (``to_peer``: their NAT is checked), and, with ``unmarked``, the connections without a
        mark of ours (made while the table was missing: needed after a whole-table replace or a
        repair, not after an element change, which cannot create any)."""
        if self.flows is None:
            return 0
        # ``stale`` names only flows from or to a peer's valid sources (its pods, its masquerade
        # address): the others are skipped unread.
        about = {net for peer in state.peers.values() for net in peer.valid_sources}
        marks = [(ctmark.from_peer(p.name), ctmark.OURS) for p in state.peers.values()]
        marks += [(ctmark.to_peer(p.name), ctmark.OURS) for p in state.peers.values() if p.nat]
        if unmarked:
            marks.append((0, ctmark.OURS))  # Liqo's marks too: skipped by ``stale``
        cleared = self.flows.delete_where(lambda flow: stale(state, flow), about, set(marks))
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
        self.counts.flows_cleared += cleared.count
        return cleared.count

    def repair(self, state: GatewayState) -> list[Drift]:
        """Read the live table back and repair any difference (logged and counted); the caller
        clears the flows the repaired table forbids. A table that cannot be read back is drift
        (replaced whole); one that cannot be replaced either raises the guard. Never raises
        ``NftError``: the kernel keeps the last rules, and the next check tries again."""
        desired = build(state)
        live, found = read_drift(self.nft, desired)
        self.counts.checks += 1
        if not found:
            del live, desired
            release_memory()
            self.counts.last_sync = time.time()
            self._lower_guard()
            return found
        if any(d.kind == TABLE_UNREADABLE for d in found):
            self.counts.readback_failures += 1
        for d in found[:20]:
            log.warning("drift: %s", d)
        started = time.perf_counter()
        whole = any(d.kind in WHOLE_TABLE_KINDS for d in found)
        try:
            result = apply(self.nft, live, desired, force_full=whole)
        except NftError as e:
            self.counts.apply_failures += 1
            log.error("repair refused (%s): replacing the whole table", e)
            try:
                self.full(state)
            except NftError as again:
                self.counts.apply_failures += 1
                self.needs_full = True
                self._raise_guard(state.tunnel_pattern, f"whole-table replace refused: {again}")
                return found
        else:
            self._committed("full" if result.full else "peers", time.perf_counter() - started)
            self._lower_guard()
        self.counts.repairs += 1
        self.applied = {n: replace(p, members={}) for n, p in state.peers.items()}
        del live, desired
        release_memory()
        log.warning("repaired %d difference(s)", len(found))
        return found
