"""Peerings for the benches' topology generators (``policy_bench.generate`` and
``adversarial.generate``): which clusters peer towards which, and the modes they set. Standard
library only, like ``adversarial``."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any


def directed_modes(
    names: Sequence[str],
    targets_of: Callable[[int, str], set[str]],
    rnd: random.Random,
    modes: Sequence[str],
) -> dict[tuple[str, str], str | None]:
    """(consumer, provider) -> its peering's mode (None: none set) for each cluster ``i`` towards
    ``targets_of(i, name)``; about 30% of links set a mode, the same in both directions."""
    directed: dict[tuple[str, str], str | None] = {}
    for i, name in enumerate(names):
        for t in sorted(targets_of(i, name)):
            if (name, t) in directed:
                continue
            mode = directed.get((t, name))
            if mode is None and rnd.random() < 0.3:
                mode = rnd.choice(modes)
                if (t, name) in directed:
                    directed[(t, name)] = mode  # both directions agree
            directed[(name, t)] = mode
    return directed


def peerings_of(
    directed: dict[tuple[str, str], str | None], names: Sequence[str]
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The topology's ``peerings`` and each cluster's providers."""
    peerings = []
    providers: dict[str, list[str]] = {n: [] for n in names}
    for (consumer, provider), mode in directed.items():
        p: dict[str, Any] = {"consumer": consumer, "provider": provider}
        if mode is not None:
            p["securityMode"] = mode
        peerings.append(p)
        providers[consumer].append(provider)
    return peerings, providers
