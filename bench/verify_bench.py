"""Verification speed: probes per second on a 200-pod lab, the prober against one process per
probe (the way today's tools check connectivity: a ``kubectl exec … nc`` per probe, emulated by
``ip netns exec <pod> nc -z``), in one run.

Usage: python bench/verify_bench.py [--pods 200] [--services 20] [--reps 3]
                                    [--sequential 30] [--connect-only 100] [--parallel 100]

Needs root. ``peerwall.lab.build.up`` builds the lab (3 clusters, 200 pods, 20 services; tables
applied directly, ``LabSettings(agents=False)``); every repetition probes every cell of the table
through ``peerwall.lab.probing.observe_lab`` (real TCP, every service backend, 1 s timeout) and
checks the observed table against the computed one. Between repetitions, one process per probe,
each the very probe the prober ran (``Probe.reproducer``: ``ip netns exec NS nc -zvw1 -p PORT
ADDR PORT``), three ways:

- ``sequential``: one after the other, on a random sample of all probes (the same mix of
  connected and blocked ones; a blocked one waits its 1 s, as the prober's does);
- ``connect_only``: one after the other, only probes that connect (the per-process approach at
  its best: nothing waits);
- ``parallel``: the same-mix sample again, 16 processes at a time (what a per-process tool could
  do on this machine by overlapping its waits).

Writes bench/results/verify.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

from common import emit, machine, need_root, summary
from labtopo import topology
from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode, topology_from_data
from peerwall.policy import expect
from peerwall.settings import LabSettings, ProbeSettings
from peerwall.verify.observe import Observed, Reach

TARGET_X = 100
PARALLEL = 16


def dials(observed: Observed) -> list[tuple[str, str]]:
    """(reach, reproducer command) of every connection the prober made."""
    out = []
    for obs in observed.cells.values():
        dialled = obs.results[len(obs.results) - len(obs.reproducers) :]
        for r, cmd in zip(dialled, obs.reproducers, strict=True):
            out.append((r.reach.value, cmd))
    return out


def one_process(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(shlex.split(cmd), capture_output=True, check=False)
    return time.perf_counter() - t


def per_process(sample: list[str], parallel: int = 1) -> dict[str, Any]:
    started = time.perf_counter()
    if parallel == 1:
        each = [one_process(c) for c in sample]
    else:
        with ThreadPoolExecutor(parallel) as pool:
            each = list(pool.map(one_process, sample))
    seconds = time.perf_counter() - started
    return {
        "probes": len(sample),
        "seconds": seconds,
        "probes_per_s": len(sample) / seconds,
        "median_probe_s": sorted(each)[len(each) // 2],
    }


def probe_lab(
    plan: LabPlan, mode: SecurityMode, lab: LabSettings, probe: ProbeSettings
) -> Observed:
    return observe_lab(plan, mode.value, lab, probe, state_dir=lab.state_dir)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pods", type=int, default=200)
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sequential", type=int, default=30)
    ap.add_argument("--connect-only", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=ProbeSettings().concurrency)
    args = ap.parse_args()
    if not need_root("verify"):
        return 0
    data = topology(args.pods, args.services)
    topo = topology_from_data(data, "bench")
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    expected = expect(topo, mode).table
    name = f"bv{os.getpid() % 100000}"
    rnd = random.Random(3)
    started = time.perf_counter()
    prober: list[dict[str, Any]] = []
    ref: dict[str, list[dict[str, Any]]] = {"sequential": [], "connect_only": [], "parallel": []}
    settings_probe = ProbeSettings(concurrency=args.concurrency)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="pw-bench-verify-") as state:
        lab = LabSettings(agents=False, state_dir=state)
        t = time.perf_counter()
        plan = labs.up(name, topo, yaml.safe_dump(data), "bench", mode, lab)
        up_s = time.perf_counter() - t
        try:
            for r in range(args.reps):
                before = os.times()
                observed = probe_lab(plan, mode, lab, settings_probe)
                after = os.times()
                wrong = len(expected.compare(observed.table))
                prober.append(
                    {
                        "probes": observed.attempts,
                        "seconds": observed.seconds,
                        "probes_per_s": observed.attempts / observed.seconds,
                        "cpu_user_s": after.user
                        - before.user
                        + after.children_user
                        - before.children_user,
                        "cpu_system_s": after.system
                        - before.system
                        + after.children_system
                        - before.children_system,
                        "wrong_cells": wrong,
                        "outcomes": dict(Counter(reach for reach, _ in dials(observed))),
                    }
                )
                log(
                    f"prober rep {r + 1}: {prober[-1]['probes_per_s']:.0f} probes/s, {wrong} wrong cells"
                )
                all_dials = dials(observed)
                connected = [c for reach, c in all_dials if reach == Reach.REACHED.value]
                mixed = [c for _, c in all_dials]
                if r == 0:
                    ref["sequential"].append(per_process(rnd.sample(mixed, args.sequential)))
                    ref["connect_only"].append(
                        per_process(rnd.sample(connected, args.connect_only))
                    )
                    ref["parallel"].append(per_process(rnd.sample(mixed, args.parallel), PARALLEL))
                    log(
                        "per process: "
                        + ", ".join(f"{k} {v[-1]['probes_per_s']:.1f}/s" for k, v in ref.items())
                    )
            prof = cProfile.Profile()
            prof.enable()
            probe_lab(plan, mode, lab, settings_probe)
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
            profile = s.getvalue()
        finally:
            t = time.perf_counter()
            labs.down(name, lab)
            down_s = time.perf_counter() - t
    rate = summary([p["probes_per_s"] for p in prober])
    result: dict[str, Any] = {
        "machine": machine(),
        "lab": {
            "pods": args.pods,
            "services": args.services,
            "namespaces": len(plan.namespaces()),
            "up_s": up_s,
            "down_s": down_s,
        },
        "concurrency": args.concurrency,
        "prober": {"probes_per_s": rate, "runs": prober},
        "per_process": {k: v[0] for k, v in ref.items()},
        "ratios": {
            f"prober_over_{k}": rate["median"] / v[0]["probes_per_s"] for k, v in ref.items()
        },
        "profile": profile,
    }
    x = result["ratios"]
    result["targets"] = {
        "at_least_100x_per_process_same_probes": {"target": TARGET_X, "value": x["prober_over_sequential"], "met": x["prober_over_sequential"] >= TARGET_X},
        "at_least_100x_per_process_connect_only": {"target": TARGET_X, "value": x["prober_over_connect_only"], "met": x["prober_over_connect_only"] >= TARGET_X},
        "every_cell_right": {"target": 0, "value": max(p["wrong_cells"] for p in prober), "met": all(p["wrong_cells"] == 0 for p in prober)},
    }  # fmt: skip
    result["seconds"] = time.perf_counter() - started
    result["ok"] = all(t["met"] for t in result["targets"].values())
    emit("verify", result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
