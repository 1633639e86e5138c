"""Deterministic generated topologies for lab tests.

Each one has, whatever the seed: 3 or 4 clusters; two peerings between the same two clusters (one
each way); a namespace offloaded to two providers; overlapping and disjoint pod CIDRs; services with
backends in several clusters; a per-peering mode and a per-cluster install-time mode. The seed
varies the pods, labels, modes and which clusters have an API server.
"""

from __future__ import annotations

import random
from typing import Any

MODES = ("FullPodToPod", "IntraClusterTrafficSegregation")


def generate(seed: int, clusters: int = 3) -> dict[str, Any]:
    assert clusters in (3, 4)
    rnd = random.Random(seed)
    names = [f"K{i + 1}" for i in range(clusters)]
    cidrs = ["10.244.0.0/16", "10.244.0.0/16", f"10.{50 + seed % 100}.0.0/16", "10.244.0.0/16"]
    out_clusters: list[dict[str, Any]] = []
    for i, n in enumerate(names):
        c: dict[str, Any] = {
            "name": n,
            "podCIDR": cidrs[i],
            "serviceCIDR": f"10.{96 + i % 2}.0.0/16",
        }
        if rnd.random() < 0.6:
            c["apiServer"] = f"api{n}"
        out_clusters.append(c)
    # One install-time mode, always on the second cluster; the other clusters use the default.
    out_clusters[1]["securityMode"] = rnd.choice(MODES)
    k1, k2, k3 = names[:3]
    peerings: list[dict[str, Any]] = [
        {"consumer": k1, "provider": k2},
        {"consumer": k2, "provider": k1},
        {"consumer": k1, "provider": k3, "securityMode": rnd.choice(MODES)},
    ]
    if clusters == 4:
        peerings.append({"consumer": names[3], "provider": k3})
    namespaces = [
        {"name": "shared", "cluster": k1, "offloadedTo": [k2, k3]},
        {"name": "back", "cluster": k2, "offloadedTo": [k1]},
    ]
    pods: list[dict[str, Any]] = []

    def pod(home: str, ns: str, runs_on: str | None = None) -> None:
        p: dict[str, Any] = {"name": f"p{len(pods)}", "cluster": home, "namespace": ns}
        if runs_on:
            p["runsOn"] = runs_on
        p["labels"] = {"app": rnd.choice(("a", "b"))}
        pods.append(p)

    pod(k1, "shared")
    pod(k1, "shared", k2)
    pod(k1, "shared", k3)
    pod(k1, "default")
    pod(k2, "back", k1)
    pod(k2, "default")
    pod(k3, "default")
    if clusters == 4:
        pod(names[3], "default")
    for _ in range(rnd.randint(0, 3)):
        pod(k1, "shared", rnd.choice((None, k2, k3)))
    # Backends in three clusters: every pod of "shared" has app=x as well.
    for p in pods:
        if p["namespace"] == "shared":
            p["labels"]["tier"] = "x"
    services = [
        {"name": "spread", "cluster": k1, "namespace": "shared", "selector": {"tier": "x"}},
        {"name": "sa", "cluster": k1, "namespace": "shared", "selector": {"app": "a"}},
        {"name": "local", "cluster": k1, "selector": {"app": pods[3]["labels"]["app"]}},
        {
            "name": "backsvc",
            "cluster": k2,
            "namespace": "back",
            "selector": {"app": pods[4]["labels"]["app"]},
        },
        {"name": "s3", "cluster": k3, "selector": {"app": pods[6]["labels"]["app"]}},
    ]
    return {
        "clusters": out_clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": pods,
        "services": services,
    }
