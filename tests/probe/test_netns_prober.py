"""The namespace prober against real namespaces and real packets.

Topology (built per module, removed in the fixture's finalizer, nothing in the root namespace)::

    pod a  10.71.1.2 --- 10.71.1.1  router  10.71.2.1 --- 10.71.2.2  pod b
                                     |  unreachable 10.71.9.0/24 (a route: ICMP ~1/s)
                                     |  nft: drop forward to 10.71.2.2:81
                                     |  nft: reject 10.71.8.0/24 with ICMP, unlimited
    pod b counts packets from source port 61234 to port 80 (nft named counter).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from peerwall import nsenter
from peerwall.errors import LabError
from peerwall.model.parse import gc_paused
from peerwall.probe.netns_prober import (
    Listener,
    ListenerSet,
    Outcome,
    Probe,
    ProbeResult,
    run_probes,
)
from support import require_lab

A_IP, B_IP, ROUTER_A_IP = "10.71.1.2", "10.71.2.2", "10.71.1.1"
UNREACHABLE_IP = "10.71.9.9"  # an `unreachable` route in the router
REJECTED_NET = "10.71.8"  # routed on to b, but the router rejects it with ICMP host-unreachable
NO_ROUTE_IP = "192.0.2.1"  # the router has no route (and no default) for it
DROPPED_PORT = 81  # the router drops SYNs to b on this port
SOURCE_PORT = 61234  # above the default ephemeral range, so only a bound probe uses it


@dataclass(frozen=True)
class Lab:
    router: str
    a: str
    b: str

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.router, self.a, self.b)


def _run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def _build(lab: Lab) -> None:
    _run("ip", "-batch", "-", stdin="".join(f"netns add {ns}\n" for ns in lab.names))
    _run(
        "ip", "-n", lab.router, "-batch", "-",
        stdin=f"""\
link set lo up
link add name to-a type veth peer name eth0 netns {lab.a}
link add name to-b type veth peer name eth0 netns {lab.b}
addr add {ROUTER_A_IP}/24 dev to-a
addr add 10.71.2.1/24 dev to-b
link set to-a up
link set to-b up
route add unreachable 10.71.9.0/24
route add {REJECTED_NET}.0/24 via 10.71.2.2
""",
    )  # fmt: skip
    for ns, ip, gateway in ((lab.a, A_IP, ROUTER_A_IP), (lab.b, B_IP, "10.71.2.1")):
        _run(
            "ip", "-n", ns, "-batch", "-",
            stdin=f"""\
link set lo up
link set eth0 up
addr add {ip}/24 dev eth0
route add default via {gateway}
""",
        )  # fmt: skip
    # ICMP errors are rate-limited per namespace by default: a run with many UNREACHABLE
    # probes would see most of them as BLOCKED.
    _sysctl(
        lab.router,
        {
            "ipv4/ip_forward": 1,
            "ipv4/icmp_ratelimit": 0,
            "ipv4/icmp_msgs_per_sec": 1_000_000,
            "ipv4/icmp_msgs_burst": 1_000_000,
        },
    )
    _nft(
        lab.router,
        f"""\
table inet pwtest {{
    chain forward {{
        type filter hook forward priority 0
        ip daddr {B_IP} tcp dport {DROPPED_PORT} drop
        ip daddr {REJECTED_NET}.0/24 reject with icmp type host-unreachable
    }}
}}
""",
    )
    _nft(
        lab.b,
        f"""\
