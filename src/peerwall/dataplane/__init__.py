"""The imperative shell over nftables: apply rulesets atomically, read them back, detect drift,
and clear the conntrack entries of flows a change forbids."""

from peerwall.dataplane.apply import SyncResult, apply, sync
from peerwall.dataplane.drift import Drift, drift
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table
from peerwall.nft.fake import FakeNft

__all__ = [
    "Drift",
    "FakeNft",
    "LibNft",
    "Nft",
    "SyncResult",
    "apply",
    "drift",
    "read_table",
    "sync",
]
