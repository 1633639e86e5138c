"""Typed settings for the shell (lab, probe). Every field says its unit and default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabSettings:
    pod_port: int = 8080
    """TCP port every emulated pod, Internet host and API server listens on."""
    service_port: int = 80
    """TCP port of every emulated service's ClusterIP; DNAT forwards it to ``pod_port``."""
    state_dir: str = "/run/peerwall/labs"
    """Where ``lab up`` records the topology of each running lab (tmpfs: gone at reboot)."""


@dataclass(frozen=True)
class ProbeSettings:
    timeout: float = 1.0
    """Seconds a connection attempt may take before the cell counts as blocked."""
    concurrency: int = 2000
    """Connection attempts in flight at once."""
    source_port_base: int = 20000
    """First client port the prober binds; the lab picks service backends by its low bits."""
