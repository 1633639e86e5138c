"""Dataplane fixtures: ``any_nft`` runs a test on the in-memory fake and on the real kernel."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from peerwall.dataplane.nft import LibNft, Nft
from peerwall.nft.fake import FakeNft
from support import require_lab


@pytest.fixture(params=["fake", "kernel"])
def any_nft(request: pytest.FixtureRequest) -> Iterator[Nft]:
    """The same test on ``FakeNft`` (no root needed) and on libnftables in a fresh namespace."""
    if request.param == "fake":
        yield FakeNft()
        return
    require_lab()
    name = f"pw-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        with LibNft(name) as nft:
            yield nft
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
