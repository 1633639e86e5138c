"""Hypothesis strategies for VALID topology dicts in the contract format (DESIGN.md §2).

Each strategy draws a plain dict, exactly what ``yaml.safe_load`` gives for a topology file, so
tests can feed it to ``topology_from_data`` or dump it to YAML for the CLI and the lab.

- ``topologies()``: 2–5 clusters, up to 12 pods and 6 services, decorated names, every optional
  field exercised (modes per cluster and per peering, explicit IPs, API servers, internets).
- ``small_topologies()``: ≤ 3 clusters, ≤ 6 pods, ≤ 3 services, plain short names (``C1``,
  ``P2``, ``S1``…) fit for building real network-namespace labs.
- ``reflecting_topologies()``: ``topologies()`` with Liqo's reflection policy on peerings and
  marks on services.

What is generated, and the rule each choice respects:

- pod CIDRs are drawn from a pool with duplicates (10.244.0.0/16 twice) and disjoint ones, so
  topologies mix overlapping and disjoint CIDRs; a service CIDR never overlaps its cluster's pod
  CIDR (the default 10.96.0.0/16 overlaps none of the pool);
- each unordered pair of clusters gets no peering, one direction, or both; a link's
  ``securityMode`` is drawn once and each direction either sets it or not, so the two directions
  never conflict;
- namespaces are offloaded only to providers of a peering whose consumer is their cluster;
- a pod's ``runsOn`` is absent, its own cluster, or a cluster its namespace is offloaded to;
- explicit pod IPs lie in the physical cluster's pod CIDR, are unique there, and avoid the
  network, broadcast and API server addresses;
- names match ``^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`` and are unique across the file.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

from hypothesis import strategies as st

__all__ = ["small_topologies", "topologies"]

MODES = ("FullPodToPod", "IntraClusterTrafficSegregation")

# Duplicates on purpose: overlapping pod CIDRs are the Liqo case that needs remapping.
POD_CIDRS = (
    "10.244.0.0/16",
    "10.245.0.0/16",
    "10.244.0.0/16",
    "192.168.0.0/20",
    "172.20.0.0/24",
    "10.244.0.0/16",
)
SERVICE_CIDRS = ("10.96.0.0/16", "10.97.0.0/16", "10.245.0.0/16", "172.21.0.0/24")
NAMESPACE_NAMES = ("offloaded", "shop", "ns-b.2")
TAIL_CHARS = "abcxyzABZ0189"
LABEL_KEYS = ("app", "tier")
LABEL_VALUES = ("a", "b")
# Few distinct label sets, so that selectors pick several pods (across clusters when offloaded).
LABEL_SETS = (
    (("app", "a"),),
    (),
    (("app", "a"), ("tier", "b")),
    (("app", "b"),),
    (("tier", "a"),),
)

# Hosts handed out as explicit IPs: small offsets, far from the API server's last host.
EXPLICIT_OFFSETS = range(2, 60)


@dataclass(frozen=True)
class Limits:
    min_clusters: int
    max_clusters: int
    max_pods: int
    max_services: int
    decorated_names: bool


FULL = Limits(min_clusters=2, max_clusters=5, max_pods=12, max_services=6, decorated_names=True)
SMALL = Limits(min_clusters=2, max_clusters=3, max_pods=6, max_services=3, decorated_names=False)

# The strategies that do not depend on what was drawn before, built once: a strategy built anew
# for every draw is validated anew (and a list's again for each draw), a good part of the time a
# topology takes to draw. The same strategies as written inline: the same examples.
BOOLS = st.booleans()
SEPARATORS = st.sampled_from("._-")
TAILS = st.text(TAIL_CHARS, min_size=1, max_size=4)
SECOND_TAILS = st.text(TAIL_CHARS, min_size=1, max_size=3)
POD_CIDR_CHOICES = st.sampled_from(POD_CIDRS)
SERVICE_CIDR_CHOICES = {
    pod: st.none()
    | st.sampled_from([s for s in SERVICE_CIDRS if not IPv4Network(s).overlaps(IPv4Network(pod))])
    for pod in POD_CIDRS
}
MODE_CHOICES = st.none() | st.sampled_from(MODES)
SHAPES = st.sampled_from(("forward", "both", "none", "backward", "forward"))
NAMESPACE_CHOICES = {
    count: st.lists(st.sampled_from(NAMESPACE_NAMES), min_size=count, max_size=count, unique=True)
    for count in range(3)
}
LABEL_SET_CHOICES = st.sampled_from(LABEL_SETS)
SELECTORS = st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2)


def _name(draw: st.DrawFn, kind: str, index: int, decorated: bool) -> str:
    """``<kind><index>``, optionally followed by a separator and a short valid tail.

    The kind letter and the digits end at the first separator, so two (kind, index) pairs can
    never give the same name, whatever tails are drawn.
    """
    base = f"{kind}{index}"
    if not decorated or not draw(BOOLS):
        return base
    sep = draw(SEPARATORS)
    tail = draw(TAILS)
    if draw(BOOLS):
        tail += draw(SEPARATORS) + draw(SECOND_TAILS)
    return f"{base}{sep}{tail}"


def _topology(draw: st.DrawFn, limits: Limits) -> dict[str, Any]:
    deco = limits.decorated_names
    n = draw(st.integers(limits.min_clusters, limits.max_clusters))

    # Clusters.
    clusters: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        pod_cidr = draw(POD_CIDR_CHOICES)
        c: dict[str, Any] = {"name": _name(draw, "C", i, deco), "podCIDR": pod_cidr}
        # A service CIDR that does not overlap the pod CIDR, or none.
        service_cidr = draw(SERVICE_CIDR_CHOICES[pod_cidr])
        if service_cidr is not None:
            c["serviceCIDR"] = service_cidr
        if draw(BOOLS):
            c["internet"] = _name(draw, "I", i, deco)
        if draw(BOOLS):
            c["apiServer"] = _name(draw, "A", i, deco)
        mode = draw(MODE_CHOICES)
        if mode is not None:
            c["securityMode"] = mode
        if draw(BOOLS):
            # One per cluster, clear of every pod and service CIDR above (the model does not
            # remap external CIDRs); fullMasquerade needs one.
            c["externalCIDR"] = f"100.{64 + i}.0.0/16"
            if draw(BOOLS):
                c["fullMasquerade"] = True
        clusters.append(c)
    names = [c["name"] for c in clusters]

    # Peerings: per unordered pair none, one direction or both; one mode per link.
    peerings: list[dict[str, Any]] = []
    providers: dict[str, list[str]] = {c: [] for c in names}
    for i in range(n):
        for j in range(i + 1, n):
            shape = draw(SHAPES)
            if shape == "none":
                continue
            directions = {
                "forward": [(i, j)],
                "backward": [(j, i)],
                "both": [(i, j), (j, i)],
            }[shape]
            link_mode = draw(MODE_CHOICES)
            for a, b in directions:
                p: dict[str, Any] = {"consumer": names[a], "provider": names[b]}
                if link_mode is not None and draw(BOOLS):
                    p["securityMode"] = link_mode
                peerings.append(p)
                providers[names[a]].append(names[b])
    peerings = draw(st.permutations(peerings)) if peerings else []

    # Namespaces: offloaded only to providers of the cluster's peerings (possibly several).
    namespaces: list[dict[str, Any]] = []
    offloaded_to: dict[tuple[str, str], list[str]] = {}
    for c in names:
        count = draw(st.integers(0, 2)) if providers[c] else draw(st.integers(0, 1))
        for ns in draw(NAMESPACE_CHOICES[count]):
            # Usually offloaded somewhere (often to several providers), sometimes nowhere.
            targets = (
                draw(st.lists(st.sampled_from(providers[c]), unique=True, min_size=1))
                if providers[c] and draw(st.integers(0, 3))
                else []
            )
            entry: dict[str, Any] = {"name": ns, "cluster": c}
            if targets or draw(BOOLS):
                entry["offloadedTo"] = targets
            namespaces.append(entry)
            offloaded_to[(c, ns)] = targets

    # Pods.
    cidr_of = {c["name"]: IPv4Network(c["podCIDR"]) for c in clusters}
    used_offsets: dict[str, set[int]] = {c: set() for c in names}
    pods: list[dict[str, Any]] = []
    consumers = sorted({c for (c, _), targets in offloaded_to.items() if targets})
    for k in range(1, draw(st.integers(2, limits.max_pods)) + 1):
        # Favour clusters that offload something: their pods can run elsewhere.
        home = draw(st.sampled_from(consumers if consumers and draw(BOOLS) else names))
        own = [n for (c, n) in offloaded_to if c == home]
        # Favour offloaded namespaces: they are where the segregation rules bite.
        ns = draw(st.sampled_from(own)) if own and draw(st.integers(0, 2)) else "default"
        pod: dict[str, Any] = {"name": _name(draw, "P", k, deco), "cluster": home}
        if ns != "default" or draw(BOOLS):
            pod["namespace"] = ns
        physical = home
        targets = offloaded_to.get((home, ns), [])
        choice = draw(st.sampled_from(["absent", "home", *targets, *targets]))
        if choice == "home":
            pod["runsOn"] = home
        elif choice != "absent":
            pod["runsOn"] = physical = choice
        siblings = [q for q in pods if (q["cluster"], q.get("namespace", "default")) == (home, ns)]
        if siblings and draw(BOOLS):
            # A replica of a sibling: same labels, often elsewhere, so a service spans clusters.
            labels = dict(draw(st.sampled_from(siblings)).get("labels", {}))
        else:
            labels = dict(draw(LABEL_SET_CHOICES))
        if labels or draw(BOOLS):
            pod["labels"] = labels
        if draw(st.integers(0, 3)) == 0:
            free = [o for o in EXPLICIT_OFFSETS if o not in used_offsets[physical]]
            offset = draw(st.sampled_from(free))
            used_offsets[physical].add(offset)
            pod["ip"] = str(cidr_of[physical].network_address + offset)
        pods.append(pod)

    # Services: in the home cluster of some pod most of the time, so backends exist, and in
    # offloaded namespaces, so backends are spread over several physical clusters.
    services: list[dict[str, Any]] = []
    offloaded_pods = [p for p in pods if p.get("runsOn", p["cluster"]) != p["cluster"]]
    for k in range(1, draw(st.integers(0, limits.max_services)) + 1):
        anchor = draw(st.sampled_from(offloaded_pods or pods)) if draw(st.integers(0, 4)) else None
        if anchor is not None:
            # Select (some of) an existing pod's labels in its home cluster and namespace.
            cluster, ns = anchor["cluster"], anchor.get("namespace", "default")
            labels = sorted(anchor.get("labels", {}).items())
            keep = draw(st.lists(st.sampled_from(labels), unique=True)) if labels else []
            selector = dict(keep or labels)
        else:
            cluster = draw(st.sampled_from(names))
            ns = draw(st.sampled_from(["default", *(n for (c, n) in offloaded_to if c == cluster)]))
            selector = draw(SELECTORS)
        svc: dict[str, Any] = {"name": _name(draw, "S", k, deco), "cluster": cluster}
        if ns != "default" or draw(BOOLS):
            svc["namespace"] = ns
        if selector or draw(BOOLS):
            svc["selector"] = selector
        services.append(svc)

    out: dict[str, Any] = {"clusters": clusters}
    if peerings or draw(BOOLS):
        out["peerings"] = peerings
    if namespaces or draw(BOOLS):
        out["namespaces"] = namespaces
    out["pods"] = pods
    if services or draw(BOOLS):
        out["services"] = services
    return out


@st.composite
def _topologies(draw: st.DrawFn, limits: Limits) -> dict[str, Any]:
    return _topology(draw, limits)


def topologies() -> st.SearchStrategy[dict[str, Any]]:
    """Valid topology dicts: 2–5 clusters, ≤ 12 pods, ≤ 6 services, every optional field."""
    return _topologies(FULL)


def small_topologies() -> st.SearchStrategy[dict[str, Any]]:
    """Valid topology dicts small enough for a real lab: ≤ 3 clusters, ≤ 6 pods, ≤ 3 services.

    Names are plain (``C1``, ``P3``, ``S2``, ``I1``, ``A2``), at most 3 characters, so they fit
    in interface and namespace names.
    """
    return _topologies(SMALL)


POLICIES = (None, None, "DenyList", "AllowList", "AllowList")
MARKS = (None, None, "allow", "skip")


def _with_reflection(
    data: dict[str, Any], policies: list[str | None], marks: list[str | None]
) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for p, policy in zip(out.get("peerings", []), policies, strict=True):
        if policy is not None:
            p["reflection"] = policy
    for s, mark in zip(out.get("services", []), marks, strict=True):
        if mark is not None:
            s["reflection"] = mark
    return out


def reflecting_topologies() -> st.SearchStrategy[dict[str, Any]]:
    """``topologies()`` with Liqo's reflection policy drawn on top: a peering's ``reflection``
    (absent: DenyList) and a service's mark (absent: no annotation). A strategy of its own, so
    that ``topologies()`` draws what it drew before (its derandomized coverage holds)."""

    def add(data: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        n_p, n_s = len(data.get("peerings", [])), len(data.get("services", []))
        return st.builds(
            lambda p, m: _with_reflection(data, p, m),
            st.lists(st.sampled_from(POLICIES), min_size=n_p, max_size=n_p),
            st.lists(st.sampled_from(MARKS), min_size=n_s, max_size=n_s),
        )

    return topologies().flatmap(add)
