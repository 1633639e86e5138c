"""Typed settings for the shell (lab, probe, agent). Every field says its unit and default."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from peerwall.compile.state import API_PORT
from peerwall.errors import Problem, TopologyInvalid
from peerwall.model.describe import quote
from peerwall.model.parse import DEFAULT_MAX_INPUT_BYTES

MAX_INPUT_ENV = "PEERWALL_MAX_INPUT_BYTES"
_max_input_option: int | None = None


def set_max_input_bytes(limit: int | None) -> None:
    """The limit given on the command line (``--max-input-size``; None: not given)."""
    global _max_input_option
    _max_input_option = limit


def max_input_bytes() -> int:
    """The input size limit: ``--max-input-size`` if given, else ``PEERWALL_MAX_INPUT_BYTES`` if
    set, else 128 MiB. Every input is read up to it: topology and values files, standard input,
    and the agent's file source."""
    if _max_input_option is not None:
        return _max_input_option
    raw = os.environ.get(MAX_INPUT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_INPUT_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise TopologyInvalid(
            MAX_INPUT_ENV, [Problem("", f"expected a positive number of bytes, got {quote(raw)}")]
        )
    return limit


MAX_PROBE_TIMEOUT = 60.0
"""Seconds: a longer connection timeout only hides a broken lab."""


@dataclass(frozen=True)
class LabSettings:
    pod_port: int = 8080
    """TCP port every emulated pod and Internet host listens on."""
    service_port: int = 80
    """TCP port of every emulated service's ClusterIP; DNAT forwards it to ``pod_port``."""
    api_port: int = API_PORT
    """TCP port the emulated API servers listen on (the only one the API exception opens)."""
    state_dir: str = field(
        default_factory=lambda: os.environ.get("PEERWALL_STATE_DIR", "/run/peerwall/labs")
    )
    """Where ``lab up`` records each running lab: ``$PEERWALL_STATE_DIR``, else
    ``/run/peerwall/labs`` (tmpfs: gone at reboot)."""
    agents: bool = True
    """Enforce through one agent per gateway (as in production); False: apply tables directly."""
    agent_resync_interval: float = 10.0
    """Seconds between the agents' read-backs that repair drift."""


@dataclass(frozen=True)
class ProbeSettings:
    timeout: float = 1.0
    """Seconds a connection attempt may take before the cell counts as blocked."""
    concurrency: int = 2000
    """Connection attempts in flight at once."""

    def __post_init__(self) -> None:
        t = self.timeout
        if not (isinstance(t, int | float) and math.isfinite(t) and 0 < t <= MAX_PROBE_TIMEOUT):
            raise ValueError(
                f"timeout must be a number of seconds, more than 0 and at most "
                f"{MAX_PROBE_TIMEOUT:g}, got {t!r}"
            )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")
