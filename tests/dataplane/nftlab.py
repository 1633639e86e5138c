"""Helpers for the dataplane tests (a module of its own: test files cannot import conftest)."""

from __future__ import annotations

import subprocess
from importlib import resources

import pytest

from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.objects import Ruleset

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def sh(*args: str, stdin: str | None = None) -> str:
    """Run a command; return stdout; fail the test with its stderr if it fails."""
    r = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"{' '.join(args)}: rc={r.returncode}: {r.stderr.strip()}")
    return r.stdout


def nft_in(netns: str, *args: str, stdin: str | None = None) -> str:
    """The ``nft`` command inside ``netns``: an independent witness, or an intruder."""
    return sh("ip", "netns", "exec", netns, "nft", *args, stdin=stdin)


def seed_table(cluster: str = "C1", mode: SecurityMode = SEG) -> Ruleset:
    """A real compiled gateway table: the seed's, for ``cluster`` under ``mode``."""
    text = resources.files("peerwall").joinpath("examples/seed.yaml").read_text()
    return build(gateway_state(load_topology(text, "seed.yaml"), cluster, mode))


def three_table(cluster: str = "C1", mode: SecurityMode = SEG) -> Ruleset:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return build(gateway_state(load_topology(text, "three.yaml"), cluster, mode))


def same(a: Ruleset | None, b: Ruleset | None) -> bool:
    """Equal tables, whatever the order nft lists their objects in."""
    if a is None or b is None:
        return a is b
    return (
        {s.name: s for s in a.sets} == {s.name: s for s in b.sets}
        and {m.name: m for m in a.maps} == {m.name: m for m in b.maps}
        and {c.name: c for c in a.chains} == {c.name: c for c in b.chains}
    )
