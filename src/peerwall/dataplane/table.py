"""The one owner of a gateway's table: applied versus desired, one fallback policy, one commit.

As Calico Felix's ``nftables/table.go`` owns its table (desired vs applied, one ``Apply()``),
``GatewayTable`` is the only code that writes ``inet peerwall`` (and its fail-closed guard). It
is handed the netted delta (``compile.changes.Changes``) and, when it needs one, a snapshot of the
desired state; it never reads the desired state itself. Transactions, from cheapest:

- ``ELEMENTS``: pod and endpoint events only add and delete elements of per-peer hash sets; one
  netlink batch names exactly those elements (O(change), whatever the set sizes: no script, no
  libnftables, no ruleset fetched), and nothing is read back;
- ``MODE``: a peer whose declaration changed only in its mode (or audit) gets one element of its
  ``cidrs`` (or ``audit``) set;
- ``PEERS``: a peer added, removed or redeclared; the live table is read once and diffed object
  by object, so only that peer's chains, sets and map elements change and other peers' counters
  survive;
- ``FULL``: the whole table, at start and after a refused transaction, and nowhere else: staged
  over a table that reaches no peer (``_write_staged``), else one transaction from the table
  read back (the difference, or a whole replace).

The fallback policy, the only one: a refused transaction changes nothing (the kernel commits all
or nothing) and marks the table for a whole replace (``needs_full``). When the whole desired
state is at hand (a repair, ``write``), the whole table is written at once; otherwise (an event's
step builds no table) the next step writes it. A refused whole replace raises the guard table
(``inet peerwall-guard``), which fails the gateway closed until a whole table is written.
Drift repair (``repair``) goes the same way: read back, diff, commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from ipaddress import IPv4Address
from typing import cast

from peerwall.compile import names
from peerwall.compile.build import audit_elements, build, build_guard, cidrs_elements
from peerwall.compile.changes import Changes
from peerwall.compile.state import GatewayState, PeerState, SetKind
from peerwall.dataplane.drift import (
    TABLE_MISSING,
    TABLE_UNREADABLE,
    WHOLE_TABLE_KINDS,
    Drift,
    read_drift,
)
from peerwall.dataplane.element_writer import ElementWriter, Ticket, WriterGone
from peerwall.dataplane.nft import Nft, release_memory
from peerwall.dataplane.readback import plain, read_table, table_exists
from peerwall.errors import NftError
from peerwall.nft.netlink import SetEdit
from peerwall.nft.objects import Ruleset
from peerwall.nft.transaction import (
    AddChain,
    AddMapElements,
    AddRule,
    Operation,
    Transaction,
    delete_table,
    diff,
    element_operations,
    replace_table,
)

log = logging.getLogger("peerwall.agent")


def brief(e: NftError) -> str:
    """libnftables' error text, the first error only: it says one error per refused command of
    a script (its line, and a caret line), so a whole table refused (another process holds it)
    is hundreds of lines, logged again on every retry."""
    text = str(e).strip().splitlines()
    starts = [i for i, line in enumerate(text) if ": Error: " in line]
    if len(starts) < 2:
        return "\n".join(text)
    more = len(starts) - 1
    return "\n".join(text[: starts[1]]) + f"\n(and {more} more error{'s' * (more > 1)})"


class StepKind(str, Enum):
    """What a step committed. The values are the metrics' and the status file's labels."""

    NONE = ""
    """Nothing to do."""
    ELEMENTS = "elements"
    MODE = "mode"
    PEERS = "peers"
    FULL = "full"
    FAILED = "failed"
    """Refused: nothing changed, the next step writes the whole table."""


COMMITTED = (StepKind.ELEMENTS, StepKind.MODE, StepKind.PEERS, StepKind.FULL)
"""The kinds that reach the kernel (``Counts.transactions``' keys)."""


@dataclass
class Counts:
    """What the table's owner did, for metrics, logs and the lab's status file."""

    transactions: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in COMMITTED})
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


