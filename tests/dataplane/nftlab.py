"""Helpers for the dataplane tests (a module of its own: test files cannot import conftest)."""

from __future__ import annotations

import subprocess

import pytest

from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset


def sh(*args: str) -> str:
    """Run a command; return stdout; fail the test with its stderr if it fails."""
    r = subprocess.run(args, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(args)}: rc={r.returncode}: {r.stderr.strip()}")
    return r.stdout


def nft_in(netns: str, *args: str) -> str:
    """The ``nft`` command inside ``netns``: an independent witness, or an intruder."""
    return sh("ip", "netns", "exec", netns, "nft", *args)


def example_ruleset(allow: frozenset[str] = frozenset({"10.244.0.0/16"})) -> Ruleset:
    """The compiler's example gateway table, in nft's canonical form."""
    return Ruleset(
        family="inet",
        table="peerwall",
        sets=(
            NftSet("allow-abc", elements=allow),
            NftSet("api-abc"),
        ),
        chains=(
            Chain(
                "filter-forward",
                (
                    "ct state established,related accept",
                    'iifname vmap { "pwt-abc" : jump peer-abc-C2 }',
                ),
                Hook("filter", "forward", "filter", "accept"),
            ),
            Chain(
                "peer-abc-C2",
                (
                    "ip saddr != 10.0.0.0/16 counter drop",
                    "ip daddr @allow-abc accept",
                    "ip daddr 10.244.255.254 ip saddr @api-abc accept",
                    "counter drop",
                ),
            ),
            Chain(
                "nat-prerouting",
                ('iifname "pwt-abc" ip daddr 10.1.0.0/16 dnat ip prefix to 10.244.0.0/16',),
                Hook("nat", "prerouting", "dstnat", "accept"),
            ),
            Chain(
                "nat-postrouting",
                ('oifname "pwt-abc" ip saddr 10.244.0.0/16 snat ip prefix to 10.0.0.0/16',),
                Hook("nat", "postrouting", "srcnat", "accept"),
            ),
        ),
    )
