"""What every fault test needs: the three-cluster lab, a denied and an allowed cell across C3 ->
C1, and witnesses that do not trust the agent (real packets, the kernel's own listing).

Under IntraClusterTrafficSegregation, local3 (in C3) may reach web1 (C1's shop pod, offloaded to
C3) but not tool, whatever the global mode; cache (in C2) reaches tool only under FullPodToPod: ``denied_passes`` is the one question a fault must never answer yes to after
its window, and the allowed flow, opened before the fault, must keep echoing through it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from hostile import ECHO_PORT, connect, roundtrip, tcp_connects
from labkit import LabUp
from peerwall.lab import agents
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology
from peerwall.nsenter import entered
from peerwall.settings import LabSettings

SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD
GATEWAY = "C1"
DENIED = ("local3", "tool")
ALLOWED = ("local3", "web1")
BY_MODE = ("cache", "tool")
"""Open under the global FullPodToPod, closed under segregation (C2 -> C1 follows the global
mode; C1 <-> C3 declares segregation itself)."""


def three_clusters(lab_up: LabUp, mode: SecurityMode = SEG, **overrides: object) -> LabPlan:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return lab_up(load_topology(text, "three-clusters.yaml"), text, mode, **overrides)


def passes(plan: LabPlan, src: str, dst: str, timeout: float = 0.3) -> bool:
    """A new TCP connection from pod ``src`` to pod ``dst`` completes (a real SYN)."""
    t = plan.topology
    s, d = t.pod_by_name[src], t.pod_by_name[dst]
    address = t.addresses.pod_seen_from(d, s.physical)
    return tcp_connects(plan.pod_ns(src), str(address), ECHO_PORT, timeout)


def denied_passes(plan: LabPlan) -> bool:
    return passes(plan, *DENIED)


def by_mode_passes(plan: LabPlan) -> bool:
    return passes(plan, *BY_MODE)


def echoes(sock: socket.socket, payload: bytes) -> bool:
    """The established connection still carries data both ways (not reset, not dropped)."""
    try:
        return roundtrip(sock, payload) == payload
    except OSError:
        return False


def allowed_flow(plan: LabPlan) -> socket.socket:
    sock = connect(plan, *ALLOWED, timeout=1.0)
    assert echoes(sock, b"before"), "the allowed flow does not work before the fault"
    return sock


def until(condition: Callable[[], bool], timeout: float = 30.0, step: float = 0.05) -> float:
    """Wait for ``condition``; return how long it took. Fails the test after ``timeout``: the
    timeout is a bound on a hang, not a measured figure."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g} s: {condition}")
        time.sleep(step)
    return time.monotonic() - started


def agent_status(plan: LabPlan, cluster: str = GATEWAY) -> dict[str, object]:
    return agents.status(plan, LabSettings(), cluster) or {}


def agent_http(plan: LabPlan, path: str, cluster: str = GATEWAY) -> tuple[int, str]:
    """GET the agent's own endpoint inside its gateway namespace."""
    with entered(plan.gateway_ns(cluster)):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:9090{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


def status_json(plan: LabPlan, cluster: str = GATEWAY) -> dict[str, object]:
    code, body = agent_http(plan, "/status", cluster)
    assert code == 200, body
    out: dict[str, object] = json.loads(body)
    return out


@dataclass
class FaultRecord:
    fault: str
    test: str
    seconds: list[float] = field(default_factory=list)
    tries: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    """Figures a fault reports beyond its recovery (the soak's slopes)."""

    def recovered(self, seconds: float) -> None:
        """One try of the fault, recovered (no operator) after ``seconds``."""
        self.tries += 1
        self.seconds.append(seconds)

    def tried(self) -> None:
        """One try of the fault whose recovery has no time of its own (it never opened)."""
        self.tries += 1