@dataclass(slots=True)
class Plan:
    """One transaction chosen for a delta, not yet committed (``GatewayTable.plan``). Not
    frozen: one is made per event, and a frozen dataclass takes 7x longer to make (~1-2 us, a
    tenth of an event); it is not changed once made."""

    changes: Changes
    """The delta, less the edits of sets the table does not have."""
    kind: StepKind
    snapshot: GatewayState | None = None
    """The whole desired state (``PEERS`` and ``FULL`` steps)."""
    edits: tuple[SetEdit, ...] = ()
    """An ``ELEMENTS`` step's element edits (one netlink batch, not a script)."""
    transaction: Transaction | None = None
    """A ``MODE`` step's element operations."""


@dataclass(slots=True)
class Sending:
    """An ``ELEMENTS`` plan handed to the element writer, not yet answered."""

    writer: ElementWriter
    ticket: Ticket | None
    """None: the plan had no element to send."""
    started: float


@dataclass(frozen=True)
class SyncResult:
    """One ``write``: the transaction committed (empty if the table was already right), wall
    time in seconds, and whether a partial transaction had to fall back to a whole replace."""

    transaction: Transaction
    seconds: float
    fell_back: bool = False

    @property
    def changed(self) -> bool:
        return not self.transaction.empty

    @property
    def full(self) -> bool:
        return self.transaction.full

    @property
    def added(self) -> int:
        return self.transaction.added

    @property
    def removed(self) -> int:
        return self.transaction.removed


FILL_CHUNK = 50_000
"""Addresses per netlink batch when a staged whole write fills a set (800 KB a datagram)."""


def _reaches_no_peer(nft: Nft, fail_closed: Ruleset) -> bool:
    """Whether the live table lets through nothing more than ``fail_closed`` (the table of no
    peer, for the same tunnels): no table, or one without flags whose hooked chains are exactly
    the fail-closed table's and whose verdict maps, the only way from them to a peer's chains,
    are empty. Chains and sets beyond those are unreachable, whatever they hold. Only the shape
    is read (no set elements). An unreadable table is not known to: it is replaced in one
    transaction."""
    try:
        live = read_table(nft, names.FAMILY, names.TABLE, elements=False)
    except NftError:
        return False
    if live is None:
        return True
    if live.flags or any(m.elements for m in live.maps):
        return False
    hooked = [c for c in live.chains if c.hook is not None]
    want = {c.name: c for c in fail_closed.chains}
    return len(hooked) == len(want) and all(
        c.name in want and c == want[c.name] and c.hook == want[c.name].hook for c in hooked
    )


_SET_NAMES: dict[tuple[str, SetKind], str] = {}
"""(peer, kind) -> the set's name (``names.peer_set``): asked on every element event."""


def _set_name(key: tuple[str, SetKind]) -> str:
    name = _SET_NAMES.get(key)
    if name is None:
        name = _SET_NAMES[key] = names.peer_set(*key)
    return name


def _edits(changes: Changes) -> tuple[SetEdit, ...]:
    """The element edits of ``changes``, one per set."""
    added, deleted = changes.added, changes.deleted
    if len(added) + len(deleted) == 1:  # one event: one address in one set
        for key, a in added.items():
            return (SetEdit(_set_name(key), tuple(a)),)
        for key, a in deleted.items():
            return (SetEdit(_set_name(key), (), tuple(a)),)
    keys = deleted.keys() | added.keys()
    return tuple(
        SetEdit(_set_name(key), tuple(added.get(key, ())), tuple(deleted.get(key, ())))
        for key in sorted(keys, key=lambda k: (k[0], k[1].value))
    )


# Enum members are looked up through their class (~0.1 us each on the event path): bound once.
_NONE, _ELEMENTS, _MODE, _PEERS, _FULL, _FAILED = (
    StepKind.NONE,
    StepKind.ELEMENTS,
    StepKind.MODE,
    StepKind.PEERS,
    StepKind.FULL,
    StepKind.FAILED,
)
_API_CLIENTS = SetKind.API_CLIENTS
_LABELS = {k: k.value for k in StepKind}
_FAMILY, _TABLE = names.FAMILY, names.TABLE


