"""The prober's own logic, without a lab: what each answer means, how source ports are laid out
so that a service's DNAT reaches every backend, and the open-file budget."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address

import pytest

from peerwall.lab.kube import next_power_of_two
from peerwall.model import topology_from_data
from peerwall.policy import Verdict
from peerwall.probe.netns_prober import Listener, Outcome, Probe, ProbeResult
from peerwall.probe.runner import FD_MARGIN, PORT_HIGH, PORT_LOW, Reproducers, _reach, dials_for
from peerwall.settings import MAX_PROBE_TIMEOUT, ProbeSettings
from peerwall.verify.cells import CellSpec, Target, cell_specs
from peerwall.verify.observe import Reach, TargetResult, cell_verdict


class FakeSite:
    def __init__(self) -> None:
        self.next = PORT_LOW

    def netns(self, pod: str) -> str:
        return f"ns-{pod}"

    def listeners(self) -> list[Listener]:
        return []

    def service_address(self, service: str, cluster: str) -> tuple[IPv4Address, int]:
        return IPv4Address("10.96.0.1"), 80

    def internet_address(self, cluster: str) -> IPv4Address | None:
        return IPv4Address("203.0.113.1")

    def backend_span(self, backends: int) -> int:
        return next_power_of_two(backends)

    def port_window(self, size: int) -> int:
        base, self.next = self.next, self.next + size
        return base


def result(outcome: Outcome, identity: str | None = None) -> ProbeResult:
    return ProbeResult(Probe("ns", "10.0.0.1", 80), outcome, identity, "", 0.0)


T1 = Target("p1", "pod", "C1", IPv4Address("10.0.0.1"), 8080, "s", 0)
T2 = Target("p2", "pod", "C1", IPv4Address("10.0.0.2"), 8080, "s", 1)


def test_answers_mean_what_they_say() -> None:
    assert _reach(T1, result(Outcome.CONNECTED, "p1")).reach is Reach.REACHED
    assert _reach(T1, result(Outcome.CONNECTED, "p9")).reach is Reach.MISDIRECTED
    assert _reach(T1, result(Outcome.CONNECTED)).reach is Reach.MISDIRECTED
    assert _reach(T1, result(Outcome.BLOCKED)).reach is Reach.BLOCKED
    assert _reach(T1, result(Outcome.UNREACHABLE)).reach is Reach.BLOCKED
    assert _reach(T1, result(Outcome.REFUSED)).reach is Reach.ERROR
    assert _reach(None, result(Outcome.CONNECTED, "p1")).reach is Reach.MISDIRECTED


def test_cell_verdicts() -> None:
    cell = CellSpec("a", "s", (T1, T2))
    ok, blocked = TargetResult(T1, Reach.REACHED), TargetResult(T2, Reach.BLOCKED)
    assert cell_verdict(cell, [ok, blocked]) is Verdict.PARTIAL
    assert cell_verdict(cell, [ok, TargetResult(T2, Reach.REACHED)]) is Verdict.YES
    assert cell_verdict(cell, [TargetResult(T1, Reach.BLOCKED), blocked]) is Verdict.NO
    # Someone else answering, or an error, establishes nothing: never YES, never NO.
    assert cell_verdict(cell, [ok, TargetResult(T2, Reach.MISDIRECTED)]) is Verdict.ERROR
    assert cell_verdict(cell, [ok]) is Verdict.ERROR  # a target with no result
    silent = CellSpec("a", "s0", (), "no backends", "s0")
    assert cell_verdict(silent, [TargetResult(None, Reach.BLOCKED)]) is Verdict.NO
    assert cell_verdict(silent, [TargetResult(None, Reach.MISDIRECTED)]) is Verdict.ERROR


def topology(backends: int, services: int = 2) -> dict[str, object]:
    pods = [{"name": f"b{i}", "cluster": "C1", "labels": {"app": "x"}} for i in range(backends)]
    pods.append({"name": "client", "cluster": "C1"})
    svcs = [{"name": f"s{j}", "cluster": "C1", "selector": {"app": "x"}} for j in range(services)]
    svcs.append({"name": "empty", "cluster": "C1", "selector": {"app": "none"}})
    return {"clusters": [{"name": "C1", "podCIDR": "10.1.0.0/16"}], "pods": pods, "services": svcs}


@pytest.mark.parametrize("backends", [1, 2, 33, 75, 200])
def test_each_probe_of_a_service_selects_its_own_backend(backends: int) -> None:
    t = topology_from_data(topology(backends), "t")
    cells = [c for c in cell_specs(t) if c.source == "client"]
    dials = dials_for(cells, FakeSite(), {"client": "C1"})
    ports = [d.probe.source_port for d in dials]
    assert len(ports) == len(set(ports))  # one client port per probe of the source
    assert all(p is not None and PORT_LOW <= p < PORT_HIGH for p in ports)
    span = next_power_of_two(backends)
    for service in ("s0", "s1"):
        mine = [d for d in dials if d.target is not None and d.target.service == service]
        assert len(mine) == backends
        # The lab's DNAT picks backend (sport & (span-1)) % backends: exactly the target's.
        for d in mine:
            assert d.target is not None and d.probe.source_port is not None
            assert (d.probe.source_port & (span - 1)) % backends == d.target.index
    # The service without backends is dialled once, expecting silence.
    assert [
        d.target
        for d in dials
        if d.cell == cells.index(next(c for c in cells if c.destination == "empty"))
    ] == [None]


def test_consecutive_runs_use_new_ports() -> None:
    t = topology_from_data(topology(3), "t")
    site = FakeSite()
    cells = cell_specs(t)
    clusters = {p.name: "C1" for p in t.pods}
    first = {d.probe.source_port for d in dials_for(cells, site, clusters)}
    second = {d.probe.source_port for d in dials_for(cells, site, clusters)}
    assert not first & second


def test_concurrency_is_capped_by_the_open_file_limit() -> None:
    # In a child process: a lowered hard limit cannot be raised back.
    code = f"""
import resource
from peerwall.probe.runner import fd_budget
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))
assert fd_budget(listeners=100, wanted=2000) == 512 - 100 - {FD_MARGIN}
assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 512
assert fd_budget(listeners=10, wanted=50) == 50
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_retry_of_an_unanswered_probe_waits_the_timeout_again_unless_told() -> None:
    assert ProbeSettings(timeout=0.5).confirm_timeout == 0.5
    assert ProbeSettings().confirm_timeout == ProbeSettings().timeout == 1.0
    assert ProbeSettings(timeout=0.5, confirm=3).confirm_timeout == 3
    assert ProbeSettings(timeout=MAX_PROBE_TIMEOUT).confirm_timeout == MAX_PROBE_TIMEOUT
    with pytest.raises(ValueError, match="confirm must be a number of seconds"):
        ProbeSettings(confirm=0)


def test_reproducers_written_when_read_are_the_probes_commands() -> None:
    probes = tuple(Probe(f"pw-x-pod-{i}", f"10.96.0.{i}", 80, 10000 + i) for i in range(4))
    commands = tuple(p.reproducer(0.5) for p in probes)
    lazy = Reproducers(probes, 0.5)
    assert lazy == commands and list(lazy) == list(commands) and len(lazy) == 4
    assert lazy[-1] == commands[-1] and lazy[1:3] == commands[1:3]
    assert hash(lazy) == hash(commands) and repr(lazy) == repr(commands)
    assert lazy != commands[:3] and lazy != Reproducers(probes, 1.0)
    assert not Reproducers((), 0.5) and Reproducers((), 0.5) == ()
