"""Explanations name the deciding rule, the receiving cluster, the peering and where the mode
came from (the peering, the receiver's install-time value or the global default)."""

from __future__ import annotations

import pytest

from peerwall.errors import UnknownName
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import EffectiveMode, Explanation, ModeOrigin, Verdict, expect

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def seed(c2: str = "", peering: str = "") -> Topology:
    """The seed topology, with optional extra fields on C2 and on the C1 -> C2 peering."""
    return load_topology(
        f"""
clusters:
  - {{name: C1, podCIDR: 10.244.0.0/16, internet: I1}}
  - {{name: C2, podCIDR: 10.244.0.0/16, internet: I2{c2}}}
peerings:
  - {{consumer: C1, provider: C2{peering}}}
namespaces:
  - {{name: offloaded, cluster: C1, offloadedTo: [C2]}}
pods:
  - {{name: P1, cluster: C1, namespace: default, labels: {{app: s1}}}}
  - {{name: P2, cluster: C1, namespace: offloaded, labels: {{app: s2}}}}
  - {{name: P3, cluster: C1, namespace: offloaded}}
  - {{name: P4, cluster: C1, namespace: offloaded, runsOn: C2}}
  - {{name: P5, cluster: C2, namespace: default, labels: {{app: s3}}}}
services:
  - {{name: S1, cluster: C1, namespace: default, selector: {{app: s1}}}}
  - {{name: S2, cluster: C1, namespace: offloaded, selector: {{app: s2}}}}
  - {{name: S3, cluster: C2, namespace: default, selector: {{app: s3}}}}
""",
        "seed",
    )


# C1 offloads "shop" to C2 and C3; C2 and C3 are peered too; C4 is peered with nobody.
THREE = load_topology(
    """
clusters:
  - {name: C1, podCIDR: 10.244.0.0/16, apiServer: A1}
  - {name: C2, podCIDR: 10.244.0.0/16, apiServer: A2}
  - {name: C3, podCIDR: 10.245.0.0/16, apiServer: A3}
  - {name: C4, podCIDR: 10.246.0.0/16}
peerings:
  - {consumer: C1, provider: C2}
  - {consumer: C1, provider: C3}
  - {consumer: C2, provider: C3}
namespaces:
  - {name: shop, cluster: C1, offloadedTo: [C2, C3]}
pods:
  - {name: W1, cluster: C1, namespace: shop, labels: {app: web}}
  - {name: W2, cluster: C1, namespace: shop, runsOn: C3, labels: {app: web}}
  - {name: Q1, cluster: C2}
  - {name: Q4, cluster: C4}
services:
  - {name: WEB, cluster: C1, namespace: shop, selector: {app: web}}
""",
    "three",
)


def explained(t: Topology, src: str, dst: str, default: SecurityMode = FULL) -> Explanation:
    """The explanation of one cell, checked against the table's verdict for that cell."""
    e = expect(t, default)
    x = e.explain(src, dst)
    assert (x.source, x.destination) == (src, dst)
    assert x.verdict is e.table[src, dst], "the explanation disagrees with the table"
    return x


# --- where the mode comes from -----------------------------------------------------------------


def test_global_default_decides_when_nothing_is_set():
    x = explained(seed(), "P1", "P5", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.YES, "full-pod-to-pod")
    assert x.receiver == "C2"
    assert x.peering == ("C1", "C2")
    assert x.mode == EffectiveMode(FULL, ModeOrigin.DEFAULT)
    assert "mode:     FullPodToPod (global default, networking.securityMode)" in x.render()


def test_receiver_install_time_mode_beats_the_default():
    t = seed(c2=", securityMode: IntraClusterTrafficSegregation")
    x = explained(t, "P1", "P5", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.NO, "segregation-denied")
    assert x.receiver == "C2"
    assert x.mode == EffectiveMode(SEG, ModeOrigin.CLUSTER)
    assert "C2's install-time securityMode" in x.render()
    assert "enforced: by C2, on traffic arriving from its peer" in x.render()


def test_the_receiver_enforces_so_the_other_direction_keeps_the_default():
    # C2 segregates, C1 does not: P5 (in C2) still reaches P1 (in C1).
    t = seed(c2=", securityMode: IntraClusterTrafficSegregation")
    x = explained(t, "P5", "P1", default=FULL)
    assert (x.verdict, x.rule, x.receiver) == (Verdict.YES, "full-pod-to-pod", "C1")
    assert x.peering == ("C2", "C1")
    assert x.mode == EffectiveMode(FULL, ModeOrigin.DEFAULT)


