"""Memory: peak RSS of the agent enforcing 50,000 offloaded pods and 5,000 services.

Usage: python bench/memory_bench.py [--pods 50000] [--services 5000] [--reps 3]
                                    [--process-sizes 50000,200000] [--read-backs 2]
                                    [--sources file,kubernetes] [--restart]

Needs root. Each repetition is a fresh interpreter that runs the real agent loop
(``peerwall.agent.run.Agent``, hand-driven source, libnftables in a ``pw-bench-…`` namespace):
3 peers; 50,000 pods offloaded here (one ``pod/…`` contribution each, spread over the peers);
5,000 services, each an EndpointSlice of 4 local backends reflected to one or two peers (one
``endpointslice/…`` contribution per peer). The agent writes the whole table, then takes 2,000
pod events; the process's peak RSS (``ru_maxrss``: Python, the desired state, the rendered
table and libnftables' own buffers) is read at each step. The truth table's memory at 100,000
pods is measured by ``truthtable_bench.py``.

Then the real thing (issue 21): the ``peerwall agent`` process itself, file source, in a
``pw-bench-`` namespace, on a generated topology (``agent_topology``: N pods of 3 peers offloaded
here, N/10 local services of one backend each, reflected to the 3 peers), for each size of
``--process-sizes``; once it is ready and has read its table back ``--read-backs`` times
(``--resync-interval 1``), its VmRSS (steady) and VmHWM (peak, the start included) from
/proc/<pid>/status, and the distinct addresses its sets hold (read from the kernel). Target: steady
at most 100 MiB + 1 KiB per enforced address; peak at most 1.5x steady. With ``--restart``, a
second agent is started over the table the first left and measured the same way (a restart's
start: a whole write over an enforcing table, one transaction of the difference).

Writes bench/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Namespaces, finish, machine, maxrss_bytes, need_root, summary

TARGET_BYTES = 300 << 20
MiB = 1 << 20
KiB = 1 << 10
TARGET_BASE = 100 * MiB
TARGET_PER_ADDRESS = 1 * KiB
TARGET_PEAK_X = 1.5


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
            out["transactions"] = dict(h.agent.enforcer.table.counts.transactions)
        doc = nft.list_json("list table inet peerwall")
        out["kernel_elements"] = sum(
            len(o["set"].get("elem", [])) for o in doc["nftables"] if "set" in o
        )

    asyncio.run(run())
    out["after_events"] = maxrss_bytes()
    out["rss_now"] = current_rss()
    out["peak"] = maxrss_bytes()
    return out


def agent_topology(n: int, npeers: int = 3) -> dict[str, Any]:
    """Cluster h's gateway enforces n pods offloaded here by ``npeers`` peers, and n/10 local
    backends (one per service, in a namespace offloaded to the peers: reflected to each).

    Names are lowercase: valid Liqo cluster IDs, for the Kubernetes source. There, as in Liqo v1,
    each peer has a gateway (and an agent, ``--peer``) of its own: the same addresses in one
    agent is one peer offloading all n pods (``npeers=1``)."""
    peers = [f"p{i + 1}" for i in range(npeers)]
    clusters = [{"name": "h", "podCIDR": "10.0.0.0/11", "serviceCIDR": "172.16.0.0/16"}]
    clusters += [
        {
            "name": p,
            "podCIDR": f"10.{32 + 32 * i}.0.0/11",
            "serviceCIDR": f"172.{17 + i}.0.0/16",
            "securityMode": "IntraClusterTrafficSegregation",
        }
        for i, p in enumerate(peers)
    ]
    k = len(peers)
    pods: list[dict[str, Any]] = [
        {"name": f"o{i}", "cluster": peers[i % k], "namespace": f"ns{peers[i % k]}",
         "runsOn": "h", "labels": {"app": f"a{i % 1000}"}}
        for i in range(n)
    ]  # fmt: skip
    services = []
    for s in range(n // 10):
        pods.append(
            {"name": f"b{s}", "cluster": "h", "namespace": "hns", "labels": {"app": f"b{s}"}}
        )
        services.append(
            {"name": f"s{s}", "cluster": "h", "namespace": "hns", "selector": {"app": f"b{s}"}}
        )
    return {
        "clusters": clusters,
        "peerings": [{"consumer": p, "provider": "h"} for p in peers]
        + [{"consumer": "h", "provider": p} for p in peers],
        "namespaces": [{"name": f"ns{p}", "cluster": p, "offloadedTo": ["h"]} for p in peers]
        + [{"name": "hns", "cluster": "h", "offloadedTo": peers}],
        "pods": pods,
        "services": services,
    }


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * KiB
    return out


def kernel_addresses(netns: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "table", "inet", "peerwall"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seen: set[str] = set()
    for obj in json.loads(done.stdout)["nftables"]:
        s = obj.get("set")
        if s and s["name"].split("-")[0] in ("offloaded", "backends", "api"):
            seen.update(e for e in s.get("elem", []) if isinstance(e, str))
    return len(seen)


SERVE = """
import asyncio, json, logging, sys, types
from peerwall.lab.apiserver import server
from peerwall.lab.apiserver.liqo_objects import cluster_objects
from peerwall.lab.apiserver.server import FakeApiServer
from peerwall.model.load import topology_from_data

