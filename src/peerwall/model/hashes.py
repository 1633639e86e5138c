"""The short hash that stands for a cluster's name where names must be short: each peer's
nftables sets (``compile.names``) and the lab's tunnel to it. Two names with one hash would
share those, so validation refuses them (``validate.names``)."""

from __future__ import annotations

import hashlib
from functools import cache


@cache
def hash8(name: str) -> str:
    """The first 8 hex digits of the SHA-256 of ``name`` (cached: per-peer names are computed on
    every element event)."""
    return hashlib.sha256(name.encode()).hexdigest()[:8]