def test_peering_mode_beats_the_install_time_one():
    t = seed(
        c2=", securityMode: FullPodToPod", peering=", securityMode: IntraClusterTrafficSegregation"
    )
    x = explained(t, "P1", "P5", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.NO, "segregation-denied")
    assert x.mode == EffectiveMode(SEG, ModeOrigin.PEERING)
    assert "mode:     IntraClusterTrafficSegregation (set on the peering C1–C2)" in x.render()
    # One connection: the peering's mode governs both directions.
    back = explained(t, "P5", "P1", default=FULL)
    assert (back.verdict, back.rule, back.receiver) == (Verdict.NO, "segregation-denied", "C1")
    assert back.mode == EffectiveMode(SEG, ModeOrigin.PEERING)


# --- the segregation rules -------------------------------------------------------------------


def test_consumer_reaches_the_pods_it_offloaded():
    x = explained(seed(), "P1", "P4", default=SEG)
    assert (x.verdict, x.rule, x.receiver) == (Verdict.YES, "segregation-offloaded-here", "C2")
    assert x.reason == "P4 was offloaded by C1 into C2"
    assert x.mode == EffectiveMode(SEG, ModeOrigin.DEFAULT)


def test_offloaded_pod_does_not_reach_its_home_cluster_pods():
    x = explained(seed(), "P4", "P1", default=SEG)
    assert (x.verdict, x.rule, x.receiver) == (Verdict.NO, "segregation-denied", "C1")
    assert x.peering == ("C2", "C1")
    assert x.reason == "P1 was not offloaded by C2 and backs no service of C1 reflected to C2"


def test_provider_reaches_backends_of_reflected_services():
    x = explained(seed(), "P5", "P2", default=SEG)
    assert (x.verdict, x.rule, x.receiver) == (Verdict.YES, "segregation-reflected-backend", "C1")
    assert "backs service S2 of C1" in x.reason
    assert "offloaded to C2" in x.reason
    # P3 is in the same namespace but backs no service.
    assert explained(seed(), "P5", "P3", default=SEG).rule == "segregation-denied"


def test_intra_cluster_traffic_is_never_filtered():
    for src, dst in (("P1", "P2"), ("P4", "P5")):  # both in C1; both in C2
        x = explained(seed(c2=", securityMode: IntraClusterTrafficSegregation"), src, dst, SEG)
        assert (x.verdict, x.rule) == (Verdict.YES, "intra-cluster")
        assert (x.receiver, x.peering, x.mode) == (None, None, None)


def test_no_peering_means_no_route():
    x = explained(THREE, "Q4", "W1", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.NO, "no-peering")
    assert x.reason == "Q4 runs in C4, W1 in C1, and C4 and C1 are not peered: no route"
    assert x.mode is None


# --- services and Internets --------------------------------------------------------------------


def test_service_absent_from_the_source_cluster():
    x = explained(seed(), "P5", "S1", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.NO, "service-absent")
    assert x.reason == "S1 exists only in C1, not in C2 where P5 runs"


def test_service_verdict_lists_each_backend():
    x = explained(THREE, "Q1", "WEB", default=SEG)
    assert (x.verdict, x.rule) == (Verdict.PARTIAL, "service-backends")
    assert x.reason == "WEB exists in C2; 1 of 2 backends reachable"
    assert [(b.destination, b.verdict, b.rule, b.receiver) for b in x.backends] == [
        ("W1", Verdict.YES, "segregation-reflected-backend", "C1"),
        ("W2", Verdict.NO, "segregation-denied", "C3"),
    ]
    rendered = x.render()
    assert "Q1 -> WEB: PARTIAL" in rendered
    assert "    Q1 -> W2: NO" in rendered


def test_service_backed_by_the_source_itself_is_reachable():
    x = explained(seed(), "P1", "S1", default=SEG)
    assert (x.verdict, x.rule) == (Verdict.YES, "service-backends")
    assert [(b.destination, b.rule) for b in x.backends] == [("P1", "intra-cluster")]


