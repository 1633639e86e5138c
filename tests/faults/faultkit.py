"""What every fault test needs: the three-cluster lab, a denied and an allowed cell across C3 ->
C1, and witnesses that do not trust the agent (real packets, the kernel's own listing).

Under IntraClusterTrafficSegregation, local3 (in C3) may reach web1 (C1's shop pod, offloaded to
C3) but not tool, whatever the global mode; cache (in C2) reaches tool only under FullPodToPod: ``denied_passes`` is the one question a fault must never answer yes to after
its window, and the allowed flow, opened before the fault, must keep echoing through it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
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


def agent_pid(plan: LabPlan, cluster: str = GATEWAY) -> int:
    """The pid the agent of ``cluster``'s gateway reports in its status."""
    return int(agent_status(plan, cluster)["pid"])  # type: ignore[call-overload]


def peak_rss(pid: int) -> int:
    """A process's peak resident memory (``VmHWM``), in bytes."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024


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
    probes: int = 0
    """SYNs the background prober sent during the fault (every one checked)."""
    flows: int = 0
    """Allowed established flows kept echoing through the fault."""
    extra: dict[str, object] = field(default_factory=dict)
    """Figures a fault reports beyond its recovery (the soak's slopes)."""
    parts: list[FaultRecord] = field(default_factory=list)
    failed: str | None = None
    """The failure, for a fault that did not hold (the report shows it as such)."""
    load: list[float] = field(default_factory=list)
    """The machine's 1-minute load average when the fault ended (other work shares it)."""

    def recovered(self, seconds: float) -> None:
        """One try of the fault, recovered (no operator) after ``seconds``."""
        self.tries += 1
        self.seconds.append(seconds)

    def part(self, fault: str) -> FaultRecord:
        """A record of its own for one of several faults a test drives in turn (the kinds of
        table edit in one lab); kept only if the whole test passes."""
        child = FaultRecord(fault, self.test, load=self.load)
        self.parts.append(child)
        return child

    def tried(self) -> None:
        """One try of the fault whose recovery has no time of its own (it never opened)."""
        self.tries += 1


# --- The background witness every lab fault runs under (issue 18.7) -------------------------

PROBE_PORT = 7777
"""Nobody listens there: a SYN that gets through is answered by a reset (refused counts as
passed, as ``tcp_connects``), one that is dropped is never answered."""


@dataclass(frozen=True)
class Target:
    source: str
    """A pod."""
    destination: str
    """A pod, or ``gw:<cluster>`` (that cluster's gateway, on its tunnel address)."""
    address: str
    port: int


def cross_cluster_targets(plan: LabPlan) -> list[Target]:
    """Every pod to every pod that runs in another cluster, and every pod to the gateway of each
    peer of the cluster it runs in (on the tunnel address it is reached by)."""
    t = plan.topology
    out = []
    for s in t.pods:
        for d in t.pods:
            seen = t.addresses.pod_seen_from(d, s.physical)
            if d.physical != s.physical and seen is not None:  # None: the clusters are not peered
                out.append(Target(s.name, d.name, str(seen), PROBE_PORT))
        for c in t.clusters:
            if c.name == s.physical:
                continue
            try:
                _, _, theirs = plan.tunnel(s.physical, c.name)
            except Exception:  # not peered: no route to that gateway
                continue
            out.append(Target(s.name, f"gw:{c.name}", str(theirs), PROBE_PORT))
    return out


def denied_cells(plan: LabPlan, mode: SecurityMode) -> frozenset[tuple[str, str]]:
    """The probed cells that ``mode`` denies: the pod pairs the expected table says NO to, and
    every peer gateway (a peer's pod may never open a connection to the gateway itself)."""
    from peerwall.policy import Verdict, expect

    table = expect(plan.topology, mode).table
    out = set()
    for target in cross_cluster_targets(plan):
        if (
            target.destination.startswith("gw:")
            or table[target.source, target.destination] is Verdict.NO
        ):
            out.add((target.source, target.destination))
    return frozenset(out)


def allowed_pairs(plan: LabPlan, count: int = 3) -> list[tuple[str, str]]:
    """``count`` cross-cluster pod pairs allowed in both modes, ``ALLOWED`` first, then one per
    further source where possible."""
    from peerwall.policy import Verdict, expect

    tables = [expect(plan.topology, m).table for m in (SEG, FULL)]
    pairs = [ALLOWED]
    for target in cross_cluster_targets(plan):
        pair = (target.source, target.destination)
        if target.destination.startswith("gw:") or pair in pairs:
            continue
        fresh_source = all(p[0] != pair[0] for p in pairs)
        if fresh_source and all(t[pair] is Verdict.YES for t in tables):
            pairs.append(pair)
        if len(pairs) >= count:
            break
    return pairs[:count]


class Watch:
    """A prober and allowed established flows, running in the background of a fault.

    Every 0.25–0.5 s a round sends one SYN to every target of ``cross_cluster_targets`` (all at
    once, non-blocking) and waits up to 0.25 s for the answers; each round also sends a few bytes
    on each allowed flow and expects them back. What counts as *denied* changes with the test:
    ``changing(mode)`` while a mode change is under way (only what both modes deny), then what the
    new mode denies once the block ends (the test ends it when the agents report convergence);
    ``window()`` for a fault that opens the gateway by design until it is repaired (the
    dormant-table control). ``check()`` asserts that no probe sent outside a window passed a
    denied cell and that no allowed flow was cut, and returns the figures for the record.
    """

    def __init__(self, plan: LabPlan, mode: SecurityMode) -> None:
        import random
        import threading

        self.plan = plan
        self.mode = mode
        self.targets = cross_cluster_targets(plan)
        self._denied: dict[SecurityMode, frozenset[tuple[str, str]]] = {}
        self.timeline: list[tuple[float, frozenset[tuple[str, str]]]] = [
            (time.monotonic(), self.denied(mode))
        ]
        self.rounds = 0
        self.opened: list[tuple[float, str, str]] = []
        self.lost: list[tuple[str, str, str]] = []
        self.flows: list[tuple[tuple[str, str], socket.socket]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._random = random.Random()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._servers = contextlib.ExitStack()

    def denied(self, mode: SecurityMode) -> frozenset[tuple[str, str]]:
        if mode not in self._denied:
            self._denied[mode] = denied_cells(self.plan, mode)
        return self._denied[mode]

    def __enter__(self) -> Watch:
        from hostile import echo_server

        # Listeners only where the flows go (``ALLOWED``'s too, for the tests' own flow): a probe
        # goes to a port nobody listens on, so that it costs no connection on either side.
        pairs = allowed_pairs(self.plan)
        for pod in sorted({d for _, d in pairs} | {ALLOWED[1]}):
            self._servers.enter_context(echo_server(self.plan.pod_ns(pod)))
        for pair in pairs:
            sock = connect(self.plan, *pair, timeout=2.0)
            assert echoes(sock, b"before"), f"the allowed flow {pair} does not work"
            self.flows.append((pair, sock))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for _, sock in self.flows:
            sock.close()
        self._servers.close()

    @contextlib.contextmanager
    def changing(self, mode: SecurityMode) -> Iterator[None]:
        """A change to ``mode`` is under way for the block; the block ends once it is enforced."""
        self.timeline.append((time.monotonic(), self.denied(self.mode) & self.denied(mode)))
        yield
        self.mode = mode
        self.timeline.append((time.monotonic(), self.denied(mode)))

    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        """The fault's documented window: anything may pass until the block ends."""
        self.timeline.append((time.monotonic(), frozenset()))
        yield
        self.timeline.append((time.monotonic(), self.denied(self.mode)))

    def _denied_at(self, when: float) -> frozenset[tuple[str, str]]:
        current = self.timeline[0][1]
        for start, cells in list(self.timeline):
            if start > when:
                break
            current = cells
        return current

    def _run(self) -> None:
        try:
            self._rounds()
        except BaseException as e:  # reported by check(): a witness that died proves nothing
            self.error = e

    def _rounds(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            # A cell counts as opened only if it was denied both just before its SYN left and
            # just after: a round's 44 sockets are made one by one (a namespace switch each), so
            # under load its last SYNs leave well after the round began, possibly after a change
            # began (that attribution by round start raised false alarms on widenings).
            for s, d, before, after in self._probe_round():
                if (s, d) in self._denied_at(before) and (s, d) in self._denied_at(after):
                    self.opened.append((before, s, d))
            self._echo_round()
            self.rounds += 1
            self._stop.wait(
                max(0.0, 0.25 + self._random.random() * 0.25 - (time.monotonic() - started))
            )

    def _probe_round(self) -> list[tuple[str, str, float, float]]:
        import errno
        import select

        from peerwall.nsenter import kept_open

        pending: dict[int, tuple[socket.socket, Target]] = {}
        sent: dict[int, tuple[float, float]] = {}
        with kept_open():
            for target in self.targets:
                with entered(self.plan.pod_ns(target.source)):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                before = time.monotonic()
                sock.connect_ex((target.address, target.port))  # the SYN leaves here
                sent[sock.fileno()] = (before, time.monotonic())
                pending[sock.fileno()] = (sock, target)
        passed = []
        deadline = time.monotonic() + 0.25
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLOUT)
        waiting = set(pending)
        while waiting and time.monotonic() < deadline:
            for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                if fd not in waiting:
                    continue
                waiting.discard(fd)
                poller.unregister(fd)
                sock, target = pending[fd]
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err in (0, errno.ECONNREFUSED):
                    passed.append((target.source, target.destination, *sent[fd]))
        for sock, _ in pending.values():
            sock.close()
        return passed

    def _echo_round(self) -> None:
        for pair, sock in self.flows:
            if any(p == pair for p, _, _ in self.lost):
                continue
            payload = b"r%d" % self.rounds
            if not echoes(sock, payload):
                self.lost.append((pair, time.strftime("%H:%M:%S"), f"round {self.rounds}"))

    def check(self, record: FaultRecord | None = None) -> None:
        """Stop, then assert what the fault suite promises; add the witness's figures to
        ``record``."""
        self.__exit__()
        if record is not None:
            record.probes += self.rounds * len(self.targets)
            record.flows += len(self.flows)
        assert self.error is None, f"the prober failed: {self.error!r}"
        assert self.rounds >= 2, f"the prober ran only {self.rounds} rounds"
        t0 = self.timeline[0][0]
        opened = [f"{s} -> {d} at +{t - t0:.2f} s" for t, s, d in self.opened]
        assert not opened, f"denied cells passed after the fault's window: {opened[:10]}"
        assert not self.lost, f"allowed established flows cut: {self.lost}"
