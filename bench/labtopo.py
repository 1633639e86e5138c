"""The 3-cluster lab topology the lab and verification benchmarks probe (seeded, any size)."""

from __future__ import annotations

import random
from typing import Any


def topology(pods: int, services: int) -> dict[str, Any]:
    """3 clusters (two sharing 10.244.0.0/16, one in segregation), 3 peerings, one namespace of
    C1 offloaded to C2 and C3 (60% of C1's pods live there, on any of the three), ``services``
    services of C1, half of them in the offloaded namespace."""
    rnd = random.Random(7)
    clusters = [
        {"name": "C1", "podCIDR": "10.244.0.0/16", "apiServer": "A1"},
        {
            "name": "C2",
            "podCIDR": "10.244.0.0/16",
            "securityMode": "IntraClusterTrafficSegregation",
        },
        {"name": "C3", "podCIDR": "10.50.0.0/16"},
    ]
    peerings = [
        {"consumer": "C1", "provider": "C2"},
        {"consumer": "C1", "provider": "C3"},
        {"consumer": "C2", "provider": "C3"},
    ]
    namespaces = [{"name": "app", "cluster": "C1", "offloadedTo": ["C2", "C3"]}]
    out_pods = []
    for i in range(pods):
        home = rnd.choice(("C1", "C1", "C2", "C3"))
        p: dict[str, Any] = {
            "name": f"p{i}",
            "cluster": home,
            "labels": {"app": f"a{i % services}"},
        }
        if home == "C1" and rnd.random() < 0.6:
            p["namespace"] = "app"
            p["runsOn"] = rnd.choice(("C1", "C2", "C3"))
        out_pods.append(p)
    svcs = [
        {
            "name": f"s{i}",
            "cluster": "C1",
            "namespace": "app" if i % 2 else "default",
            "selector": {"app": f"a{i}"},
        }
        for i in range(services)
    ]
    return {
        "clusters": clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": out_pods,
        "services": svcs,
    }