class GatewayTable:
    """The table ``inet peerwall`` of one gateway, through ``nft``."""

    def __init__(self, nft: Nft) -> None:
        self.nft = nft
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
        # The shape decides (elements are not read: a previous run's would only be dropped).
        live, found = read_drift(self.nft, fail_closed, elements=False)
        if live is not None and not live.flags:
            log.info("kept the table of a previous run until the desired state is known")
            return False
        if found and found[0].kind != TABLE_MISSING:
            self.counts.readback_failures += live is None
            log.error("the table left by a previous run is not usable: %s", found[0])
        try:
            self.nft.apply(replace_table(fail_closed))
        except NftError as e:
            self._raise_guard(
                state.tunnel_pattern, f"the fail-closed table was refused: {brief(e)}"
            )
            return False
        log.info("installed a fail-closed table (every tunnel dropped)")
        return True

    # --- the guard ---------------------------------------------------------------------------

    def _raise_guard(self, tunnel_pattern: str, why: str) -> None:
        """Fail the gateway closed by a table of its own, since ``inet peerwall`` cannot be
        written (say, another process holds it with ``flags owner``). Never raises: if even the
        guard is refused, that is logged, and the next step or check tries again."""
        try:
            self.nft.apply(replace_table(build_guard(tunnel_pattern)))
        except NftError as e:
            log.critical("%s; the fail-closed guard table was refused too: %s", why, brief(e))
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
            self.nft.apply(delete_table(names.FAMILY, names.GUARD_TABLE))
        except NftError as e:
            if table_exists(self.nft, names.FAMILY, names.GUARD_TABLE):
                log.error("could not remove the guard table (kept, fail closed): %s", e)
                return
        log.warning("table %s %s is back: guard table removed", names.FAMILY, names.TABLE)
        self.counts.guard = None

    # --- choosing the transaction --------------------------------------------------------------

    def needs_snapshot(self, changes: Changes) -> bool:
        """Whether ``plan`` needs the whole desired state for ``changes``: for a whole table,
        or a peer added, removed or redeclared beyond its mode."""
        if self.needs_full:
            return True
        if not changes.peers and not changes.removed:  # elements only, or nothing
            return False
        if self._elements_only(changes):
            return False
        return not self._only_mode(changes)

    def plan(self, changes: Changes, snapshot: GatewayState | None = None) -> Plan:
        """The transaction for ``changes``; ``snapshot`` is the whole desired state, given when
        ``needs_snapshot(changes)``. Reads nothing from the kernel."""
        if self.needs_full:
            assert snapshot is not None, "a whole table needs the desired state"
            return Plan(changes, _FULL, snapshot)
        if not changes.peers and not changes.removed:  # the usual event: elements only
            if not changes.added and not changes.deleted:
                return Plan(changes, _NONE)
            changes = self._without_absent_sets(changes)
            return Plan(changes, _ELEMENTS, None, _edits(changes))
        if self._elements_only(changes):
            changes = self._without_absent_sets(changes)
            return Plan(changes, _ELEMENTS, None, _edits(changes))
        if not self._only_mode(changes):
            assert snapshot is not None, "a peers step needs the desired state"
            return Plan(changes, StepKind.PEERS, snapshot)
        return Plan(changes, StepKind.MODE, transaction=self._mode_transaction(changes))

    def _elements_only(self, changes: Changes) -> bool:
        """Whether the changes are only elements of peers the kernel has as declared."""
        if changes.removed:
            return False
        return not changes.peers or all(
            n in self.applied and self.applied[n] == replace(p, members={})
            for n, p in changes.peers.items()
        )

    def _only_mode(self, changes: Changes) -> bool:
        """Whether every redeclared peer changed only its mode or audit (no peer new or gone)."""
        if changes.removed or any(n not in self.applied for n in changes.peers):
            return False
        return all(
            replace(self.applied[n], mode=p.mode, audit=p.audit) == replace(p, members={})
            for n, p in changes.peers.items()
        )

    def _without_absent_sets(self, changes: Changes) -> Changes:
        """``changes`` less the edits of sets the table does not have: a peer without an API
        server has no ``api-clients`` set (its members are kept, and written whole when the set
        comes back with the API server)."""
        for _, kind in (*changes.added, *changes.deleted):
            if kind is _API_CLIENTS:
                break
        else:
            return changes  # the usual event: pods and endpoints, no API client

        def present(key: tuple[str, SetKind]) -> bool:
            peer, kind = key
            applied = self.applied.get(peer)
            return kind is not SetKind.API_CLIENTS or applied is None or applied.api is not None

        added = {k: a for k, a in changes.added.items() if present(k)}
        deleted = {k: a for k, a in changes.deleted.items() if present(k)}
        if len(added) == len(changes.added) and len(deleted) == len(changes.deleted):
            return changes
        return replace(changes, added=added, deleted=deleted)

    def _mode_transaction(self, changes: Changes) -> Transaction:
        """The element operations of a mode step: each redeclared peer's ``cidrs`` and ``audit``
        elements, then the element changes that came with it."""
        ops: list[Operation] = []
        for name, declared in changes.peers.items():
            for set_name, elements in (
                (names.peer_cidrs_set(name), cidrs_elements),
                (names.peer_audit_set(name), audit_elements),
            ):
                before, after = elements(self.applied[name]), elements(declared)
                ops += element_operations(set_name, after - before, before - after)
        for (who, kind), addresses in changes.deleted.items():
            ops += element_operations(names.peer_set(who, kind), (), map(IPv4Address, addresses))
        for (who, kind), addresses in changes.added.items():
            ops += element_operations(names.peer_set(who, kind), map(IPv4Address, addresses))
        return Transaction(names.FAMILY, names.TABLE, tuple(ops))

    # --- committing ----------------------------------------------------------------------------

    def commit(self, plan: Plan) -> tuple[StepKind, float | None]:
        """Commit ``plan``: (the kind committed, ``time.perf_counter()`` when the kernel had it).
        A refused transaction is ``FAILED`` and the next step writes the whole table."""
        kind: StepKind = plan.kind
        if kind is _ELEMENTS:
            return self._commit_elements(plan)
        if kind is _NONE:
            return _NONE, None
        if kind is _FULL:
            assert plan.snapshot is not None
            try:
                self.write_whole(plan.snapshot)
            except NftError as e:
                self._refused(e, plan.snapshot.tunnel_pattern, whole=True)
                return StepKind.FAILED, None
            return StepKind.FULL, time.perf_counter()
        started = time.perf_counter()
        try:
            if kind is _MODE:
                assert plan.transaction is not None
                if not plan.transaction.empty:
                    self.nft.apply(plan.transaction)
            else:
                assert plan.snapshot is not None
                desired = build(plan.snapshot)
                tx = diff(self._read_live(desired), desired)
                del desired
                kind = StepKind.FULL if tx.full else StepKind.PEERS
                if not tx.empty:
                    self.nft.apply(tx)
        except NftError as e:
            pattern = plan.snapshot.tunnel_pattern if plan.snapshot is not None else ""
            self._refused(e, pattern, whole=kind is StepKind.FULL)
            return StepKind.FAILED, None
        committed = time.perf_counter()
        self._committed(kind, committed - started)
        added, deleted = plan.changes.count()
        self.counts.elements_added += added
        self.counts.elements_deleted += deleted
        if plan.changes.removed:
            for name in plan.changes.removed - plan.changes.peers.keys():
                self.applied.pop(name, None)
        for name, peer in plan.changes.peers.items():
            self.applied[name] = replace(peer, members={})
        if kind is StepKind.FULL:
            self._after_whole()
        return kind, committed

    def _commit_elements(self, plan: Plan) -> tuple[StepKind, float | None]:
        """``commit`` of an ``ELEMENTS`` plan (the event path: written out, ~1 us of Python)."""
        started = time.perf_counter()
        try:
            self.nft.edit_elements(_FAMILY, _TABLE, plan.edits)
        except NftError as e:
            self._refused(e, "", whole=False)
            return _FAILED, None
        return self._elements_committed(plan, started)

    def _elements_committed(self, plan: Plan, started: float) -> tuple[StepKind, float]:
        committed = time.perf_counter()
        self._committed(_ELEMENTS, committed - started)
        counts, changes = self.counts, plan.changes
        for a in changes.added.values():
            counts.elements_added += len(a)
        for a in changes.deleted.values():
            counts.elements_deleted += len(a)
        return _ELEMENTS, committed

    def send_elements(self, plan: Plan, writer: ElementWriter) -> Sending:
        """The first half of committing an ``ELEMENTS`` plan in the writer process: the batch
        handed over. Nothing counts as applied until ``finish_elements`` judged its answer.
        Raises ``WriterGone`` if the batch could not be handed over (then nothing was sent)."""
        started = time.perf_counter()
        return Sending(writer, writer.submit(_FAMILY, _TABLE, plan.edits), started)

    def finish_elements(
        self, plan: Plan, sending: Sending, answer: tuple[int, bytes] | WriterGone
    ) -> tuple[StepKind, float | None]:
        """The second half: judge the writer's ``answer`` (or that it died with the batch, which
        may or may not have reached the kernel) under the fallback policy, as ``commit``."""
        ticket = sending.ticket
        if ticket is not None:
            try:
                if isinstance(answer, WriterGone):
                    raise NftError(f"{answer}: the element batch's fate is unknown")
                sending.writer.judge(ticket, answer)
            except NftError as e:
                self._refused(e, "", whole=False)
                return _FAILED, None
        return self._elements_committed(plan, sending.started)

    def _read_live(self, desired: Ruleset) -> Ruleset | None:
        try:
            return read_table(self.nft, names.FAMILY, names.TABLE, desired)
        except NftError:  # unreadable (the check will say why): replaced whole
            return None

    def _refused(self, e: NftError, tunnel_pattern: str, *, whole: bool) -> None:
        """The fallback policy's first half: count, and mark the table for a whole replace; a
        refused whole replace raises the guard."""
        self.counts.apply_failures += 1
        self.needs_full = True
        if whole:
            self._raise_guard(tunnel_pattern, f"whole-table replace refused: {brief(e)}")
        log.error("transaction refused (%s): the table is to be replaced whole", brief(e))

    def write_whole(self, state: GatewayState) -> None:
        """Make the whole table ``state``'s; a refusal raises ``NftError`` (the caller's to
        handle: ``commit`` and ``repair`` apply the fallback policy). Staged
        (``_write_staged``) when the live table lets nothing through that the fail-closed table
        would not; else one transaction from the table as read back (``write``: the difference,
        or a whole replace when nft cannot make it in place or the table cannot be read)."""
        started = time.perf_counter()
        table = build(state)
        fail_closed = build(replace(state, peers={}))
        if _reaches_no_peer(self.nft, fail_closed):
            self._write_staged(table, fail_closed)
        else:
            # A table that enforces for some peer (a restarted agent's, say): one transaction,
            # from the table read back, so that only what differs goes through libnftables
            # (a refused diff is followed by a whole replace: ``write``).
            self.write(table, self._read_live(table))
        del table
        self.applied = {n: replace(p, members={}) for n, p in state.peers.items()}
        self._committed(StepKind.FULL, time.perf_counter() - started)
        self._after_whole()
        log.info(
            "whole table written: %d peer(s), %d set elements",
            len(state.peers),
            sum(len(m) for p in state.peers.values() for m in p.members.values()),
        )

    def _write_staged(self, table: Ruleset, fail_closed: Ruleset) -> None:
        """Write ``table`` so that packets see the fail-closed table until it is whole, and the
        addresses of its plain sets never go through libnftables, which holds ~0.4 KiB an
        element while it writes them (86 MiB at 220,000; issue 21, the agent's start peak):

        1. one libnftables transaction replaces the table with ``table`` less the elements of
           its plain address sets, less the elements of its verdict maps, and less its NAT
           chains: its base chains are the fail-closed table's, and with the maps empty they
           reach no peer's chain; so the table lets through exactly what the fail-closed one
           does (every tunnel dropped);
        2. netlink batches (``edit_elements``) fill the plain sets, ``FILL_CHUNK`` addresses a
           transaction, in chains that nothing reaches yet;
        3. one libnftables transaction adds the map elements and the NAT chains: the switch,
           atomic, after which the table is whole.

        Only used when the live table reaches no peer either (``_reaches_no_peer``: none, the
        fail-closed table, or a staged write that stopped half-way), so no state in between
        lets through more, or less, than the table before did. A failure at any stage raises
        ``NftError`` and leaves the table failing closed; the next whole write starts over."""
        base = {c.name for c in fail_closed.chains}
        assert [c for c in table.chains if c.name in base] == list(fail_closed.chains)
        shape = replace(
            table,
            sets=tuple(s.declaration() if plain(s) else s for s in table.sets),
            maps=tuple(m.declaration() for m in table.maps),
            chains=tuple(c for c in table.chains if c.hook is None or c.name in base),
        )
        self.nft.apply(replace_table(shape))
        for s in table.sets:
            if plain(s) and s.elements:
                # A plain set's elements are addresses (``build``'s per-peer sets).
                members = cast(tuple[IPv4Address, ...], tuple(s.elements))
                for i in range(0, len(members), FILL_CHUNK):
                    edit = SetEdit(s.name, members[i : i + FILL_CHUNK])
                    self.nft.edit_elements(table.family, table.table, (edit,))
                del members
        switch: list[Operation] = []
        for c in table.chains:
            if c.hook is not None and c.name not in base:
                switch += [AddChain(replace(c, rules=())), *(AddRule(c.name, r) for r in c.rules)]
        switch += [
            AddMapElements(m.name, tuple(sorted(m.elements.items())))
            for m in table.maps
            if m.elements
        ]
        if switch:
            self.nft.apply(Transaction(table.family, table.table, tuple(switch)))

    def _after_whole(self) -> None:
        self.needs_full = False
        release_memory()
        self._lower_guard()

    def _committed(self, kind: StepKind, seconds: float) -> None:
        label = _LABELS[kind]
        self.counts.transactions[label] += 1
        self.counts.last_sync = time.time()
        if self.on_commit is not None:
            self.on_commit(label, seconds)

    # --- a whole desired ruleset ---------------------------------------------------------------

    def write(
        self, desired: Ruleset, live: Ruleset | None, *, force_full: bool = False
    ) -> SyncResult:
        """Bring the table from ``live`` (as read back) to ``desired`` in one transaction, under
        the fallback policy: a refused partial transaction is followed at once by a whole
        replace (the desired table is at hand); a refused whole replace raises ``NftError``,
        the kernel still holding the previous table."""
        start = time.perf_counter()
        tx = diff(live, desired, force_full=force_full)
        if tx.empty:
            return SyncResult(tx, time.perf_counter() - start)
        try:
            self.nft.apply(tx)
        except NftError as first:
            if tx.full:
                raise
            self.counts.apply_failures += 1
            tx = diff(live, desired, force_full=True)
            try:
                self.nft.apply(tx)
            except NftError as second:
                raise NftError(
                    f"partial update refused ({first}); full replace refused too: {second}"
                ) from second
            return SyncResult(tx, time.perf_counter() - start, fell_back=True)
        return SyncResult(tx, time.perf_counter() - start)

    # --- drift ---------------------------------------------------------------------------------

    def repair(self, state: GatewayState) -> list[Drift]:
        """Read the live table back and repair any difference (logged and counted). A table
        that cannot be read back is drift (replaced whole); one that cannot be replaced either
        raises the guard. Never raises ``NftError``: the kernel keeps the last rules, and the
        next check tries again."""
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
            result = self.write(desired, live, force_full=whole)
        except NftError as e:
            self._refused(e, state.tunnel_pattern, whole=True)
            return found
        kind = StepKind.FULL if result.full else StepKind.PEERS
        self._committed(kind, time.perf_counter() - started)
        self._lower_guard()
        self.applied = {n: replace(p, members={}) for n, p in state.peers.items()}
        self.counts.repairs += 1
        del live, desired
        release_memory()
        log.warning("repaired %d difference(s)", len(found))
        return found