table inet pwtest {{
    counter bound {{ }}
    chain input {{
        type filter hook input priority 0
        tcp sport {SOURCE_PORT} tcp dport 80 counter name "bound"
    }}
}}
""",
    )


def _sysctl(ns: str, values: dict[str, int]) -> None:
    # /proc/sys/net shows the namespace of the thread that opens it: no sysctl binary needed.
    with nsenter.entered(ns):
        for key, value in values.items():
            with open(f"/proc/sys/net/{key}", "w") as f:
                f.write(str(value))


def _nft(ns: str, script: str) -> str:
    return _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=script)


def _bound_packets(lab: Lab) -> int:
    argv = ("ip", "netns", "exec", lab.b, "nft", "-j", "list", "counter", "inet", "pwtest", "bound")
    out = _run(*argv)
    for item in json.loads(out)["nftables"]:
        if "counter" in item:
            return int(item["counter"]["packets"])
    raise AssertionError(f"no counter in {out}")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab()
    tag = secrets.token_hex(3)
    lab = Lab(router=f"pw-t-{tag}-r", a=f"pw-t-{tag}-a", b=f"pw-t-{tag}-b")
    try:
        _build(lab)
        yield lab
    finally:
        # Deleting a namespace also deletes the veth ends inside it.
        for ns in lab.names:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)


def _listeners(lab: Lab) -> list[Listener]:
    return [
        Listener(lab.a, 80, "pod-a"),
        Listener(lab.b, 80, "pod-b"),
        Listener(lab.b, DROPPED_PORT, "pod-b-81"),
        Listener(lab.router, 80, "router"),
    ]


def _probe_with(
    lab: Lab, probes: list[Probe], timeout: float = 1.0, concurrency: int = 2000
) -> list[ProbeResult]:
    async def main() -> list[ProbeResult]:
        async with ListenerSet(_listeners(lab)):
            return await run_probes(probes, timeout=timeout, concurrency=concurrency)

    return asyncio.run(main())


@pytest.mark.lab
def test_connected_reports_the_listeners_identity(lab: Lab) -> None:
    a_to_b, b_to_a, a_to_router = _probe_with(
        lab, [Probe(lab.a, B_IP, 80), Probe(lab.b, A_IP, 80), Probe(lab.a, ROUTER_A_IP, 80)]
    )
    assert (a_to_b.outcome, a_to_b.identity) == (Outcome.CONNECTED, "pod-b")
    assert (b_to_a.outcome, b_to_a.identity) == (Outcome.CONNECTED, "pod-a")
    assert (a_to_router.outcome, a_to_router.identity) == (Outcome.CONNECTED, "router")


@pytest.mark.lab
def test_a_handshake_without_identity_line_is_still_connected(lab: Lab) -> None:
    # A bare listening socket: the kernel completes handshakes, nobody ever writes.
    with nsenter.entered(lab.b):
        silent = socket.socket()
    with silent:
        silent.bind(("0.0.0.0", 9000))
        silent.listen(8)
        (result,) = _probe_with(lab, [Probe(lab.a, B_IP, 9000)], timeout=0.3)
    assert (result.outcome, result.identity) == (Outcome.CONNECTED, None), result
    assert "no identity line" in result.detail


@pytest.mark.lab
def test_dropped_syn_is_blocked_after_the_timeout(lab: Lab) -> None:
    (dropped,) = _probe_with(lab, [Probe(lab.a, B_IP, DROPPED_PORT)], timeout=0.3)
    assert dropped.outcome is Outcome.BLOCKED, dropped
    assert dropped.identity is None
    assert dropped.seconds >= 0.25  # blocked means: silent for the whole timeout
    # The listener is there: only the path is closed.
    (direct,) = _probe_with(lab, [Probe(lab.router, B_IP, DROPPED_PORT)], timeout=0.3)
    assert (direct.outcome, direct.identity) == (Outcome.CONNECTED, "pod-b-81")


@pytest.mark.lab
def test_nothing_listening_is_refused(lab: Lab) -> None:
    (refused,) = _probe_with(lab, [Probe(lab.a, B_IP, 82)])
    assert refused.outcome is Outcome.REFUSED, refused
    assert "ECONNREFUSED" in refused.detail


@pytest.mark.lab
def test_icmp_unreachable_and_missing_route_are_unreachable(lab: Lab) -> None:
    by_icmp, no_route = _probe_with(
        lab, [Probe(lab.a, UNREACHABLE_IP, 80), Probe(lab.router, NO_ROUTE_IP, 80)]
    )
    assert by_icmp.outcome is Outcome.UNREACHABLE, by_icmp
    assert "EHOSTUNREACH" in by_icmp.detail
    assert no_route.outcome is Outcome.UNREACHABLE, no_route
    assert "ENETUNREACH" in no_route.detail


@pytest.mark.lab
def test_many_icmp_rejects_in_one_run_are_all_unreachable(lab: Lab) -> None:
    results = _probe_with(
        lab, [Probe(lab.a, f"{REJECTED_NET}.{i % 250 + 1}", 80) for i in range(500)]
    )
    assert {r.outcome for r in results} == {Outcome.UNREACHABLE}, results[0]


@pytest.mark.lab
def test_source_port_is_used_and_reusable_at_once(lab: Lab) -> None:
    before = _bound_packets(lab)
    (unbound,) = _probe_with(lab, [Probe(lab.a, B_IP, 80)])
    assert unbound.outcome is Outcome.CONNECTED
    assert _bound_packets(lab) == before

    bound = Probe(lab.a, B_IP, 80, source_port=SOURCE_PORT)
    # Two runs with the same 4-tuple back to back: the abortive close left no TIME_WAIT.
    for _ in range(2):
        (result,) = _probe_with(lab, [bound])
        assert (result.outcome, result.identity) == (Outcome.CONNECTED, "pod-b"), result
    assert _bound_packets(lab) > before


@pytest.mark.lab
def test_no_connection_lingers_after_a_run(lab: Lab) -> None:
    results = _probe_with(lab, [Probe(lab.a, B_IP, 80)] * 50)
    assert all(r.outcome is Outcome.CONNECTED for r in results)
    for ns in (lab.a, lab.b):
        deadline = time.monotonic() + 2.0
        while (left := _run("ip", "netns", "exec", ns, "ss", "-Htan", "state", "all")).count(
            f"{B_IP}:80"
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "TIME-WAIT" not in left and "FIN-WAIT" not in left, left


@pytest.mark.lab
def test_missing_namespace_is_an_error_not_a_crash(lab: Lab) -> None:
    missing = f"{lab.a}-missing"
    gone, fine = _probe_with(lab, [Probe(missing, B_IP, 80), Probe(lab.a, B_IP, 80)])
    assert gone.outcome is Outcome.ERROR
    assert "does not exist" in gone.detail and missing in gone.detail
    assert fine.outcome is Outcome.CONNECTED


@pytest.mark.lab
def test_listener_set_closes_what_it_opened_when_entry_fails(lab: Lab) -> None:
    async def main() -> None:
        broken = ListenerSet([Listener(lab.a, 8080, "x"), Listener(f"{lab.a}-missing", 80, "y")])
        with pytest.raises(LabError, match="does not exist"):
            async with broken:
                pass
        duplicate = ListenerSet([Listener(lab.a, 8081, "x"), Listener(lab.a, 8081, "y")])
        with pytest.raises(LabError, match="EADDRINUSE"):
            async with duplicate:
                pass
        # Both ports were released: listening there again works.
        async with ListenerSet([Listener(lab.a, 8080, "x"), Listener(lab.a, 8081, "y")]):
            results = await run_probes([Probe(lab.b, A_IP, 8080), Probe(lab.b, A_IP, 8081)])
        assert [r.identity for r in results] == ["x", "y"]
        # After exit nothing listens any more.
        (after,) = await run_probes([Probe(lab.b, A_IP, 8080)])
        assert after.outcome is Outcome.REFUSED

    asyncio.run(main())


@pytest.mark.lab
def test_a_listener_held_by_a_forked_child_is_free_for_the_next_run(lab: Lab) -> None:
    """A child forked while the listeners are open holds them until it execs or exits: the
    next run's listener on the same port must still bind (it got EADDRINUSE, which killed
    tests/lab/test_agents.py's prober thread under load)."""
    children: list[int] = []

    async def main() -> tuple[list[ProbeResult], list[ProbeResult]]:
        async with ListenerSet([Listener(lab.a, 8082, "first")]):
            first = await run_probes([Probe(lab.b, A_IP, 8082)])
            pid = os.fork()
            if pid == 0:
                time.sleep(1.5)
                os._exit(0)
            children.append(pid)
        async with ListenerSet([Listener(lab.a, 8082, "second")]):
            second = await run_probes([Probe(lab.b, A_IP, 8082)])
        return first, second

    try:
        first, second = asyncio.run(main())
    finally:
        for pid in children:
            os.waitpid(pid, 0)
    assert [r.identity for r in first] == ["first"]
    assert [r.identity for r in second] == ["second"]


