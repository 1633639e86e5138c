"""Bring a table to a desired ruleset in one atomic transaction (the lab's gateways, the tests).

A thin door onto ``dataplane.table.GatewayTable.write``, which owns the transaction and its
fallback policy: a refused partial transaction is followed at once by a whole replace.
"""

from __future__ import annotations

from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.dataplane.table import GatewayTable, SyncResult
from peerwall.nft.objects import Ruleset

__all__ = ["SyncResult", "apply", "sync"]


def apply(
    nft: Nft, live: Ruleset | None, desired: Ruleset, *, force_full: bool = False
) -> SyncResult:
    """Apply the difference from ``live`` (what the kernel holds) to ``desired``; a refused
    whole replace raises ``NftError``, the kernel still holding the previous ruleset."""
    return GatewayTable(nft).write(desired, live, force_full=force_full)


def sync(nft: Nft, desired: Ruleset, *, force_full: bool = False) -> SyncResult:
    """Read the live table and apply the difference; ``force_full`` replaces the table anyway."""
    return apply(
        nft, read_table(nft, desired.family, desired.table), desired, force_full=force_full
    )
