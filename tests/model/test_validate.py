"""The cross-checks one concern at a time: each can be called and tested on its own."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from peerwall.errors import Problem
from peerwall.model.hashes import hash8, mark_id
from peerwall.model.spec import TopologySpec
from peerwall.model.validate import check, clusters, names, namespaces, peerings, pods, services


def spec(**sections: Any) -> TopologySpec:
    data = {"clusters": [{"name": "C1", "podCIDR": "10.1.0.0/16"}], **sections}
    return TopologySpec.model_validate(data)


TWO = [{"name": "C1", "podCIDR": "10.1.0.0/16"}, {"name": "C2", "podCIDR": "10.2.0.0/16"}]


def by_name(s: TopologySpec) -> dict[str, Any]:
    return {c.name: c for c in s.clusters}


def test_names_alone():
    s = spec(pods=[{"name": "C1", "cluster": "C9"}])
    # The unknown cluster is another concern's: names report only the clash.
    assert names.check(s) == [
        Problem("pods[0].name", "duplicate name 'C1' (already used by clusters[0].name)")
    ]


def test_clusters_alone():
    s = spec(clusters=[{"name": "C1", "podCIDR": "10.1.0.0/31"}])
    assert clusters.check(s) == [
        Problem("clusters[0].podCIDR", "10.1.0.0/31 is too small (at most /30)")
    ]


def test_api_server_addresses_need_an_api_server_and_tunnels_are_counted():
    """``apiServerAddresses`` and a peering's ``tunnels`` (Liqo fidelity in the lab, issue 17.3):
    several addresses are those of an API server the file names; tunnels are 1 to 8."""
    ok = [
        {"name": "C1", "podCIDR": "10.1.0.0/16", "apiServer": "A1", "apiServerAddresses": 3},
        {"name": "C2", "podCIDR": "10.2.0.0/16"},
    ]
    assert clusters.check(spec(clusters=ok)) == []
    bad = [{"name": "C1", "podCIDR": "10.1.0.0/16", "apiServerAddresses": 2}]
    assert clusters.check(spec(clusters=bad)) == [
        Problem(
            "clusters[0].apiServerAddresses",
            "needs apiServer: the addresses are those of the cluster's API server",
        )
    ]
    for tunnels in (0, 9):
        with pytest.raises(ValidationError):
            spec(clusters=TWO, peerings=[{"consumer": "C1", "provider": "C2", "tunnels": tunnels}])


def test_external_cidrs_are_optional_and_clear_of_every_other_range():
    """``externalCIDR``/``fullMasquerade`` (issue 16.3): files without them stay valid; the model
    does not remap external CIDRs, so one overlapping anything else is refused, naming both."""
    assert clusters.check(spec(clusters=TWO)) == []
    ok = [
        {"name": "C1", "podCIDR": "10.1.0.0/16", "externalCIDR": "10.70.0.0/16"},
        {"name": "C2", "podCIDR": "10.2.0.0/16", "externalCIDR": "10.71.0.0/16"},
    ]
    ok[1]["fullMasquerade"] = True
    assert clusters.check(spec(clusters=ok)) == []
    bad = [
        {"name": "C1", "podCIDR": "10.1.0.0/16", "externalCIDR": "10.2.128.0/17"},
        {"name": "C2", "podCIDR": "10.2.0.0/16", "externalCIDR": "10.96.0.0/24"},
        {"name": "C3", "podCIDR": "10.3.0.0/16", "externalCIDR": "10.2.0.0/24"},
        {"name": "C4", "podCIDR": "10.4.0.0/16", "fullMasquerade": True},
        {"name": "C5", "podCIDR": "10.5.0.0/16", "externalCIDR": "169.254.0.0/24"},
    ]
    assert clusters.check(spec(clusters=bad)) == [
        Problem(
            "clusters[0].externalCIDR", "10.2.128.0/17 overlaps clusters[1].podCIDR 10.2.0.0/16"
        ),
        Problem(
            "clusters[1].externalCIDR",
            "10.96.0.0/24 overlaps clusters[0] service CIDR 10.96.0.0/16",
        ),
        Problem("clusters[2].externalCIDR", "10.2.0.0/24 overlaps clusters[1].podCIDR 10.2.0.0/16"),
        Problem(
            "clusters[3].fullMasquerade",
            "needs externalCIDR: masqueraded traffic takes its first address as source",
        ),
        Problem(
            "clusters[4].externalCIDR",
            "169.254.0.0/24 lies in 169.254.0.0/16 (link-local, which the lab also uses for its "
            "own links): the masquerade source cannot come from there",
        ),
    ]


def test_peerings_return_the_providers_of_valid_peerings_only():
    s = spec(
        clusters=TWO,
        peerings=[
            {"consumer": "C1", "provider": "C2"},
            {"consumer": "C2", "provider": "C9"},
            {"consumer": "C1", "provider": "C2"},
        ],
    )
    problems, providers = peerings.check(s, by_name(s))
    assert problems == [
        Problem("peerings[1].provider", "unknown cluster 'C9'"),
        Problem("peerings[2]", "duplicate of peerings[0] (C1 -> C2)"),
    ]
    assert providers == {"C1": {"C2"}, "C2": frozenset()}


def test_namespaces_need_providers_and_return_the_declared_ones():
    s = spec(
        clusters=TWO,
        namespaces=[
            {"name": "a", "cluster": "C1", "offloadedTo": ["C2", "C2"]},
            {"name": "b", "cluster": "C2", "offloadedTo": ["C1"]},
        ],
    )
    problems, declared = namespaces.check(
        s, by_name(s), {"C1": frozenset({"C2"}), "C2": frozenset()}
    )
    assert problems == [
        Problem("namespaces[0].offloadedTo[1]", "C2 is listed twice"),
        Problem(
            "namespaces[1].offloadedTo[0]",
            "C1 is not a provider of a peering with C2 (add peering {consumer: C2, provider: C1})",
        ),
    ]
    assert declared == {("C1", "a"): ("C2", "C2"), ("C2", "b"): ("C1",)}
    assert namespaces.exists(declared, "C2", "default")
    assert not namespaces.exists(declared, "C2", "a")


def test_pods_alone():
    s = spec(
        clusters=TWO,
        pods=[
            {"name": "P1", "cluster": "C1", "namespace": "a", "runsOn": "C2", "ip": "10.2.0.9"},
            {"name": "P2", "cluster": "C2", "ip": "10.2.0.9"},
            {"name": "P3", "cluster": "C1", "namespace": "nope"},
        ],
    )
    assert pods.check(s, by_name(s), {("C1", "a"): ("C2",)}) == [
        Problem("pods[1].ip", "10.2.0.9 is already used by pods[0] (P1) in C2"),
        Problem("pods[2].namespace", "no namespace 'nope' in cluster C1"),
    ]


def test_services_alone_count_reflected_copies():
    s = spec(
        clusters=[
            {"name": "C1", "podCIDR": "10.1.0.0/16"},
            {"name": "C2", "podCIDR": "10.2.0.0/16", "serviceCIDR": "10.96.0.0/30"},
        ],
        services=[{"name": f"S{i}", "cluster": "C1", "namespace": "a"} for i in range(3)],
    )
    assert services.check(s, by_name(s), {("C1", "a"): ("C2",)}) == [
        Problem(
            "clusters[1].serviceCIDR",
            "3 services exist in C2 (its own and reflected ones) but 10.96.0.0/30 has room for 2",
        )
    ]


def test_check_runs_every_concern_in_file_order():
    s = spec(
        clusters=TWO,
        peerings=[{"consumer": "C1", "provider": "C1"}],
        namespaces=[{"name": "a", "cluster": "C3"}],
        pods=[{"name": "C2", "cluster": "C1"}],
        services=[{"name": "S1", "cluster": "C1", "namespace": "a"}],
    )
    assert [p.path for p in check(s)] == [
        "pods[0].name",
        "peerings[0].provider",
        "namespaces[0].cluster",
        "services[0].namespace",
    ]


def test_two_peers_of_one_cluster_with_one_mark_id_are_a_valid_topology():
    """On Liqo each peer has a gateway of its own, so two peers of one cluster whose 15-bit
    connection-mark ids are equal are a valid topology (truth tables, explain, the Liqo-shaped lab);
    only a gateway that would hold both refuses them (the simple lab shape,
    tests/lab/test_lab_shapes.py; an agent serving both, ``compile.names.clashes``). A 1,000-
    cluster topology with deep peering has such pairs by chance."""
    # c5 and c92 share the 15-bit connection-mark id 15982 (not their 8-hex hash).
    three = [{"name": n, "podCIDR": f"10.{i}.0.0/16"} for i, n in enumerate(("c0", "c5", "c92"), 1)]
    both = spec(
        clusters=three,
        peerings=[{"consumer": "c0", "provider": "c5"}, {"consumer": "c92", "provider": "c0"}],
    )
    assert mark_id("c5") == mark_id("c92") and hash8("c5") != hash8("c92")
    assert names.check(both) == []