@pytest.mark.lab
def test_an_answer_seen_late_by_a_busy_loop_is_not_blocked(lab: Lab) -> None:
    async def main() -> ProbeResult:
        async with ListenerSet(_listeners(lab)):
            run = asyncio.create_task(run_probes([Probe(lab.a, B_IP, 80)], timeout=0.1))
            await asyncio.sleep(0)  # the run starts its probe task, queued after us
            # Queued after the probe's first step (connect sent): freeze the loop past the
            # deadline, so the SYN-ACK and the timeout are seen in the same loop iteration.
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
            (result,) = await run
            return result

    result = asyncio.run(main())
    assert result.outcome is Outcome.CONNECTED, result
    assert result.seconds >= 0.3


@pytest.mark.lab
def test_silence_is_retried_with_the_longer_confirm_timeout_before_it_stands(lab: Lab) -> None:
    async def main() -> list[ProbeResult]:
        async with ListenerSet(_listeners(lab)):
            return await run_probes(
                [Probe(lab.a, B_IP, DROPPED_PORT), Probe(lab.a, B_IP, 80)],
                timeout=0.2,
                confirm=0.4,
            )

    dropped, answered = asyncio.run(main())
    assert (dropped.outcome, dropped.identity) == (Outcome.BLOCKED, None), dropped
    assert dropped.timed_out and dropped.unanswered
    assert dropped.detail == "no answer within 0.2s; retried: no answer within 0.4s"
    assert dropped.seconds >= 0.55  # silent for the first timeout, then for the retry's
    assert (answered.outcome, answered.identity, answered.timed_out) == (
        Outcome.CONNECTED,
        "pod-b",
        False,
    )


