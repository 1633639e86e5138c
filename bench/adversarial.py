"""An adversarial topology for the truth-table bench: what ``policy_bench.generate`` hides.

``policy_bench.generate`` has every service select exactly one deployment of 5 pods, in 20
clusters with /16 pod CIDRs. Real virtual clusters are less kind, so this one has, per cluster:

- **overlapping CIDRs**: every third cluster uses the same 10.244.0.0/20 and every seventh the
  same 10.245.0.0/19 (so that a /19 and /20s of other clusters must be remapped against each
  other); the rest get their own /20 (Liqo remaps every overlap, once per peer);
- **deep offloading**: 6 of 8 namespaces are offloaded to 2–6 of the cluster's providers, and
  60% of their pods run on one of them; each cluster peers with its ring successor and 4 random
  clusters (some links set a per-peering mode), a third set an install-time mode;
- **services selecting whole tiers and whole namespaces**: of the services (a tenth as many as
  pods) 15% select a whole tier of a namespace (``tier: web``), 5% a whole namespace (a label
  every pod of the namespace carries), 20% a tier of a deployment, the rest one deployment (10
  replicas); so every pod backs several services (its deployment's, its tier's, its namespace's).

Deterministic for a seed. ``generate(clusters, pods, services, seed)`` returns the contract's
dict, like ``policy_bench.generate``.
"""

from __future__ import annotations

import random
from typing import Any

from peerings import directed_modes, peerings_of

MODES = ("FullPodToPod", "IntraClusterTrafficSegregation")
TIERS = ("web", "api", "db", "cache", "batch")
NAMESPACES = 8
OFFLOADED_NAMESPACES = 6
REPLICAS = 10


def pod_cidr(i: int) -> str:
    """Overlapping groups (every 3rd: one /20, every 7th: one /19), else a /20 of its own."""
    if i % 3 == 0:
        return "10.244.0.0/20"
    if i % 7 == 0:
        return "10.245.0.0/19"
    # 10.0.0.0/8 has 4,096 /20s; the first 16 /16s are left to the remaps.
    k = 256 + i
    return f"10.{k // 16}.{(k % 16) * 16}.0/20"


def generate(
    clusters: int = 1000, pods: int = 1_000_000, services: int = 100_000, seed: int = 1
) -> dict[str, Any]:
    rnd = random.Random(seed)
    names = [f"C{i:04d}" for i in range(clusters)]
    out_clusters = []
    for i, name in enumerate(names):
        c: dict[str, Any] = {
            "name": name,
            "podCIDR": pod_cidr(i),
            "serviceCIDR": "10.96.0.0/16",
            "internet": f"I{i:04d}",
            "apiServer": f"A{i:04d}",
        }
        if i % 3 == 1:
            c["securityMode"] = rnd.choice(MODES)
        out_clusters.append(c)

    def targets(i: int, name: str) -> set[str]:
        others = rnd.sample(range(clusters), min(clusters, 5))
        return {names[(i + 1) % clusters], *(names[j] for j in others if j != i)}

    peerings, providers = peerings_of(directed_modes(names, targets, rnd, MODES), names)

    namespaces = []
    offloaded: dict[tuple[str, str], list[str]] = {}
    for c in names:
        for k in range(NAMESPACES):
            entry: dict[str, Any] = {"name": f"ns{k}", "cluster": c}
            if k < OFFLOADED_NAMESPACES and providers[c]:
                many = min(len(providers[c]), rnd.randint(2, 6))
                entry["offloadedTo"] = rnd.sample(providers[c], many)
            namespaces.append(entry)
            offloaded[(c, f"ns{k}")] = entry.get("offloadedTo", [])

    out_pods: list[dict[str, Any]] = []
    deployments: list[tuple[str, str, str, str]] = []
    for d in range(pods // REPLICAS):
        home = names[d % clusters]
        ns = f"ns{rnd.randrange(NAMESPACES)}"
        app, tier = f"app{d}", rnd.choice(TIERS)
        deployments.append((home, ns, app, tier))
        targets = offloaded[(home, ns)]
        for r in range(REPLICAS):
            pod: dict[str, Any] = {
                "name": f"p{d}-{r}",
                "cluster": home,
                "namespace": ns,
                # "team" is the same for every pod of the namespace: a namespace-wide selector.
                "labels": {"app": app, "tier": tier, "team": f"{home}-{ns}"},
            }
            if targets and rnd.random() < 0.6:
                pod["runsOn"] = rnd.choice(targets)
            out_pods.append(pod)

    out_services = []
    for s in range(services):
        home, ns, app, tier = deployments[rnd.randrange(len(deployments))]
        roll = rnd.random()
        if roll < 0.15:
            selector = {"tier": tier}
        elif roll < 0.20:
            selector = {"team": f"{home}-{ns}"}
        elif roll < 0.40:
            selector = {"app": app, "tier": tier}
        else:
            selector = {"app": app}
        out_services.append(
            {"name": f"svc{s}", "cluster": home, "namespace": ns, "selector": selector}
        )
    return {
        "clusters": out_clusters,
        "peerings": peerings,
        "namespaces": namespaces,
        "pods": out_pods,
        "services": out_services,
    }
