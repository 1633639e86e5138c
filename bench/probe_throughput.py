"""TCP probe throughput of the namespace prober: one router, N pods, M probes pod to pod.

Usage: python bench/probe_throughput.py [--pods 50] [--probes 20000] [--concurrency 2000]

Needs root. Builds the namespaces with `ip -batch`, removes them in `finally`, and prints one
JSON line of results last, for a bench runner to collect.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

from peerwall import nsenter
from peerwall.probe.netns_prober import Listener, ListenerSet, Outcome, Probe, run_probes

PORT = 8080
MAX_PODS = 4096  # one /24 per pod under 10.64.0.0/12
MAX_PROBES = 1_000_000

T = TypeVar("T")


def pod_subnet(i: int) -> str:
    return f"10.{64 + i // 256}.{i % 256}"


def target_of(i: int, n: int) -> int:
    """Probe ``i`` goes from pod ``i % n`` to another pod; successive rounds cover every pair."""
    return (i % n + 1 + (i // n) % (n - 1)) % n


def ip_batch(commands: list[str], netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    done = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def build(router: str, pods: list[str]) -> None:
    ip_batch([f"netns add {ns}" for ns in [router, *pods]])
    router_cmds = ["link set lo up"]
    for i, pod in enumerate(pods):
        router_cmds += [
            f"link add name p{i} type veth peer name eth0 netns {pod}",
            f"addr add {pod_subnet(i)}.1/24 dev p{i}",
            f"link set p{i} up",
        ]
    ip_batch(router_cmds, router)
    for i, pod in enumerate(pods):
        ip_batch(
            [
                "link set lo up",
                "link set eth0 up",
                f"addr add {pod_subnet(i)}.2/24 dev eth0",
                f"route add default via {pod_subnet(i)}.1",
            ],
            pod,
        )
    # /proc/sys/net shows the namespace of the thread that opens it.
    with nsenter.entered(router), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


def teardown(names: list[str]) -> None:
    # -force: keep deleting past a namespace that was never created.
    subprocess.run(
        ["ip", "-force", "-batch", "-"],
        input="".join(f"netns delete {ns}\n" for ns in names),
        capture_output=True,
        text=True,
    )


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


async def measure(pods: list[str], probes: int, concurrency: int, timeout: float) -> dict[str, Any]:
    n = len(pods)
    pairs = [(i % n, target_of(i, n)) for i in range(probes)]
    plan = [(Probe(pods[src], f"{pod_subnet(dst)}.2", PORT), pods[dst]) for src, dst in pairs]
    async with ListenerSet(Listener(pod, PORT, pod) for pod in pods):
        started = time.perf_counter()
        results = await run_probes(
            [probe for probe, _ in plan], timeout=timeout, concurrency=concurrency
        )
        elapsed = time.perf_counter() - started
    outcomes = Counter(r.outcome.value for r in results)
    wrong = sum(
        1
        for r, (_, target) in zip(results, plan, strict=True)
        if r.outcome is Outcome.CONNECTED and r.identity != target
    )
    slowest = max((r.seconds for r in results), default=0.0)
    return {
        "seconds": round(elapsed, 3),
        "probes_per_s": round(probes / elapsed, 1),
        "outcomes": dict(outcomes),
        "wrong_identity": wrong,
        "slowest_probe_s": round(slowest, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--probes", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds per probe")
    args = parser.parse_args()
    if not 2 <= args.pods <= MAX_PODS or not 1 <= args.probes <= MAX_PROBES:
        parser.error(f"need 2..{MAX_PODS} pods and 1..{MAX_PROBES} probes")
    result: dict[str, Any] = {
        "bench": "probe_throughput",
        "pods": args.pods,
        "probes": args.probes,
        "concurrency": args.concurrency,
        "timeout_s": args.timeout,
    }
    if os.geteuid() != 0:
        result["skipped"] = "needs root to create network namespaces"
        print(json.dumps(result))
        return 0

    # A probe holds one client fd, and its accepted peer one more, for a moment.
    result["fd_limit"] = raise_fd_limit(2 * args.concurrency + args.pods + 256)
    _interrupt_on_sigterm()
    tag = secrets.token_hex(3)
    router = f"pw-b-{tag}-r"
    pods = [f"pw-b-{tag}-p{i}" for i in range(args.pods)]
    try:
        started = time.perf_counter()
        build(router, pods)
        result["build_s"] = round(time.perf_counter() - started, 3)
        # The run is bounded anyway (each probe has its timeout); this is a backstop.
        bound = (args.probes / args.concurrency + 1) * args.timeout + 60
        work = measure(pods, args.probes, args.concurrency, args.timeout)
        result |= asyncio.run(interruptible(work, bound))
    except (KeyboardInterrupt, asyncio.CancelledError):
        result["interrupted"] = True
    finally:
        _interrupt_on_sigterm()  # asyncio.run reset it to the default on the way out
        started = time.perf_counter()
        teardown([router, *pods])
        result["teardown_s"] = round(time.perf_counter() - started, 3)
    if "probes_per_s" in result:
        print(
            f"{result['probes']} probes across {args.pods} pods in {result['seconds']} s: "
            f"{result['probes_per_s']} probes/s, outcomes {result['outcomes']}",
            file=sys.stderr,
        )
    print(json.dumps(result))
    return 130 if result.get("interrupted") else 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupt_on_sigterm() -> None:
    # A bench runner that gives up sends SIGTERM: leave through the teardown all the same.
    signal.signal(signal.SIGTERM, _raise_interrupt)


async def interruptible(work: Coroutine[Any, Any, T], bound: float) -> T:
    """Await ``work`` for at most ``bound`` s; SIGINT/SIGTERM cancel it cleanly (sockets closed)."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    assert me is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, me.cancel)
    async with asyncio.timeout(bound):
        return await work


if __name__ == "__main__":
    sys.exit(main())
