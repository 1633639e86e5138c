"""Helpers shared by test modules (conftest files cannot be imported: their names collide)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
"""The seed's reference files, beside the repository as in CI."""


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command"
    return None


def require_lab() -> None:
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("PEERWALL_REQUIRE_LAB") == "1":
        pytest.fail(f"PEERWALL_REQUIRE_LAB=1 but the lab cannot run: {reason}")
    pytest.skip(f"lab test: {reason} (PEERWALL_REQUIRE_LAB=1 makes this a failure)")