@pytest.mark.lab
def test_an_answer_on_the_retry_is_the_outcome(lab: Lab) -> None:
    """A path silent on the first attempt and open by the retry (here: a drop rule removed once
    the first pass is over) is CONNECTED, as a late answer under load would be."""
    port = 83
    table = f"pwretry{secrets.token_hex(3)}"
    _nft(
        lab.router,
        f"table inet {table} {{\n  chain forward {{\n    type filter hook forward priority -1\n"
        f"    ip daddr {B_IP} tcp dport {port} drop\n  }}\n}}\n",
    )
    opened: list[int] = []

    def first_pass_over(done: int, total: int) -> None:
        # Called for the first pass's probes only: its last result opens the path.
        if done == total:
            _nft(lab.router, f"delete table inet {table}")
            opened.append(done)

    async def main() -> list[ProbeResult]:
        async with ListenerSet([*_listeners(lab), Listener(lab.b, port, "pod-b-83")]):
            return await run_probes(
                [Probe(lab.a, B_IP, port)], timeout=0.2, confirm=2.0, progress=first_pass_over
            )

    try:
        (result,) = asyncio.run(main())
    finally:
        subprocess.run(
            ["ip", "netns", "exec", lab.router, "nft", "delete", "table", "inet", table],
            capture_output=True,
            check=False,
        )
    assert opened == [1]
    assert (result.outcome, result.identity) == (Outcome.CONNECTED, "pod-b-83"), result
    assert not result.timed_out and result.detail == "connected"


