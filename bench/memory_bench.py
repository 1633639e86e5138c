"""Memory: peak RSS of the agent enforcing 50,000 offloaded pods and 5,000 services.

Usage: python bench/memory_bench.py [--pods 50000] [--services 5000] [--reps 3]

Needs root. Each repetition is a fresh interpreter that runs the real agent loop
(``peerwall.agent.run.Agent``, hand-driven source, libnftables in a ``pw-bench-…`` namespace):
3 peers; 50,000 pods offloaded here (one ``pod/…`` contribution each, spread over the peers);
5,000 services, each an EndpointSlice of 4 local backends reflected to one or two peers (one
``endpointslice/…`` contribution per peer). The agent writes the whole table, then takes 2,000
pod events; the process's peak RSS (``ru_maxrss``: Python, the desired state, the rendered
table and libnftables' own buffers) is read at each step. The truth table's memory at 100,000
pods is measured by ``truthtable_bench.py``.

Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from typing import Any

from common import Namespaces, finish, machine, maxrss_bytes, need_root, summary

TARGET_BYTES = 300 << 20
MiB = 1 << 20


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def child(netns: str, pods: int, services: int) -> dict[str, Any]:
    from agentkit import address, new_desired, pod_key, running_agent, slice_key
    from peerwall.compile.state import SetKind
    from peerwall.dataplane.nft import LibNft

    out: dict[str, Any] = {"after_imports": maxrss_bytes()}
    rnd = random.Random(5)
    peers = ["A", "B", "C"]
    d = new_desired(peers)
    for i in range(pods):
        d.contribute(pod_key(i), peers[i % 3], SetKind.OFFLOADED, (address(i),))
    for s in range(services):
        backends = [address(pods + 4 * s + k) for k in range(4)]
        for peer in rnd.sample(peers, rnd.randint(1, 2)):
            d.contribute(slice_key(s), peer, SetKind.BACKENDS, backends)
    out["after_desired_state"] = maxrss_bytes()
    out["elements"] = sum(d.size(p, k) for p in peers for k in SetKind)

    async def run() -> None:
        nft = LibNft(netns)
        t = time.perf_counter()
        async with running_agent(d, nft) as h:
            out["first_table_s"] = time.perf_counter() - t
            out["after_table"] = maxrss_bytes()
            base = pods + 4 * services
            for k in range(1000):
                key = f"pod/offloaded/new{k}"
                d.contribute(key, peers[k % 3], SetKind.OFFLOADED, (address(base + k),))
                h.event()
                await h.settled()
                d.withdraw(key)
                h.event()
                await h.settled()
            out["events"] = 2000
            out["transactions"] = dict(h.agent.enforcer.counts.transactions)
        doc = nft.list_json("list table inet peerwall")
        out["kernel_elements"] = sum(
            len(o["set"].get("elem", [])) for o in doc["nftables"] if "set" in o
        )

    asyncio.run(run())
    out["after_events"] = maxrss_bytes()
    out["rss_now"] = current_rss()
    out["peak"] = maxrss_bytes()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pods", type=int, default=50_000)
    ap.add_argument("--services", type=int, default=5_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.pods, args.services)))
        return 0
    if not need_root("memory"):
        return 0
    started = time.perf_counter()
    runs = []
    with Namespaces("mem") as nss:
        for r in range(args.reps):
            (ns,) = nss.add(f"m{r}")
            argv = [sys.executable, __file__, "--child", ns, "--pods", str(args.pods)]
            argv += ["--services", str(args.services)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            nss.remove([ns])
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"rep {r + 1}: peak {runs[-1]['peak'] / MiB:.0f} MiB", file=sys.stderr)
    keys = [
        "after_imports",
        "after_desired_state",
        "after_table",
        "after_events",
        "peak",
        "rss_now",
    ]
    result: dict[str, Any] = {
        "machine": machine(),
        "pods": args.pods,
        "services": args.services,
        "elements": runs[0]["elements"],
        "first_table_s": summary([x["first_table_s"] for x in runs]),
        "rss": {k: summary([x[k] for x in runs]) for k in keys},
        "runs": runs,
    }
    peak = result["rss"]["peak"]["max"]
    result["targets"] = {
        "agent_rss_under_300MiB": {
            "target": TARGET_BYTES,
            "value": peak,
            "met": peak < TARGET_BYTES,
        }
    }
    return finish("memory", result, started)


if __name__ == "__main__":
    sys.exit(main())
