"""Resolution at scale: service backends equal the definition, pod for pod, in file order."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from typing import Any

from peerwall.model import Topology, topology_from_data
from peerwall.model.resolve import BackendIndex
from peerwall.model.topology import Pod

LABELS = {"app": [f"a{i}" for i in range(40)], "tier": ["web", "db", "cache"], "v": ["1", "2"]}


def generated(pods: int, services: int, seed: int) -> dict[str, Any]:
    """C0 offloads four namespaces to C1 and C2; C1 has pods of its own in the same names.

    Labels are drawn so that selectors of one to three labels match many, few or no pods, and
    some select labels no pod carries.
    """
    rng = random.Random(seed)
    namespaces = ["n0", "n1", "n2", "n3"]

    def labels() -> dict[str, str]:
        keys = rng.sample(sorted(LABELS), rng.randint(0, 3))
        return {k: rng.choice(LABELS[k]) for k in keys}

    pod_list = []
    for i in range(pods):
        home = "C0" if i % 4 else "C1"
        pod: dict[str, Any] = {"name": f"p{i}", "cluster": home, "labels": labels()}
        if home == "C0" and i % 5:
            pod["namespace"] = rng.choice(namespaces)
            pod["runsOn"] = rng.choice(["C0", "C1", "C2"])
        pod_list.append(pod)
    service_list = []
    for i in range(services):
        selector = labels()
        if i % 17 == 0:
            selector["app"] = "nobody"
        service_list.append(
            {
                "name": f"s{i}",
                "cluster": rng.choice(["C0", "C0", "C1"]),
                "namespace": rng.choice([*namespaces, "default"]) if i % 3 else "default",
                "selector": selector,
            }
        )
    for s in service_list:  # C1 declares no namespace of its own
        if s["cluster"] == "C1":
            s["namespace"] = "default"
    return {
        "clusters": [
            {"name": "C0", "podCIDR": "10.0.0.0/14", "serviceCIDR": "10.96.0.0/16"},
            {"name": "C1", "podCIDR": "10.4.0.0/14", "serviceCIDR": "10.97.0.0/16"},
            {"name": "C2", "podCIDR": "10.8.0.0/14", "serviceCIDR": "10.98.0.0/16"},
        ],
        "peerings": [{"consumer": "C0", "provider": "C1"}, {"consumer": "C0", "provider": "C2"}],
        "namespaces": [
            {"name": n, "cluster": "C0", "offloadedTo": ["C1", "C2"]} for n in namespaces
        ],
        "pods": pod_list,
        "services": service_list,
    }


def naive_backends(t: Topology, service: str) -> tuple[str, ...]:
    """The definition (DESIGN.md §1), one pod at a time."""
    s = t.service_by_name[service]
    return tuple(
        p.name
        for p in t.pods
        if p.home == s.home
        and p.namespace == s.namespace
        and s.selector
        and all(p.labels.get(k) == v for k, v in s.selector.items())
    )


def test_backends_equal_the_definition_on_every_service():
    t = topology_from_data(generated(pods=3000, services=300, seed=1), "generated")
    for s in t.services:
        assert s.backends == naive_backends(t, s.name), s.name
    sizes = [len(s.backends) for s in t.services]
    # The generator is not degenerate: empty, small and large selections all occur.
    assert 0 in sizes and max(sizes) > 100 and any(0 < n < 10 for n in sizes)
    assert any(t.pod_by_name[b].offloaded for s in t.services for b in s.backends)


def test_twenty_thousand_pods_and_two_thousand_services():
    # Sized so that the former pairwise comparison (every service with every pod of its
    # namespace) would dominate; the result is checked against the definition on a sample.
    t = topology_from_data(generated(pods=20_000, services=2_000, seed=2), "generated")
    assert len(t.pods) == 20_000 and len(t.services) == 2_000
    for s in t.services[::50]:
        assert s.backends == naive_backends(t, s.name), s.name


class CountingLabels(dict[str, str]):
    """Labels that count how often a selector looks at them."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingLabels.reads += 1
        return super().get(key, default)


def test_selection_looks_only_at_candidate_pods():
    # 2,000 pods share app=web; each of 200 services also selects the one pod with its id.
    # Comparing every service with every pod would read labels 200 x 2,000 times; the index
    # reads them only for the pods carrying the rarest label of each selector.
    pods = [
        Pod(f"p{i}", "C1", "shop", "C1", CountingLabels(app="web", id=str(i)), IPv4Address(i + 1))
        for i in range(2000)
    ]
    index = BackendIndex(pods)
    CountingLabels.reads = 0
    for i in range(0, 2000, 10):
        assert index.select("C1", "shop", {"app": "web", "id": str(i)}) == (f"p{i}",)
    assert index.select("C1", "shop", {"app": "web"}) == tuple(p.name for p in pods)
    assert index.select("C1", "other", {"app": "web"}) == ()
    assert CountingLabels.reads <= 200 * 2
