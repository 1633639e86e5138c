"""Bring the live table to the desired ruleset in one atomic transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass

from peerwall.compile.diff import diff
from peerwall.compile.ruleset import Ruleset
from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError


@dataclass(frozen=True)
class Outcome:
    """One sync: whether it replaced the table, elements added/removed, wall time in seconds,
    and whether a transaction was committed at all."""

    full: bool
    added: int
    removed: int
    seconds: float
    changed: bool


def sync(nft: Nft, desired: Ruleset, *, force_full: bool = False) -> Outcome:
    """Read the live table and apply the difference; ``force_full`` replaces the table anyway.

    An element-only transaction that the kernel refuses (the live table is not what it read back
    as, e.g. a set size or flag peerwall does not model) is retried once as a full replace. A
    refused full replace raises ``NftError``; the kernel then still holds the previous ruleset.
    """
    start = time.perf_counter()
    live = read_table(nft, desired.family, desired.table)
    tx = diff(live, desired, force_full=force_full)
    if tx.empty:
        return Outcome(False, 0, 0, time.perf_counter() - start, changed=False)
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
                f"element update refused ({first}); full replace refused too: {second}"
            ) from second
    return Outcome(tx.full, tx.added, tx.removed, time.perf_counter() - start, changed=True)
