"""Helpers shared by test modules (conftest files cannot be imported: their names collide)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
"""The seed's reference files, authoritative, beside the repository as in CI."""
REFERENCE_COPY = Path(__file__).resolve().parent / "reference"
"""A copy of the files the tests read, for a clone made elsewhere (checked against the
authoritative ones wherever they are beside the clone)."""
REFERENCE = SHARED_REFERENCE if SHARED_REFERENCE.is_dir() else REFERENCE_COPY


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
