"""Policy core at scale: load + validate, expected table (time and memory), JSON output.

Usage: python bench/policy_bench.py [--clusters 20] [--pods 10000] [--services 1000]
                                    [--json-pods 2000] [--seed 1]

One run measures, side by side:
- YAML load + validate + resolve (``load_topology``) of a generated topology of 20 clusters,
  10,000 pods and 1,000 services;
- ``expect()`` for that topology, in both modes: wall time, tracemalloc peak, and the peak RSS of
  a fresh subprocess that only loads the file and computes the table;
- ``write_json`` of the full table of a 2,000-pod topology to a file.

Targets (DESIGN/brief): table < 2 s and < 1 GiB; JSON for 2,000 pods < 10 s.
Prints a human summary, writes bench/results/policy.json, and prints one JSON line last, for a
bench runner to collect. Exits 1 when a target is missed. Needs no root.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml

from peerings import directed_modes, peerings_of
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import Verdict, expect
from peerwall.policy.tablejson import write_json

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("PEERWALL_BENCH_RESULTS") or HERE / "results") / "policy.json"
MODES = (SecurityMode.FULL_POD_TO_POD, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
TABLE_SECONDS = 2.0
TABLE_BYTES = 1 << 30
JSON_SECONDS = 10.0

_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # what load_topology uses


# --- the generated topology ----------------------------------------------------------------------


def pod_cidr(i: int, clusters: int) -> str:
    """Every third cluster reuses 10.244.0.0/16, the others get their own /16; beyond 150
    clusters (10.x has 256 /16s, and the remaps need room) the same with /20s."""
    if clusters <= 150:
        return "10.244.0.0/16" if i % 3 == 0 else f"10.{100 + i}.0.0/16"
    k = 256 + i  # 10.0.0.0/8 has 4,096 /20s; the first 16 /16s are left to the remaps
    return "10.244.0.0/20" if i % 3 == 0 else f"10.{k // 16}.{(k % 16) * 16}.0/20"


def generate(
    clusters: int = 20, pods: int = 10_000, services: int = 1_000, seed: int = 1
) -> dict[str, Any]:
    """A deterministic, Liqo-like topology in the contract format.

    - Every third cluster reuses 10.244.0.0/16 (overlapping CIDRs, remapped by Liqo); the others
      get their own /16. A third of the clusters set an install-time mode; all name an API server.
    - Each cluster peers towards 3 providers (its ring successor and two random ones); some links
      are peered both ways and some set a per-peering mode (the same on both directions).
    - Each cluster has 6 namespaces; 4 are offloaded to 1–3 of its providers.
    - Pods belong to deployments of 5 replicas (shared ``app`` label); a replica in an offloaded
      namespace runs on one of the namespace's providers half of the time.
    - Services select one deployment each, so many have backends in several clusters.
    """
    rnd = random.Random(seed)
    names = [f"C{i:02d}" for i in range(1, clusters + 1)]
    modes = [m.value for m in MODES]

    out_clusters = []
    for i, name in enumerate(names):
        c: dict[str, Any] = {
            "name": name,
            "podCIDR": pod_cidr(i, clusters),
            "serviceCIDR": "10.96.0.0/16",
            "internet": f"I{i + 1:02d}",
            "apiServer": f"A{i + 1:02d}",
        }
        if i % 3 == 1:
            c["securityMode"] = rnd.choice(modes)
        out_clusters.append(c)

    def targets(i: int, name: str) -> set[str]:
        others = [n for n in names if n != name]
        return {names[(i + 1) % clusters], *rnd.sample(others, 2)}

    peerings, providers = peerings_of(directed_modes(names, targets, rnd, modes), names)

    namespaces = []
    offloaded: dict[tuple[str, str], list[str]] = {}
    for c in names:
        for k in range(6):
            ns = f"ns{k}"
            entry: dict[str, Any] = {"name": ns, "cluster": c}
            if k < 4:
                entry["offloadedTo"] = rnd.sample(
                    providers[c], min(len(providers[c]), rnd.randint(1, 3))
                )
            namespaces.append(entry)
            offloaded[(c, ns)] = entry.get("offloadedTo", [])

    out_pods = []
    deployments: list[tuple[str, str, str]] = []
    replicas = 5
    for d in range(pods // replicas):
        home = names[d % clusters]
        ns = rnd.choice(["default", *(f"ns{k}" for k in range(6))])
        app = f"app{d}"
        deployments.append((home, ns, app))
        for r in range(replicas):
            pod: dict[str, Any] = {
                "name": f"p{d}-{r}",
                "cluster": home,
                "namespace": ns,
                "labels": {"app": app, "tier": rnd.choice(["web", "db", "cache"])},
            }
            targets = offloaded.get((home, ns), [])
            if targets and rnd.random() < 0.5:
                pod["runsOn"] = rnd.choice(targets)
            out_pods.append(pod)

    out_services = []
    for s, (home, ns, app) in enumerate(rnd.sample(deployments, min(services, len(deployments)))):
        out_services.append(
            {"name": f"svc{s}", "cluster": home, "namespace": ns, "selector": {"app": app}}
        )

    return {
        "clusters": out_clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": out_pods,
        "services": out_services,
    }


def to_yaml(data: dict[str, Any]) -> str:
    text: str = yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None)
    return text


# --- measurements --------------------------------------------------------------------------------


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    gc.collect()
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def best_of(n: int, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    value, best = timed(fn, *args, **kwargs)
    for _ in range(n - 1):
        value, t = timed(fn, *args, **kwargs)
        best = min(best, t)
    return value, best


def traced_peak(fn: Any, *args: Any, **kwargs: Any) -> int:
    """Peak bytes Python allocated while ``fn`` ran (tracemalloc; slower, so not timed)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def child_rss(path: Path) -> dict[str, int]:
    """Peak RSS of a fresh interpreter that loads ``path`` and computes both tables."""
    done = subprocess.run(
        [sys.executable, __file__, "--child-rss", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child_main(path: str) -> None:
    text = Path(path).read_text()
    topology = load_topology(text, path)
    after_load = maxrss_bytes()
    tables = [expect(topology, mode) for mode in MODES]
    after_expect = maxrss_bytes()
    assert all(t.table.sources for t in tables)
    print(json.dumps({"after_load": after_load, "after_expect": after_expect}))


def count_classes(topology: Topology) -> dict[str, int]:
    table = expect(topology, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    return {
        "row_classes": len(table.blocks),
        "column_classes": len(table.blocks[0]) if table.blocks else 0,
        "cells": len(table.sources) * (len(table.destinations) - 1),
    }


def verdict_counts(topology: Topology, mode: SecurityMode) -> dict[str, int]:
    """Cell counts per verdict, from the class blocks (exact, without expanding the table)."""
    table = expect(topology, mode).table
    rows: dict[int, int] = {}
    for rc in table.row_class:
        rows[rc] = rows.get(rc, 0) + 1
    cols: dict[int, int] = {}
    for cc in table.col_class:
        cols[cc] = cols.get(cc, 0) + 1
    out = {v.value: 0 for v in Verdict if v is not Verdict.ERROR}
    for rc, nr in rows.items():
        for cc, nc in cols.items():
            out[table.blocks[rc][cc].value] += nr * nc
    # The diagonal (a pod to itself) is YES by the intra-cluster rule and is not a cell.
    out[Verdict.YES.value] -= len(table.sources)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--services", type=int, default=1_000)
    ap.add_argument("--json-pods", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the timings")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child-rss", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_rss:
        child_main(args.child_rss)
        return 0

    with tempfile.TemporaryDirectory(prefix="peerwall-bench-") as tmp:
        work = Path(tmp)

        # 1. Load + validate.
        data = generate(args.clusters, args.pods, args.services, args.seed)
        text = to_yaml(data)
        big = work / "big.yaml"
        big.write_text(text)
        _, parse_s = best_of(args.repeat, yaml.load, text, Loader=_Loader)
        topology, load_s = best_of(args.repeat, load_topology, text, str(big))
        assert isinstance(topology, Topology)

        # 2. The expected tables: time, Python peak, process peak.
        table_s = {}
        table_peak = {}
        for mode in MODES:
            _, table_s[mode.value] = best_of(args.repeat, expect, topology, mode)
            table_peak[mode.value] = traced_peak(expect, topology, mode)
        rss = child_rss(big)
        classes = count_classes(topology)
        verdicts = {m.value: verdict_counts(topology, m) for m in MODES}

        # 3. JSON output of a 2,000-pod table.
        small = load_topology(
            to_yaml(generate(args.clusters, args.json_pods, args.json_pods // 10, args.seed)),
            "json.yaml",
        )
        small_expected, small_table_s = timed(
            expect, small, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
        )
        out_json = work / "table.json"

        def write() -> None:
            with out_json.open("w") as f:
                write_json(small_expected.table, f)

        _, json_s = best_of(args.repeat, write)
        json_bytes = out_json.stat().st_size
        # Check the file really is the contract JSON before reporting its time.
        parsed = json.loads(out_json.read_text())
        assert parsed["sources"] == list(small.sources)
        assert len(parsed["matrix"]) == len(small.sources)
        json_cells = len(small.sources) * (len(small.destinations) - 1)

    worst_table_s = max(table_s.values())
    worst_peak = max(table_peak.values())
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "topology": {
            "clusters": len(topology.clusters),
            "peerings": len(topology.peerings),
            "namespaces": len(topology.namespaces),
            "pods": len(topology.pods),
            "offloaded_pods": sum(p.offloaded for p in topology.pods),
            "services": len(topology.services),
            "services_with_backends_in_several_clusters": sum(
                len({topology.pod_by_name[b].physical for b in s.backends}) > 1
                for s in topology.services
            ),
            "yaml_bytes": len(text.encode()),
            **classes,
        },
        "load": {"yaml_parse_s": parse_s, "load_validate_resolve_s": load_s},
        "expect": {
            "seconds": table_s,
            "tracemalloc_peak_bytes": table_peak,
            "child_maxrss_after_load_bytes": rss["after_load"],
            "child_maxrss_after_expect_bytes": rss["after_expect"],
            "verdict_cells": verdicts,
        },
        "json": {
            "pods": len(small.pods),
            "services": len(small.services),
            "cells": json_cells,
            "expect_s": small_table_s,
            "write_json_s": json_s,
            "bytes": json_bytes,
        },
        "targets": {
            "table_under_2s": worst_table_s < TABLE_SECONDS,
            "table_under_1GiB": max(worst_peak, rss["after_expect"]) < TABLE_BYTES,
            "json_2000_pods_under_10s": json_s < JSON_SECONDS,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    mib = 1 << 20
    t = results["topology"]
    print(
        f"topology: {t['clusters']} clusters, {t['peerings']} peerings, {t['pods']} pods "
        f"({t['offloaded_pods']} offloaded), {t['services']} services "
        f"({t['services_with_backends_in_several_clusters']} with backends in several clusters)"
    )
    print(
        f"          {t['cells']:,} cells in {t['row_classes']} row x {t['column_classes']} "
        f"column classes; YAML {t['yaml_bytes'] / mib:.1f} MiB"
    )
    print(f"load:     YAML parse {parse_s:.2f} s; load + validate + resolve {load_s:.2f} s")
    for mode in MODES:
        v = verdicts[mode.value]
        print(
            f"expect:   {mode.value:<31} {table_s[mode.value]:.3f} s, "
            f"tracemalloc peak {table_peak[mode.value] / mib:.1f} MiB "
            f"(YES {v['YES']:,} / PARTIAL {v['PARTIAL']:,} / NO {v['NO']:,})"
        )
    print(
        f"          subprocess peak RSS: {rss['after_load'] / mib:.0f} MiB after load, "
        f"{rss['after_expect'] / mib:.0f} MiB after both tables"
    )
    print(
        f"json:     {len(small.pods)} pods, {json_cells:,} cells: write_json {json_s:.2f} s, "
        f"{json_bytes / mib:.1f} MiB (expect {small_table_s:.3f} s)"
    )
    ok = all(results["targets"].values())
    marks = ", ".join(f"{k}={'ok' if v else 'MISSED'}" for k, v in results["targets"].items())
    print(f"targets:  {marks}")
    print(f"results:  {args.out}")
    print(json.dumps({"bench": "policy", **results["targets"], "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