@pytest.mark.lab
def test_the_retry_of_silence_is_not_stopped_by_a_forked_child_holding_the_sockets(
    lab: Lab,
) -> None:
    """A child forked while the first pass runs (any subprocess started by another thread)
    holds every socket until it execs or exits: ``close()`` alone then leaves the connections
    in the kernel, and the retry's connect from the same 4-tuple failed with EADDRNOTAVAIL (an
    ERROR cell; seen under load in tests/lab/test_agents.py). Both kinds of silence: a dropped
    SYN, and a handshake without an identity line."""
    with nsenter.entered(lab.b):
        mute = socket.socket()
    children: list[int] = []

    def fork_a_holder() -> None:
        # ``serve`` runs right before the deadlines are judged, i.e. before the first pass
        # closes its sockets: the child holds them for the whole retry.
        if not children:
            pid = os.fork()
            if pid == 0:
                time.sleep(1.5)
                os._exit(0)
            children.append(pid)

    async def main() -> list[ProbeResult]:
        async with ListenerSet(_listeners(lab)):
            return await run_probes(
                [
                    Probe(lab.a, B_IP, DROPPED_PORT, source_port=SOURCE_PORT - 1),
                    Probe(lab.a, B_IP, 9001, source_port=SOURCE_PORT - 2),
                ],
                timeout=0.2,
                confirm=0.3,
                serve=fork_a_holder,
            )

    try:
        with mute:
            mute.bind(("0.0.0.0", 9001))
            mute.listen(8)
            dropped, silent = asyncio.run(main())
    finally:
        for pid in children:
            os.waitpid(pid, 0)
    assert children, "the holder was never forked"
    assert (dropped.outcome, dropped.detail) == (
        Outcome.BLOCKED,
        "no answer within 0.2s; retried: no answer within 0.3s",
    ), dropped
    assert silent.outcome is Outcome.CONNECTED and silent.identity is None, silent
    assert silent.detail.endswith("retried: connected; no identity line within 0.3s"), silent


def test_only_what_the_timeout_decided_is_unanswered() -> None:
    probe = Probe("ns", "10.0.0.1", 80)

    def result(outcome: Outcome, timed_out: bool = False) -> ProbeResult:
        return ProbeResult(probe, outcome, None, "", 0.0, timed_out)

    assert result(Outcome.BLOCKED, timed_out=True).unanswered
    assert result(Outcome.CONNECTED, timed_out=True).unanswered  # no identity line in time
    assert result(Outcome.UNREACHABLE).unanswered  # a neighbour that did not answer looks so
    assert not result(Outcome.CONNECTED).unanswered
    assert not result(Outcome.REFUSED).unanswered
    assert not result(Outcome.ERROR).unanswered


@pytest.mark.lab
def test_a_line_the_busy_loop_had_no_time_to_send_is_sent_before_the_deadline_counts(
    lab: Lab,
) -> None:
    async def main() -> ProbeResult:
        async with ListenerSet(_listeners(lab)) as listening:
            run = asyncio.create_task(
                run_probes([Probe(lab.a, B_IP, 80)], timeout=0.1, serve=listening.serve_pending)
            )
            await asyncio.sleep(0)
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
            (result,) = await run
            return result

    result = asyncio.run(main())
    assert (result.outcome, result.identity, result.timed_out) == (
        Outcome.CONNECTED,
        "pod-b",
        False,
    ), result


@pytest.mark.lab
def test_concurrency_bounds_how_many_probes_run_at_once(lab: Lab) -> None:
    started = time.monotonic()
    results = _probe_with(lab, [Probe(lab.a, B_IP, DROPPED_PORT)] * 3, timeout=0.2, concurrency=1)
    assert [r.outcome for r in results] == [Outcome.BLOCKED] * 3
    # One at a time, each with its own full timeout.
    assert time.monotonic() - started >= 0.6