async def main(netns, topology, kubeconfig):
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # streams cut when the agent ends
    objects = cluster_objects(topology_from_data(json.loads(open(topology).read())), "h")
    # Generated objects, not validated one by one (their shapes are the tests'): minutes saved.
    async with FakeApiServer(validate_objects=False, netns=netns) as fake:
        for obj in objects:
            fake.create(obj)
        del objects
        # Nothing is written while it serves: a list's snapshot need not deep-copy 200,000 pods
        # (which takes longer than the client waits for a page, on a loaded machine).
        server.copy = types.SimpleNamespace(deepcopy=lambda obj: obj)
        fake.kubeconfig(__import__("pathlib").Path(kubeconfig))
        print(json.dumps({"objects": len(fake.objects)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(*sys.argv[1:]))
"""
"""The fake API server holding cluster h's objects (``liqo_objects.cluster_objects``), its socket
in the agent's namespace (127.0.0.1 there, as a pod's API server), until its stdin closes."""


def agent_process(
    netns: str, n: int, read_backs: int, tmp: Path, source: str, restart: bool = False
) -> dict[str, Any]:
    """The real ``peerwall agent``, ``source`` "file" or "kubernetes" (the fake API server, a
    process of its own, holding what Liqo would): RSS once ready and after ``read_backs``
    checks. Only the agent's PID is measured. ``restart``: then a second agent, started in the
    same namespace over the table the first left (nothing is removed on exit), measured the
    same way (``restart_rss``, ``restart_peak``): a restart's start, not a fresh one."""
    topo, status = tmp / f"topology-{source}-{n}.json", tmp / f"status-{source}-{n}.json"
    topo.write_text(json.dumps(agent_topology(n, 3 if source == "file" else 1)))
    exe = Path(sys.executable).with_name("peerwall")
    server = None
    out: dict[str, Any] = {"pods": n, "source": source}
    if source == "file":
        given = [f"--source=file:{topo}", "--cluster=h"]
    else:
        kubeconfig = tmp / f"kubeconfig-{n}"
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE, netns, str(topo), str(kubeconfig)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            server.wait()
            raise RuntimeError(f"fake API server at {n:,} pods: exit {server.returncode}")
        out["api_objects"] = json.loads(line)["objects"]
        given = ["--source=kubernetes", f"--kubeconfig={kubeconfig}", "--peer=p1"]
    argv = ["ip", "netns", "exec", netns, str(exe), "agent", *given, "--resync-interval=1",
            "--metrics-address=", f"--status-file={status}", "--log-level=warning"]  # fmt: skip
    try:
        for run in ("", "restart_") if restart else ("",):
            status.unlink(missing_ok=True)
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv)  # ip netns exec execs the agent: the same PID
            try:
                deadline = time.monotonic() + 900
                checks = -1
                while time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.2)
                    try:
                        st = json.loads(status.read_text())
                    except (OSError, json.JSONDecodeError):
                        continue
                    if st.get("ready") and f"{run}ready_s" not in out:
                        out[f"{run}ready_s"] = time.perf_counter() - t0
                        out[f"{run}rss_ready"] = proc_status(proc.pid)["VmRSS"]
                    checks = st.get("checks", 0)
                    if st.get("ready") and checks >= read_backs:
                        break
                if checks < read_backs:
                    raise RuntimeError(
                        f"agent ({source}) at {n:,} pods: not ready with {read_backs} read-backs"
                    )
                mem = proc_status(proc.pid)
                out.update({f"{run}read_backs": checks, f"{run}rss": mem["VmRSS"]})
                out[f"{run}peak"] = mem["VmHWM"]
                if not run:
                    out["addresses"] = kernel_addresses(netns)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        if server is not None:
            assert server.stdin is not None
            server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    out["budget"] = TARGET_BASE + TARGET_PER_ADDRESS * out["addresses"]
    out["per_address"] = out["rss"] / out["addresses"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pods", type=int, default=50_000)
    ap.add_argument("--services", type=int, default=5_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--process-sizes", default="50000,200000", help="'' for none")
    ap.add_argument("--read-backs", type=int, default=2)
    ap.add_argument(
        "--sources", default="file,kubernetes", help="the agent processes' sources, of these two"
    )
    ap.add_argument(
        "--restart",
        action="store_true",
        help="also measure a second agent started over the table the first left",
    )
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
    processes = []
    with Namespaces("mem") as nss, tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.process_sizes.split(",") if x]:
            for source in args.sources.split(","):
                (ns,) = nss.add(f"{source[0]}{n}")
                processes.append(
                    agent_process(ns, n, args.read_backs, Path(tmp), source, args.restart)
                )
                nss.remove([ns])
                p = processes[-1]
                print(
                    f"agent process, {source} source, {n:,} pods: {p['rss'] / MiB:.0f} MiB after "
                    f"{p['read_backs']} read-backs (budget {p['budget'] / MiB:.0f} MiB), "
                    f"peak {p['peak'] / MiB:.0f} MiB"
                    + (
                        f"; restarted over its table: {p['restart_rss'] / MiB:.0f} MiB, "
                        f"peak {p['restart_peak'] / MiB:.0f} MiB"
                        if "restart_rss" in p
                        else ""
                    ),
                    file=sys.stderr,
                )
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
    result["processes"] = processes
    for p in processes:
        n = p["pods"] if p["source"] == "file" else f"{p['pods']}_kubernetes"
        result["targets"][f"process_{n}_steady"] = {
            "target": p["budget"],
            "value": p["rss"],
            "met": p["rss"] <= p["budget"],
        }
        result["targets"][f"process_{n}_peak"] = {
            "target": TARGET_PEAK_X,
            "value": p["peak"] / p["rss"],
            "met": p["peak"] <= TARGET_PEAK_X * p["rss"],
        }
    return finish("memory", result, started)


if __name__ == "__main__":
    sys.exit(main())
