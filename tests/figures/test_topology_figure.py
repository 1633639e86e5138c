"""The topology figure without a browser: well-formed, every pod where it runs, every service in
every cluster it exists in, every link with the mode each side enforces, stable bytes."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import pytest
from figkit import classes, parse_svg, scaled_topology
from hypothesis import given

from hypothesis_profiles import budget
from peerwall.figures import topology_svg
from peerwall.model import SecurityMode, Topology, load_topology, topology_from_data
from peerwall.policy import effective_mode
from strategies import reflecting_topologies

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"
MODES = list(SecurityMode)


def load(name: str) -> Topology:
    return load_topology((EXAMPLES / name).read_text(), name)


def groups(root: ElementTree.Element, cls: str) -> list[ElementTree.Element]:
    return [el for el in root.iter() if cls in classes(el)]


def check(t: Topology, default: SecurityMode) -> ElementTree.Element:
    root = parse_svg(topology_svg(t, default))
    # Every pod once, in the cluster it runs in; offloaded ones say where they come from.
    pods = {el.get("data-pod"): el for el in groups(root, "pod")}
    assert sorted(pods) == sorted(p.name for p in t.pods)
    for p in t.pods:
        el = pods[p.name]
        assert (el.get("data-cluster"), el.get("data-home")) == (p.physical, p.home)
        assert ("offloaded" in classes(el)) == p.offloaded
        if p.offloaded:
            assert f"from {p.home}" in "".join(el.itertext())
    # Every service in its home and in each cluster its namespace is offloaded to.
    services: dict[str, list[ElementTree.Element]] = {}
    for el in groups(root, "service"):
        services.setdefault(el.get("data-service", ""), []).append(el)
    for s in t.services:
        drawn = services[s.name]
        assert len(drawn) == 1 + len(s.reflected_to)
        assert sum("reflected" in classes(el) for el in drawn) == len(s.reflected_to)
        assert all(el.get("data-backends") == " ".join(s.backends) for el in drawn)
    # Each backend joined to the service in the cluster it runs in (the home copy or a
    # reflection), where the service exists there (Liqo's reflection policy may keep it out).
    lines = {(el.get("data-service"), el.get("data-backend")) for el in groups(root, "backend")}
    assert lines == {
        (s.name, b)
        for s in t.services
        for b in s.backends
        if t.pod_by_name[b].physical in s.present_in
    }
    # One link per connection, each direction with the mode its receiver enforces.
    links = {el.get("data-link"): el for el in groups(root, "link")}
    order = {c.name: c.index for c in t.clusters}
    want = {" ".join(sorted(k, key=order.__getitem__)) for k in t.links}
    assert set(links) == want
    for key, el in links.items():
        a, b = (key or "").split(" ")
        directions = {(d.get("data-from"), d.get("data-to")): d for d in groups(el, "direction")}
        assert set(directions) == {(a, b), (b, a)}
        for (src, dst), d in directions.items():
            e = effective_mode(t, dst or "", src or "", default)
            assert (d.get("data-mode"), d.get("data-origin")) == (e.mode.value, e.origin.value)
    # Internets and API servers.
    assert sorted(el.get("data-internet") or "" for el in groups(root, "internet")) == sorted(
        c.internet for c in t.clusters
    )
    assert sorted(el.get("data-api-server") or "" for el in groups(root, "api-server")) == sorted(
        c.api_server for c in t.clusters if c.api_server
    )
    return root


@pytest.mark.parametrize("default", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("name", ["seed.yaml", "three-clusters.yaml"])
def test_examples(name, default):
    check(load(name), default)


def test_seed_shows_the_offloaded_namespace_stretching_into_c2():
    root = check(load("seed.yaml"), SecurityMode.FULL_POD_TO_POD)
    namespaces = {
        (el.get("data-namespace"), el.get("data-kind")) for el in groups(root, "namespace")
    }
    assert namespaces == {("offloaded", "own"), ("offloaded", "extension")}
    (tunnel,) = groups(root, "tunnel")
    assert groups(tunnel, "band"), "the offloaded namespace crosses the tunnel"
    text = "".join(tunnel.itertext())
    assert "FullPodToPod" in text and "global default" in text


def test_modes_differ_per_direction_in_three_clusters():
    root = check(load("three-clusters.yaml"), SecurityMode.FULL_POD_TO_POD)
    (c1c2,) = [el for el in groups(root, "link") if el.get("data-link") == "C1 C2"]
    modes = {
        (d.get("data-from"), d.get("data-to")): d.get("data-mode")
        for d in groups(c1c2, "direction")
    }
    assert modes == {
        ("C1", "C2"): "IntraClusterTrafficSegregation",  # C2's install-time mode
        ("C2", "C1"): "FullPodToPod",  # the global default
    }
    # C1 and C3 are not neighbours in the row: an arc, labelled with the peering's own mode.
    (c1c3,) = [el for el in groups(root, "link") if el.get("data-link") == "C1 C3"]
    assert "arc" in classes(c1c3)
    assert "set on the peering" in "".join(c1c3.itertext())


@pytest.mark.parametrize("clusters", [1, 2, 4, 6])
def test_one_to_six_clusters_and_a_few_dozen_pods(clusters):
    t = scaled_topology(36, clusters)
    root = check(t, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    width = float(root.get("width", "0"))
    assert width < 600 * clusters + 400  # one row, but no runaway width


@budget("figure-topology")
@given(data=reflecting_topologies())
def test_any_topology(data):
    check(topology_from_data(data, "generated"), SecurityMode.FULL_POD_TO_POD)


def test_deterministic():
    t = load("three-clusters.yaml")
    assert topology_svg(t) == topology_svg(t)


def test_clusters_without_pods_and_a_table_without_sources():
    from figkit import parse_html

    from peerwall.figures import matrix_html, matrix_svg, probe_html
    from peerwall.policy import expect

    data = {
        "clusters": [
            {"name": "A", "podCIDR": "10.1.0.0/16"},
            {"name": "B", "podCIDR": "10.2.0.0/16"},
        ],
        "peerings": [{"consumer": "A", "provider": "B"}],
    }
    t = topology_from_data(data, "empty")
    root = check(t, SecurityMode.FULL_POD_TO_POD)
    assert "no pods" in "".join(root.itertext())
    table = expect(t).table
    parse_svg(matrix_svg(table, table, "FullPodToPod", "empty", topology=t))
    parse_html(matrix_html(table, table, "FullPodToPod", "empty", topology=t))
    parse_html(probe_html(table, table, {}))


# --- large topologies: pods alike merged, as the matrix merges lines (issue 20.2) --------------


def test_ten_thousand_pods_are_drawn_as_classes_of_pods_alike() -> None:
    """Every pod is in exactly one icon, in the cluster it runs in; the members of an icon are
    alike (home, namespace, the services they back), so each dashed line still joins a service
    to icons of its backends only; the figure stays small (it was 10 MB)."""
    t = scaled_topology(10_000)
    text = topology_svg(t)
    assert len(text) < 200_000
    root = parse_svg(text)
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert width < 3000 and height < 2000
    by_name = t.pod_by_name
    serves: dict[str, set[str]] = {}
    for s in t.services:
        for b in s.backends:
            serves.setdefault(b, set()).add(s.name)
    drawn: list[str] = []
    icons = groups(root, "pod")
    assert len(icons) < 50
    members: dict[str, list[str]] = {}
    for el in icons:
        first = by_name[el.get("data-pod", "")]
        alike = [
            p.name
            for p in t.pods
            if (p.home, p.physical, p.namespace) == (first.home, first.physical, first.namespace)
            and serves.get(p.name, set()) == serves.get(first.name, set())
        ]
        assert el.get("data-members") == (str(len(alike)) if len(alike) > 1 else None)
        assert el.get("data-cluster") == first.physical
        if len(alike) > 1:
            label = "".join(el.itertext())
            assert f"{first.name} +{len(alike) - 1}" in label or f"×{len(alike)}" in label
        members[first.name] = alike
        drawn += alike
    assert sorted(drawn) == sorted(by_name)  # each pod in exactly one icon
    for el in groups(root, "backend"):
        service, icon = el.get("data-service", ""), el.get("data-backend", "")
        assert all(service in serves.get(m, set()) for m in members[icon])
    lines = {(el.get("data-service"), el.get("data-backend")) for el in groups(root, "backend")}
    for s in t.services:  # every class that backs a service is joined to it
        for icon in members:
            if s.name in serves.get(icon, set()):
                assert (s.name, icon) in lines


def test_merging_is_on_past_the_threshold_or_on_request() -> None:
    from peerwall.figures.topology import MAX_PODS

    small = scaled_topology(60)
    assert not any(el.get("data-members") for el in groups(parse_svg(topology_svg(small)), "pod"))
    merged = parse_svg(topology_svg(small, classes=True))
    assert any(el.get("data-members") for el in groups(merged, "pod"))
    big = scaled_topology(MAX_PODS + 1)
    assert any(el.get("data-members") for el in groups(parse_svg(topology_svg(big)), "pod"))
