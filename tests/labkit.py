"""Helpers for the lab tests."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.model.topology import Topology

LabUp = Callable[[Topology, str, SecurityMode], LabPlan]


def topology_of(data: dict[str, object]) -> tuple[Topology, str]:
    return topology_from_data(data, "generated"), yaml.safe_dump(data)


def seed_topology(text: str) -> Topology:
    return load_topology(text, "seed-topology.yaml")
