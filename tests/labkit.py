"""Helpers for the lab tests."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.model.topology import Topology

LabUp = Callable[..., LabPlan]
"""``lab_up(topology, text, mode, **LabSettings overrides) -> LabPlan``."""


def switch(plan: LabPlan, mode: SecurityMode) -> None:
    """Change the lab's mode through its agents; returns once they enforce it."""
    labs.set_mode(plan.name, mode)


def repair(plan: LabPlan) -> None:
    """Have every agent of the lab read its table back and repair it now."""
    labs.repair(plan.name)


def topology_of(data: dict[str, object]) -> tuple[Topology, str]:
    return topology_from_data(data, "generated"), yaml.safe_dump(data)


def seed_topology(text: str) -> Topology:
    return load_topology(text, "seed-topology.yaml")


def stop_agent(plan: LabPlan, cluster: str) -> None:
    """Stop one gateway's agent (a hostile peer runs none; a control test must not be repaired)."""
    from peerwall.lab import agents
    from peerwall.settings import LabSettings

    agents.stop(plan, LabSettings(), [cluster])
