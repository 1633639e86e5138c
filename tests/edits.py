"""Random valid live edits of a topology dict, one kind each (issue 8's edit kinds): shared by
tests/lab/test_live_edits.py and bench/live_edits_bench.py."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import yaml

MODES = ("FullPodToPod", "IntraClusterTrafficSegregation")
Data = dict[str, Any]


def three() -> Data:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    data: Data = yaml.safe_load(text)
    return data


def pods_on(data: Data, cluster: str) -> list[Data]:
    return [p for p in data["pods"] if p.get("runsOn", p["cluster"]) == cluster]


def providers(data: Data, consumer: str) -> set[str]:
    return {p["provider"] for p in data["peerings"] if p["consumer"] == consumer}


def linked(data: Data, a: str, b: str) -> bool:
    return any({p["consumer"], p["provider"]} == {a, b} for p in data["peerings"])


class Edits:
    """Valid edits of a topology dict, one kind each; each returns a description or None when
    that kind cannot apply to this topology right now."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.n = 0

    def new_name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def add_pod(self, d: Data) -> str | None:
        ns = self.rnd.choice(
            [{"name": "default", "cluster": c["name"]} for c in d["clusters"]] + d["namespaces"]
        )
        pod: Data = {
            "name": self.new_name("n"),
            "cluster": ns["cluster"],
            "namespace": ns["name"],
            "labels": {"app": self.rnd.choice(["web", "db", "job"])},
        }
        if ns.get("offloadedTo") and self.rnd.random() < 0.6:
            pod["runsOn"] = self.rnd.choice(ns["offloadedTo"])
        d["pods"].append(pod)
        return f"add pod {pod['name']} ({pod['cluster']}/{pod['namespace']}, runs on {pod.get('runsOn', pod['cluster'])})"

    def remove_pod(self, d: Data) -> str | None:
        if len(d["pods"]) <= 3:
            return None
        pod = d["pods"].pop(self.rnd.randrange(len(d["pods"])))
        return f"remove pod {pod['name']}"

    def relabel(self, d: Data) -> str | None:
        pod = self.rnd.choice(d["pods"])
        old = pod.setdefault("labels", {}).get("app")
        pod["labels"]["app"] = self.rnd.choice(
            [a for a in ("web", "db", "job", "cache") if a != old]
        )
        return f"relabel {pod['name']} app={pod['labels']['app']}"

    def reselect(self, d: Data) -> str | None:
        svc = self.rnd.choice(d["services"])
        svc["selector"] = {"app": self.rnd.choice(["web", "db", "job", "cache"])}
        return f"service {svc['name']} selects app={svc['selector']['app']}"

    def offload_more(self, d: Data) -> str | None:
        for ns in self.rnd.sample(d["namespaces"], len(d["namespaces"])):
            more = sorted(providers(d, ns["cluster"]) - set(ns.get("offloadedTo", [])))
            if more:
                ns.setdefault("offloadedTo", []).append(self.rnd.choice(more))
                return f"offload {ns['cluster']}/{ns['name']} to {ns['offloadedTo'][-1]} too"
        return None

    def offload_less(self, d: Data) -> str | None:
        for ns in self.rnd.sample(d["namespaces"], len(d["namespaces"])):
            if ns.get("offloadedTo"):
                gone = ns["offloadedTo"].pop(self.rnd.randrange(len(ns["offloadedTo"])))
                for p in d["pods"]:  # its pods there come home
                    if (
                        p["cluster"] == ns["cluster"]
                        and p.get("namespace") == ns["name"]
                        and p.get("runsOn") == gone
                    ):
                        del p["runsOn"]
                return f"stop offloading {ns['cluster']}/{ns['name']} to {gone}"
        return None

    def add_peering(self, d: Data) -> str | None:
        names = [c["name"] for c in d["clusters"]]
        pairs = [(a, b) for a in names for b in names if a != b and not linked(d, a, b)]
        if not pairs:
            return None
        a, b = self.rnd.choice(pairs)
        d["peerings"].append({"consumer": a, "provider": b})
        return f"peer {a} -> {b}"

    def remove_peering(self, d: Data) -> str | None:
        used = {(ns["cluster"], t) for ns in d["namespaces"] for t in ns.get("offloadedTo", [])}
        free = [p for p in d["peerings"] if (p["consumer"], p["provider"]) not in used]
        if not free:
            return None
        p = self.rnd.choice(free)
        d["peerings"].remove(p)
        return f"unpeer {p['consumer']} -> {p['provider']}"

    def peering_mode(self, d: Data) -> str | None:
        p = self.rnd.choice(d["peerings"])
        mode = self.rnd.choice(MODES)
        for q in d["peerings"]:  # both directions of a link share one mode
            if {q["consumer"], q["provider"]} == {p["consumer"], p["provider"]}:
                q["securityMode"] = mode
        return f"peering {p['consumer']}-{p['provider']}: {mode}"

    def cluster_mode(self, d: Data) -> str | None:
        c = self.rnd.choice(d["clusters"])
        c["securityMode"] = self.rnd.choice(MODES)
        return f"cluster {c['name']}: {c['securityMode']}"

    def add_cluster(self, d: Data) -> str | None:
        if len(d["clusters"]) >= 5:
            return None
        name = f"K{len(d['clusters']) + 1}"
        cidr = self.rnd.choice(["10.244.0.0/16", f"10.{60 + len(d['clusters'])}.0.0/16"])
        d["clusters"].append({"name": name, "podCIDR": cidr, "serviceCIDR": "10.96.0.0/16"})
        peer = self.rnd.choice([c["name"] for c in d["clusters"][:-1]])
        d["peerings"].append({"consumer": peer, "provider": name})
        d["pods"].append({"name": self.new_name("k"), "cluster": name, "labels": {"app": "web"}})
        return f"add cluster {name} ({cidr}) peered with {peer}"

    def kinds(self) -> list[Callable[[Data], str | None]]:
        return [
            self.add_pod,
            self.remove_pod,
            self.relabel,
            self.reselect,
            self.offload_more,
            self.offload_less,
            self.add_peering,
            self.remove_peering,
            self.peering_mode,
            self.cluster_mode,
            self.add_cluster,
        ]


def edited(rnd: random.Random, data: Data, rounds: int = 4) -> Iterator[tuple[str, str, Data]]:
    """Each kind of edit ``rounds`` times, shuffled, applied one after the other from ``data``
    (which stays as it is): (description, kind, the topology after it) for each edit that could
    apply at its turn; the others are skipped."""
    edits = Edits(rnd)
    schedule = edits.kinds() * rounds
    rnd.shuffle(schedule)
    for edit in schedule:
        candidate = copy.deepcopy(data)
        what = edit(candidate)
        if what is not None:
            data = candidate
            yield what, edit.__name__, data
