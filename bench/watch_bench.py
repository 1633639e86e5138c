"""API watch connections and memory of the agent's Kubernetes source, per gateway, for 1, 10 and 50
peers.

Usage: python bench/watch_bench.py [--peers 1,10,50]

One cluster, ``hub``, provides to N consumers ``c1..cN``; each offloads a namespace to it with
4 pods running here and a service of 2 of them, and the hub has 20 pods and 10 services of its own.
The fake API server of the tests (``peerwall.lab.apiserver.server``, in this process) holds every object
the hub would hold (``cluster_objects``). On Liqo v1 each peer has its own gateway pod, and so its
own agent, watching in sidecar mode (``--peer``):

- watch connections: N sources (one per gateway) run against the fake in one child process, and
  the watches the fake holds open once all are synced are counted: the API server's load;
- memory per gateway: a fresh interpreter runs one gateway's source (peer c1) until synced; its
  peak RSS (``ru_maxrss``) and the part above the interpreter with peerwall imported.

The source is the agent's input only (the agent's loop and nftables add the same for any N: see
memory_bench.py). Figures are measured on a machine shared with other jobs.

Writes bench/results/watch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests")]

from common import emit, machine  # noqa: E402

MiB = 1 << 20


def topology(n: int) -> Any:
    from peerwall.model.load import topology_from_data

    clusters: list[dict[str, Any]] = [
        {"name": "hub", "podCIDR": "10.250.0.0/16", "serviceCIDR": "10.96.0.0/16"}
    ]
    namespaces, pods, services, peerings = [], [], [], []
    for i in range(1, n + 1):
        c = f"c{i}"
        clusters.append(
            {"name": c, "podCIDR": f"10.{i}.0.0/16", "serviceCIDR": f"10.{100 + i}.0.0/16"}
        )
        peerings.append({"consumer": c, "provider": "hub"})
        namespaces.append({"name": f"work-{c}", "cluster": c, "offloadedTo": ["hub"]})
        for k in range(4):
            labels = {"app": f"a{k % 2}"}
            pods.append(
                {"name": f"p{k}-{c}", "cluster": c, "namespace": f"work-{c}", "runsOn": "hub",
                 "labels": labels}
            )  # fmt: skip
        services.append(
            {"name": f"s-{c}", "cluster": c, "namespace": f"work-{c}", "selector": {"app": "a0"}}
        )
    for k in range(20):
        pods.append(
            {
                "name": f"h{k}",
                "cluster": "hub",
                "namespace": "default",
                "labels": {"app": f"h{k % 10}"},
            }
        )
    for k in range(10):
        services.append(
            {
                "name": f"hs{k}",
                "cluster": "hub",
                "namespace": "default",
                "selector": {"app": f"h{k}"},
            }
        )
    data = {
        "clusters": clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": pods,
        "services": services,
    }
    return topology_from_data(data, f"hub-{n}")


CHILD = """
import asyncio, json, resource, sys
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import KubeApi, KubeSource
from peerwall.settings import KubeSettings
from peerwall import liqo
from peerwall.compile.state import CONNCHECK_PORT

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))

async def main(kubeconfig, peers):
    base = rss()
    apis, sources = [], []
    for p in peers:
        # A client each, as each gateway's agent has (one client's pool holds 100 connections).
        apis.append(KubeApi.from_config(kubeconfig))
        d = DesiredState("unknown", liqo.TUNNEL_PATTERN, CONNCHECK_PORT)
        sources.append(KubeSource(apis[-1], d, KubeSettings(peer=p)))
    tasks = [asyncio.create_task(s.run()) for s in sources]
    await asyncio.wait_for(asyncio.gather(*(s.listed.wait() for s in sources)), 300)
    out = {"after_imports": base, "synced": rss(),
           "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "reflectors": sum(len(s.reflectors) for s in sources),
           "objects": sum(len(r.store) for s in sources for r in s.reflectors)}
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # until the parent has counted the watches
    for t in tasks:
        t.cancel()
    for api in apis:
        await api.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2:]))
"""


async def run_child(fake: Any, kubeconfig: Path, peers: list[str]) -> dict[str, Any]:
    """One process running one source per peer; its figures and the watches the fake holds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(kubeconfig), *peers,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    child: dict[str, Any] = json.loads(await asyncio.wait_for(proc.stdout.readline(), 600))
    # Every reflector lists, then watches: wait until each holds its watch.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while len(fake.watchers) < child["reflectors"] and loop.time() < deadline:
        await asyncio.sleep(0.05)
    child["watch_connections"] = len(fake.watchers)
    proc.stdin.write(b"\n")
    await proc.stdin.drain()
    await proc.wait()
    return child


async def measure(n: int, workdir: Path) -> dict[str, Any]:
    from kubeapi import liqo_objects as L
    from kubeapi.fake import FakeApiServer

    objects = L.cluster_objects(topology(n), "hub")
    out: dict[str, Any] = {"peers": n, "objects_in_cluster": len(objects)}
    runs = (("one_gateway", ["c1"]), ("all_gateways", [f"c{i}" for i in range(1, n + 1)]))
    for what, peers in runs:
        async with FakeApiServer() as fake:  # a fresh server: no watch of a previous run counted
            for obj in objects:
                fake.create(obj)
            out[what] = await run_child(fake, fake.kubeconfig(workdir / f"kc-{n}-{what}"), peers)
    one = out["one_gateway"]
    out["per_gateway"] = {
        "watch_connections": one["watch_connections"],
        "rss_mib": round(one["synced"] / MiB, 1),
        "peak_rss_mib": round(one["peak"] / MiB, 1),
        "source_rss_mib": round((one["synced"] - one["after_imports"]) / MiB, 2),
        "objects_cached": one["objects"],
    }
    out["total_watch_connections"] = out["all_gateways"]["watch_connections"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peers", default="1,10,50")
    args = ap.parse_args()
    started = time.perf_counter()
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # clients going away mid-stream
    workdir = Path("/tmp") / f"pw-watch-bench-{time.time_ns()}"
    workdir.mkdir()
    try:
        rows = [asyncio.run(measure(int(n), workdir)) for n in args.peers.split(",")]
    finally:
        for f in workdir.iterdir():
            f.unlink()
        workdir.rmdir()
    print(f"{'peers':>5} {'objects':>8} {'watches/gw':>10} {'watches total':>13} "
          f"{'RSS/gw MiB':>10} {'peak MiB':>8} {'source MiB':>10} {'cached':>7}")  # fmt: skip
    for r in rows:
        g = r["per_gateway"]
        print(
            f"{r['peers']:>5} {r['objects_in_cluster']:>8} {g['watch_connections']:>10} "
            f"{r['total_watch_connections']:>13} {g['rss_mib']:>10} {g['peak_rss_mib']:>8} "
            f"{g['source_rss_mib']:>10} {g['objects_cached']:>7}"
        )
    result = {"rows": rows, "machine": machine(), "seconds": time.perf_counter() - started}
    emit("watch", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
