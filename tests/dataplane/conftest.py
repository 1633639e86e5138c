"""Fixtures for tests on a real kernel: throwaway ``pw-t-*`` namespaces and libnftables contexts.

Tests marked ``lab`` need root. Without it they are skipped, unless ``PEERWALL_REQUIRE_LAB=1``
(CI on a lab machine), where a skip would hide a missing environment: then they fail.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator

import pytest
from nftlab import example_ruleset, lab_unavailable, sh

from peerwall.compile.ruleset import Ruleset
from peerwall.dataplane.nft import LibNft


def require_lab() -> None:
    """Skip (or, with ``PEERWALL_REQUIRE_LAB=1``, fail) the test if the lab is unavailable."""
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("PEERWALL_REQUIRE_LAB") == "1":
        pytest.fail(f"PEERWALL_REQUIRE_LAB=1 but the lab is unavailable: {reason}")
    pytest.skip(f"lab test: {reason}; run as root (PEERWALL_REQUIRE_LAB=1 makes this fail)")


@pytest.fixture(autouse=True)
def _lab_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab") is not None:
        require_lab()


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace ``pw-t-<random>``, deleted afterwards whatever happens."""
    require_lab()
    name = f"pw-t-{secrets.token_hex(4)}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def nft(netns: str) -> Iterator[LibNft]:
    with LibNft(netns) as ctx:
        yield ctx


@pytest.fixture
def example() -> Ruleset:
    return example_ruleset()
