"""The lab end to end: `peerwall demo`, a 3-cluster lab with 200 pods, and the prober on it.

Usage: python bench/lab_bench.py [--pods 200] [--services 20]

Needs root. Measures side by side, in one run: the demo's wall time (as a user runs it), `lab up`
and `lab down` of a 3-cluster, 200-pod lab, a full probe of that lab (every cell, real TCP), and
the same kind of probe done the naive way (one `ip netns exec` process per connection) on a
bounded sample, for a ratio. Everything it creates is removed in `finally`. The last line printed
is one JSON object for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import yaml

from labtopo import topology
from peerwall.lab import build as labs
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode, topology_from_data
from peerwall.policy import Verdict, expect
from peerwall.settings import LabSettings
from peerwall.verify.observe import Observed

NAME = f"lb{os.getpid() % 100000}"  # a lab of its own: `up` replaces one of the same name
SAMPLE = 100  # naive probes: ~10 ms each, bounded


def timed_demo() -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "peerwall.cli", "demo"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"peerwall demo failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def naive_rate(observed: Observed) -> float:
    """Probes per second with one `ip netns exec` + bash /dev/tcp connect per probe.

    Only cells the prober saw connect, so neither side waits for timeouts.
    """
    sample = [
        shlex.split(c.reproducers[-1])
        for c in observed.cells.values()
        if c.verdict is Verdict.YES and c.reproducers
    ][:SAMPLE]
    started = time.perf_counter()
    for argv in sample:
        netns, address, port = argv[3], argv[-2], argv[-1]
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "timeout",
                "1",
                "bash",
                "-c",
                f"exec 3<>/dev/tcp/{address}/{port}",
            ],
            capture_output=True,
            check=False,
        )
    return len(sample) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--services", type=int, default=20)
    args = parser.parse_args()

    demo_s = timed_demo()
    print(f"peerwall demo: {demo_s:.1f} s (target < 20 s)")

    data = topology(args.pods, args.services)
    topo = topology_from_data(data, "bench")
    text = yaml.safe_dump(data)
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    state = tempfile.TemporaryDirectory(prefix="pw-bench-lab-")
    settings = LabSettings(state_dir=state.name)
    started = time.perf_counter()
    plan = labs.up(NAME, topo, text, "bench", mode, settings)
    up_s = time.perf_counter() - started
    try:
        print(
            f"lab up, 3 clusters, {args.pods} pods, {len(plan.namespaces())} namespaces: {up_s:.2f} s (target < 30 s)"
        )
        observed = observe_lab(plan, mode.value, settings, state_dir=state.name)
        wrong = expect(topo, mode).table.compare(observed.table)
        rate = observed.attempts / observed.seconds
        print(
            f"probe: {observed.attempts} TCP probes in {observed.seconds:.2f} s = {rate:.0f}/s (target >= 2000/s), {len(wrong)} wrong cells"
        )
        naive = naive_rate(observed)
        print(
            f"naive `ip netns exec` per probe on {SAMPLE} YES cells: {naive:.0f}/s; ratio {rate / naive:.0f}x"
        )
    finally:
        started = time.perf_counter()
        labs.down(NAME, settings)
        down_s = time.perf_counter() - started
        state.cleanup()
    print(f"lab down: {down_s:.2f} s (target < 10 s)")
    result = {
        "bench": "lab",
        "demo_seconds": round(demo_s, 2),
        "pods": args.pods,
        "lab_up_seconds": round(up_s, 2),
        "lab_down_seconds": round(down_s, 2),
        "probes": observed.attempts,
        "probes_per_second": round(rate),
        "naive_probes_per_second": round(naive, 1),
        "speedup_vs_naive": round(rate / naive, 1),
        "wrong_cells": len(wrong),
        "ok": demo_s < 20 and up_s < 30 and down_s < 10 and rate >= 2000 and not wrong,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
