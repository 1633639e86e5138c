"""Bring the live table to the desired ruleset in one atomic transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass

from peerwall.compile.diff import Transaction, diff
from peerwall.compile.nft import Ruleset
from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError


@dataclass(frozen=True)
class SyncResult:
    """One sync: the transaction committed (empty if the table was already right), wall time in
    seconds, and whether an element-only attempt had to fall back to a full replace."""

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


def apply(
    nft: Nft, live: Ruleset | None, desired: Ruleset, *, force_full: bool = False
) -> SyncResult:
    """Apply the difference from ``live`` (what the kernel holds) to ``desired``.

    A partial transaction that the kernel refuses (the live table is not what it was read as) is
    retried once as a full replace. A refused full replace raises ``NftError``; the kernel then
    still holds the previous ruleset (a refused transaction changes nothing).
    """
    start = time.perf_counter()
    tx = diff(live, desired, force_full=force_full)
    if tx.empty:
        return SyncResult(tx, time.perf_counter() - start)
    try:
        nft.run(tx.script)
    except NftError as first:
        if tx.full:
            raise
        tx = diff(live, desired, force_full=True)
        try:
            nft.run(tx.script)
        except NftError as second:
            raise NftError(
                f"partial update refused ({first}); full replace refused too: {second}"
            ) from second
        return SyncResult(tx, time.perf_counter() - start, fell_back=True)
    return SyncResult(tx, time.perf_counter() - start)


def sync(nft: Nft, desired: Ruleset, *, force_full: bool = False) -> SyncResult:
    """Read the live table and apply the difference; ``force_full`` replaces the table anyway."""
    return apply(
        nft, read_table(nft, desired.family, desired.table), desired, force_full=force_full
    )