@pytest.mark.lab
def test_a_thousand_probes_in_one_run_keep_order_and_are_all_right(lab: Lab) -> None:
    kinds = [
        (Probe(lab.a, B_IP, 80), Outcome.CONNECTED, "pod-b"),
        (Probe(lab.b, A_IP, 80), Outcome.CONNECTED, "pod-a"),
        (Probe(lab.a, ROUTER_A_IP, 80), Outcome.CONNECTED, "router"),
        (Probe(lab.b, A_IP, 82), Outcome.REFUSED, None),
        (Probe(lab.router, B_IP, DROPPED_PORT), Outcome.CONNECTED, "pod-b-81"),
        (Probe(lab.a, f"{REJECTED_NET}.7", 80), Outcome.UNREACHABLE, None),
    ]
    plan = [kinds[(i * 7) % len(kinds)] for i in range(1000)]
    seen: list[tuple[int, int]] = []

    async def main() -> list[ProbeResult]:
        async with ListenerSet(_listeners(lab)):
            return await run_probes(
                [probe for probe, _, _ in plan],
                timeout=3.0,
                progress=lambda done, total: seen.append((done, total)),
            )

    results = asyncio.run(main())
    assert len(results) == 1000
    wrong = [
        (i, r)
        for i, (r, (probe, outcome, identity)) in enumerate(zip(results, plan, strict=True))
        if r.probe != probe or r.outcome is not outcome or r.identity != identity
    ]
    assert not wrong, wrong[:5]
    assert len(seen) == 1000 and seen[-1] == (1000, 1000)


# --- no namespaces needed ------------------------------------------------------------------


def test_probe_that_cannot_start_is_an_error() -> None:
    results = asyncio.run(
        run_probes(
            [
                Probe("pw-t-surely-not-there", "10.0.0.1", 80),
                Probe("pw-t-surely-not-there", "not-an-ip", 80),
            ]
        )
    )
    assert [r.outcome for r in results] == [Outcome.ERROR, Outcome.ERROR]
    assert "does not exist" in results[0].detail
    assert "not an IP address" in results[1].detail


def test_a_failing_progress_callback_stops_the_run() -> None:
    calls: list[int] = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if done == 3:
            raise RuntimeError("stop")

    probes = [Probe("pw-t-surely-not-there", "10.0.0.1", 80)] * 100
    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(run_probes(probes, concurrency=5, progress=progress))
    assert caught.group_contains(RuntimeError, match="stop")
    assert len(calls) < 100


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        asyncio.run(run_probes([], timeout=0))
    with pytest.raises(ValueError):
        asyncio.run(run_probes([], concurrency=0))
    with pytest.raises(ValueError):
        asyncio.run(run_probes([], confirm=0))
    with pytest.raises(ValueError):
        asyncio.run(run_probes([], confirm_concurrency=0))
    with pytest.raises(ValueError):
        Listener("x", 80, "two\nlines")
    assert asyncio.run(run_probes([])) == []


def test_reproducer_is_a_shell_command() -> None:
    plain = Probe("c1-pod", "10.2.0.5", 80)
    assert plain.reproducer() == "ip netns exec c1-pod nc -zvw1 10.2.0.5 80"
    assert (
        Probe("c1-pod", "10.2.0.5", 80, source_port=4242).reproducer(0.5)
        == "ip netns exec c1-pod nc -zvw0.5 -p 4242 10.2.0.5 80"
    )


def test_the_collector_is_paused_for_a_run_and_back_as_it_was_after() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outermost turns it back on
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
    # A run that stops on an error (here its progress callback's) leaves it on too.

    def stop(_done: int, _total: int) -> None:
        assert not gc.isenabled()
        raise RuntimeError("stop")

    missing = Probe(f"pw-none-{secrets.token_hex(3)}", "10.0.0.1", 80)  # an ERROR result at once
    with pytest.raises(ExceptionGroup):
        asyncio.run(run_probes([missing], timeout=0.1, progress=stop))
    assert gc.isenabled()
