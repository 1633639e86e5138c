"""Fixtures that bring emulated virtual clusters up in namespaces and always take them down."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import LabUp

from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode
from peerwall.model.topology import Topology
from peerwall.settings import LabSettings
from support import REFERENCE


@pytest.fixture
def seed_text() -> str:
    path = REFERENCE / "seed-topology.yaml"
    if not path.exists():
        pytest.fail(f"the seed reference is missing: {path}")
    return path.read_text()


@pytest.fixture
def lab_up(tmp_path: Path) -> Iterator[LabUp]:
    """Bring up labs with unique names; every one is removed at teardown, even after failure."""
    names: list[str] = []
    settings = LabSettings(state_dir=str(tmp_path / "labs"))

    def up(topology: Topology, text: str, mode: SecurityMode) -> LabPlan:
        name = f"t{secrets.token_hex(3)}"
        names.append(name)
        return labs.up(name, topology, text, "test", mode, settings)

    yield up
    for name in names:
        labs.down(name, settings)
