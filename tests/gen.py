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


def generate_services(seed: int, big: int = 200) -> dict[str, Any]:
    """Four clusters that all keep the default service CIDR (as kubeadm clusters do), one of
    them with a pod CIDR equal to another's service CIDR; services with 0, 1, 2, 33, 75 and
    ``big`` backends, some absent from some clusters, across peerings and offloading."""
    rnd = random.Random(seed)
    clusters = [
        {"name": "K1", "podCIDR": "10.244.0.0/16"},
        {"name": "K2", "podCIDR": "10.244.0.0/16", "apiServer": "apiK2"},
        # K3's pods sit where everyone else keeps its services: the others must remap them.
        {"name": "K3", "podCIDR": "10.96.0.0/16", "serviceCIDR": "10.97.0.0/16"},
        {"name": "K4", "podCIDR": "10.30.0.0/16"},
    ]
    peerings = [
        {"consumer": "K1", "provider": "K2"},
        {"consumer": "K1", "provider": "K3", "securityMode": rnd.choice(MODES)},
        {"consumer": "K4", "provider": "K2"},
    ]
    namespaces = [{"name": "apps", "cluster": "K1", "offloadedTo": ["K2", "K3"]}]
    pods: list[dict[str, Any]] = []

    def add(
        n: int, home: str, ns: str, app: str, runs_on: tuple[str | None, ...] = (None,)
    ) -> None:
        for _ in range(n):
            p: dict[str, Any] = {"name": f"p{len(pods)}", "cluster": home, "namespace": ns}
            if (where := rnd.choice(runs_on)) is not None:
                p["runsOn"] = where
            p["labels"] = {"app": app}
            pods.append(p)

    add(big, "K1", "apps", "big", (None, None, "K2", "K3"))
    for p in pods[: min(75, big)]:  # a 75-backend service over the same pods: fewer namespaces
        p["labels"]["tier"] = "mid"
    add(33, "K2", "default", "k2")
    add(2, "K4", "default", "k4")
    add(1, "K3", "default", "k3")
    add(2, "K1", "default", "k1")
    services = [
        {"name": "big", "cluster": "K1", "namespace": "apps", "selector": {"app": "big"}},
        {"name": "mid", "cluster": "K1", "namespace": "apps", "selector": {"tier": "mid"}},
        {"name": "k2svc", "cluster": "K2", "selector": {"app": "k2"}},
        {"name": "empty2", "cluster": "K2", "selector": {"app": "nobody"}},  # absent from K4
        {"name": "k4svc", "cluster": "K4", "selector": {"app": "k4"}},  # 10.96.0.1 in K4 too
        {"name": "k3svc", "cluster": "K3", "selector": {"app": "k3"}},
        {"name": "empty1", "cluster": "K1", "namespace": "apps", "selector": {"app": "none"}},
    ]
    return {
        "clusters": clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": pods,
        "services": services,
    }
