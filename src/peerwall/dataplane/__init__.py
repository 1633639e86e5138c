"""The imperative shell over nftables: apply rulesets atomically, read them back, detect drift."""

from peerwall.dataplane.apply import Outcome, sync
from peerwall.dataplane.drift import Drift, drift
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table

__all__ = ["Drift", "LibNft", "Nft", "Outcome", "drift", "read_table", "sync"]
