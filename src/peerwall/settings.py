"""Typed settings for the shell (lab, probe, agent), in one place. Every field says its unit and
default.

This module is imported by the prober, which sits below the agent, so it imports only the pure
core and ``peerwall.liqo`` (Liqo's names, whence ``KubeSettings`` takes its defaults), never the
agent.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from peerwall import liqo
from peerwall.compile.state import API_PORT, RING_SIZE, ApiServer
from peerwall.errors import Problem, TopologyInvalid
from peerwall.model.describe import quote
from peerwall.model.modes import SecurityMode
from peerwall.model.parse import DEFAULT_MAX_INPUT_BYTES
from peerwall.model.reflection import ReflectionPolicy

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
    """Seconds a connection attempt may take before it is retried (see ``confirm``)."""
    concurrency: int = 2000
    """Connection attempts in flight at once."""
    confirm: float | None = None
    """Seconds the retry of an unanswered attempt gets (silence, no identity line in time, no
    neighbour) before the target counts as blocked; default ``timeout`` again. Under CPU load an
    answer can come late, or a first packet be lost (a neighbour table full): only a silence
    that lasts through a second attempt on a fresh SYN is a block. Every run with a denied cell
    waits ``timeout + confirm``."""

    def __post_init__(self) -> None:
        for name in ("timeout", "confirm"):
            t = getattr(self, name)
            if name == "confirm" and t is None:
                continue
            if not (isinstance(t, int | float) and math.isfinite(t) and 0 < t <= MAX_PROBE_TIMEOUT):
                raise ValueError(
                    f"{name} must be a number of seconds, more than 0 and at most "
                    f"{MAX_PROBE_TIMEOUT:g}, got {t!r}"
                )
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")

    @property
    def confirm_timeout(self) -> float:
        """``confirm``, or its default: ``timeout``."""
        return self.confirm if self.confirm is not None else self.timeout


@dataclass(frozen=True)
class EndpointSettings:
    max_connections: int = 4096
    """Connections held at once; the oldest one still sending its request makes room."""
    evict_after: float = 1.0
    """Seconds a connection may send its request before it can be closed to make room."""
    request_timeout: float = 5.0
    """Seconds a connection has to send its whole request head."""
    write_timeout: float = 5.0
    """Seconds a connection has to take its answer."""
    max_request_bytes: int = 8192
    """Size of a request head beyond which the request is refused."""
    max_age: float = 1.0
    """Seconds a slow route's answer is served again before it is computed anew."""


@dataclass(frozen=True)
class AgentSettings:
    resync_interval: float = 10.0
    """Seconds between read-backs of the live table (drift repair)."""
    coalesce: float = 0.0
    """Seconds to wait after a first event for others to join its transaction. 0: none, beyond
    the events already queued (those that came during the previous transaction) and a burst
    (``burst_window``)."""
    burst_window: float = 0.002
    """When another event comes in the loop's next turn (a burst), the transaction waits at
    most this many seconds for the rest of the burst (until a quarter of it passes without an
    event); a lone event does not wait."""
    metrics_address: str | None = "0.0.0.0:9090"
    """``host:port`` of /metrics, /healthz, /readyz, /status; None: no HTTP endpoint."""
    endpoint: EndpointSettings = EndpointSettings()
    """Limits of the HTTP endpoint (connections, timeouts, how long a scrape is reused)."""
    status_file: str | None = None
    """Where to write a JSON status after every step (the lab waits on it)."""
    flows_ring: int = RING_SIZE
    """Explained drops ``/flows`` keeps (the newest)."""
    flow_lines: bool = True
    """Write each explained drop to the log (stderr) as a JSON line."""
    element_writer: bool = True
    """Send the element batches of bursts from a process of the agent's own
    (``dataplane.element_writer``: the kernel's share of them then runs beside the loop, not in
    it), when the table is written through libnftables; False: from the agent's process."""


@dataclass(frozen=True)
class KubeSettings:
    """The Kubernetes source's settings; their defaults are Liqo's (``peerwall.liqo``)."""

    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD
    """The chart's ``networking.securityMode``: the mode of a peering without PeeringSecurity."""
    default_audit: bool = False
    """The chart's ``networking.securityAudit``: for a peering whose PeeringSecurity does not say."""
    peer: str | None = None
    """Sidecar mode: the one peer this gateway serves (its cluster ID); None: every peer."""
    liqo_namespace: str = "liqo"
    tunnel: Callable[[str], str] = field(default=lambda _peer: liqo.TUNNEL)
    """Interface of each peer's tunnel. A Liqo gateway pod has one peer, on ``liqo-tunnel``; a
    gateway serving several peers needs one name per peer."""
    api_server: ApiServer | None = None
    """The API server as peers reach it, if not the ``api-server`` IP of Liqo's IPAM on
    ``api_port`` (for ``--home-api-server-host``/``-port`` setups)."""
    api_port: int = liqo.API_SERVER_PORT
    pod_cidrs: tuple[IPv4Network, ...] | None = None
    """The local pod CIDRs, if not Liqo's ``pod-cidr`` Networks."""
    reflection: ReflectionPolicy = ReflectionPolicy.DENY_LIST
    """The policy of a provider whose VkOptionsTemplate is not found (the virtual kubelet's own
    default); where the template exists, its policy is used."""

    def serves(self, peer: str | None) -> bool:
        """Whether this gateway enforces for ``peer``: every peer, or the one of sidecar mode."""
        return peer is not None and (self.peer is None or peer == self.peer)