def test_service_without_backends():
    empty = load_topology(
        "clusters: [{name: C1, podCIDR: 10.244.0.0/16}]\n"
        "pods: [{name: P1, cluster: C1}]\n"
        "services: [{name: S0, cluster: C1, selector: {app: none}}]\n"
    )
    x = explained(empty, "P1", "S0")
    assert (x.verdict, x.rule, x.reason) == (Verdict.NO, "service-no-backends", "S0 selects no pod")


def test_internet_leaves_through_the_physical_cluster():
    own = explained(seed(), "P4", "I2")
    assert (own.verdict, own.rule) == (Verdict.YES, "internet-own")
    other = explained(seed(), "P4", "I1")  # P4's home is C1, but it runs in C2
    assert (other.verdict, other.rule) == (Verdict.NO, "internet-other")


# --- the API server exception ------------------------------------------------------------------


def test_api_server_under_segregation_admits_only_pods_whose_home_it_is():
    # W2 was offloaded by C1 into C3: it may reach its home API server A1.
    home = explained(THREE, "W2", "A1", default=SEG)
    assert (home.verdict, home.rule, home.receiver) == (Verdict.YES, "api-home-cluster", "C1")
    assert home.peering == ("C3", "C1")
    assert home.mode == EffectiveMode(SEG, ModeOrigin.DEFAULT)
    assert home.reason == "W2 was offloaded by C1: it may reach its home API server"
    # Q1 lives in C2: C1's API server is closed to it.
    foreign = explained(THREE, "Q1", "A1", default=SEG)
    assert (foreign.verdict, foreign.rule, foreign.receiver) == (
        Verdict.NO,
        "api-segregated",
        "C1",
    )
    assert foreign.reason == "Q1's home is C2, not C1"
    # W1's home is C1, not C3: C3's API server is closed to it, although C3 hosts W2.
    assert explained(THREE, "W1", "A3", default=SEG).rule == "api-segregated"


def test_api_server_under_full_pod_to_pod_admits_every_peer():
    x = explained(THREE, "Q1", "A1", default=FULL)
    assert (x.verdict, x.rule, x.receiver) == (Verdict.YES, "api-full-pod-to-pod", "C1")
    assert x.mode == EffectiveMode(FULL, ModeOrigin.DEFAULT)


def test_api_server_local_and_unpeered():
    assert explained(THREE, "W2", "A3", default=SEG).rule == "api-local"  # W2 runs in C3
    assert explained(THREE, "W1", "A1", default=SEG).rule == "api-local"
    x = explained(THREE, "Q4", "A1", default=FULL)
    assert (x.verdict, x.rule) == (Verdict.NO, "no-peering")


def test_unknown_names_are_errors():
    e = expect(seed())
    with pytest.raises(UnknownName, match="unknown source pod 'S1'"):
        e.explain("S1", "P1")
    with pytest.raises(UnknownName, match="unknown destination 'P9'"):
        e.explain("P1", "P9")


def test_a_masqueraded_pod_is_no_api_client_under_segregation():
    """C2 masquerades all its traffic to peers (Liqo's fullMasquerade): P4, offloaded by C1 into
    C2, reaches C1 from C2's external address, never an API client (issue 16.3)."""
    t = load_topology(
        """
clusters:
  - {name: C1, podCIDR: 10.244.0.0/16, apiServer: A1}
  - {name: C2, podCIDR: 10.245.0.0/16, externalCIDR: 10.71.0.0/16, fullMasquerade: true}
peerings:
  - {consumer: C1, provider: C2}
namespaces:
  - {name: offloaded, cluster: C1, offloadedTo: [C2]}
pods:
  - {name: P1, cluster: C1, namespace: offloaded}
  - {name: P4, cluster: C1, namespace: offloaded, runsOn: C2}
""",
        "masquerade",
    )
    seg = explained(t, "P4", "A1", default=SEG)
    assert (seg.verdict, seg.rule, seg.receiver) == (Verdict.NO, "api-masqueraded", "C1")
    assert seg.reason == (
        "P4 was offloaded by C1, but C2 masquerades all its traffic to peers (fullMasquerade): "
        "it arrives from C2's external address, never an API client"
    )
    assert explained(t, "P4", "A1", default=FULL).rule == "api-full-pod-to-pod"
    # Towards pods the destination decides, as without masquerade: P1 was not offloaded by C2.
    assert explained(t, "P4", "P1", default=SEG).rule == "segregation-denied"
