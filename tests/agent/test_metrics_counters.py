"""Drop counters at scrape come from one listing without elements (libnftables' terse ``list
ruleset``), equal to what the per-chain listings read: on the kernel, with counters that are not
zero, and a set large enough that fetching its elements would show."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address

import pytest

from peerwall.agent.metrics import LiveCollector
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.dataplane.nft import LibNft
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.objects import render_replace

pytestmark = pytest.mark.lab


class PerChain:
    """``LibNft`` through ``list_json`` alone: the collector's per-chain listings, as it reads
    counters when the terse listing fails (``_counters(peer, None)``)."""

    def __init__(self, nft: LibNft) -> None:
        self.nft = nft

    def list_json(self, command: str):  # type: ignore[no-untyped-def]
        return self.nft.list_json(command)


def test_scrape_counters_from_the_terse_listing_equal_the_per_chain_listings(
    nft: LibNft,
) -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(load_topology(text, "three"), "C1", SecurityMode.FULL_POD_TO_POD)
    c2 = state.peers["C2"]
    members = {SetKind.OFFLOADED: frozenset(IPv4Address(0x0AFA0000 + i) for i in range(20_000))}
    state = replace(state, peers={**state.peers, "C2": replace(c2, members=members)})
    # Every counter of the table starts at a different, non-zero count.
    n = iter(range(1, 10_000))
    script = re.sub(
        r"\bcounter\b", lambda _: f"counter packets {next(n)} bytes {100 * next(n)}",
        render_replace(build(state)),
    )  # fmt: skip
    nft.run(script)
    terse = LiveCollector(nft)
    per_chain = LiveCollector(PerChain(nft))  # type: ignore[arg-type]
    rules = terse._rules()
    assert rules is not None and names.peer_chain("C2") in rules
    for peer in state.peers:
        got = terse._counters(peer, rules)
        assert got == per_chain._counters(peer, None)
        assert got and all(packets > 0 and octets > 0 for packets, octets in got.values())
