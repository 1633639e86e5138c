"""The short hash that stands for a cluster's name where names must be short: each peer's
nftables sets (``compile.names``) and the lab's tunnel to it. Two names with one hash would
share those, so validation refuses them (``validate.names``). ``mark_id``, 15 bits of it, names
the peer in its connections' marks (``compile.ctmark``): two peers with one id cannot share a
gateway (``compile.names.clashes``; on Liqo each peer has a gateway of its own, so a topology never
refuses them, only a gateway that would hold both: the lab's simple shape, an agent serving both)."""

from __future__ import annotations

import hashlib
from functools import cache


@cache
def hash8(name: str) -> str:
    """The first 8 hex digits of the SHA-256 of ``name`` (cached: per-peer names are computed on
    every element event)."""
    return hashlib.sha256(name.encode()).hexdigest()[:8]


MARK_ID_BITS = 0x7FFF


def mark_id(name: str) -> int:
    """The peer's 15-bit id in connection marks (``compile.ctmark``): the low 15 bits of
    ``hash8``, never 0."""
    return (int(hash8(name), 16) & MARK_ID_BITS) or 1
