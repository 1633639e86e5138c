"""The imperative shell over nftables: apply rulesets atomically, read them back, detect drift,
and clear the conntrack entries of flows a change forbids.

``FakeNft`` (the in-memory table, with the nft parser under it) is imported when first used
(PEP 562, ``peerwall.lazy``): an agent, which imports a module of this package, never loads it.
"""

import typing

from peerwall import lazy
from peerwall.dataplane.apply import SyncResult, apply, sync
from peerwall.dataplane.drift import Drift, drift
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table

_EXPORTS = {"FakeNft": "peerwall.nft.fake"}

if typing.TYPE_CHECKING:
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


_load = lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    return _load(name)
