"""The model's reading of Liqo's semantics, object by object, without any server."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from kubeapi import liqo_objects as L
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import Backoff, LiqoJoin
from peerwall.agent.kube.join import PodRole
from peerwall.agent.kube.objects import Remap, offloaded_to, reflected
from peerwall.compile.state import ApiServer, SetKind
from peerwall.model.reflection import ReflectionPolicy
from peerwall.model.spec import SecurityMode
from peerwall.settings import KubeSettings

DENY, ALLOW = ReflectionPolicy.DENY_LIST, ReflectionPolicy.ALLOW_LIST
SKIP, ALLOWED = "liqo.io/skip-reflection", "liqo.io/allow-reflection"


@pytest.mark.parametrize(
    ("slice_ann", "service_ann", "policy", "expected"),
    [
        ({}, {}, DENY, True),
        ({}, {}, ALLOW, False),
        ({}, {SKIP: "true"}, DENY, False),
        ({}, {SKIP: "False"}, DENY, True),  # "false", any case, means unset
        ({}, {ALLOWED: "yes"}, ALLOW, True),  # any value but "false" counts
        ({}, {ALLOWED: "false"}, ALLOW, False),
        ({ALLOWED: "true"}, {SKIP: "true"}, DENY, True),  # the slice's own annotation wins
        ({SKIP: "true"}, {ALLOWED: "true"}, ALLOW, False),
        ({SKIP: "true", ALLOWED: "true"}, {}, DENY, False),  # both: Liqo errors, reflects nothing
        ({SKIP: "1"}, None, DENY, False),  # Service unknown: the policy reads the slice
        ({ALLOWED: "false"}, None, ALLOW, False),
        ({}, None, ALLOW, False),
    ],
)
def test_reflection_rules(
    slice_ann: dict[str, str],
    service_ann: dict[str, str] | None,
    policy: ReflectionPolicy,
    expected: bool,
) -> None:
    assert reflected(slice_ann, service_ann, policy) is expected


def test_remap_inverts_liqos_mapping() -> None:
    r = Remap(
        (IPv4Network("10.244.0.0/16"), IPv4Network("10.245.0.0/24")),
        (IPv4Network("10.0.0.0/16"), IPv4Network("10.9.9.0/24")),
    )
    assert r.to_original(IPv4Address("10.0.3.4")) == IPv4Address("10.244.3.4")
    assert r.to_original(IPv4Address("10.9.9.7")) == IPv4Address("10.245.0.7")
    assert r.to_original(IPv4Address("10.1.0.1")) is None
    not_remapped = Remap((IPv4Network("10.20.0.0/16"),), (IPv4Network("10.20.0.0/16"),))
    assert not_remapped.to_original(IPv4Address("10.20.1.1")) == IPv4Address("10.20.1.1")
    no_status = Remap((IPv4Network("10.20.0.0/16"),), None)
    assert no_status.to_original(IPv4Address("10.20.1.1")) == IPv4Address("10.20.1.1")


def test_offloaded_to_reads_offloading_required() -> None:
    obj = L.namespace_offloading("shop", ["c2", "c3"], not_selected=["c4"])
    assert offloaded_to(obj) == {"c2", "c3"}
    assert offloaded_to({"status": {}}) == frozenset()


def test_backoff_is_bounded_and_jittered() -> None:
    b = Backoff(initial=0.5, maximum=30.0)
    rng = random.Random(1)
    delays = [b.delay(n, rng) for n in range(1, 40)]
    assert all(0.25 <= d <= 30.0 for d in delays)
    assert b.delay(1, rng) <= 0.5 and b.delay(30, rng) >= 15.0
    assert len({round(d, 6) for d in delays[10:]}) > 1  # jittered, not one fixed cap


def model(**settings: object) -> LiqoJoin:
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings(**settings))  # type: ignore[arg-type]
    for obj in (
        L.pod_cidr_network("10.10.0.0/16"),
        L.api_server_ip("10.96.0.1", "10.70.0.1"),
        L.foreign_cluster("c2"),
        L.configuration("c2", ["10.20.0.0/16"], ["10.20.0.0/16"]),
    ):
        m.apply(_kind(obj), obj)
    return m


def _kind(obj: dict[str, object]) -> liqo.Kind:
    return next(
        k for k in liqo.ALL_KINDS if k.kind == obj["kind"] and k.api_version == obj["apiVersion"]
    )


def test_order_of_arrival_does_not_matter() -> None:
    objs = [
        L.namespace("offloaded-c1", {"liqo.io/remote-cluster-id": "c2"}),
        L.shadow_pod("p", "offloaded-c1", "10.10.0.5", "c2"),
        L.virtual_node("c2"),
        L.offloaded_pod("q", "shop", "10.20.0.9", "c2"),
        L.namespace_offloading("shop", ["c2"]),
        L.service("s", "shop", annotations={}),
        L.endpoint_slice("s-1", "shop", "s", [("10.10.0.7", L.WORKER), ("10.20.0.9", "liqo-c2")]),
    ]
    states = []
    for order in (objs, list(reversed(objs))):
        m = model()
        for o in order:
            m.apply(
                _kind(o),
                o,
                PodRole.SHADOW
                if o.get("kind") == "Pod" and "shadowpod" in str(o)
                else PodRole.REMOTE
                if o.get("kind") == "Pod"
                else None,
            )
        states.append(m.desired.snapshot())
    assert states[0] == states[1]
    peer = states[0].peers["c2"]
    assert peer.addresses(SetKind.OFFLOADED) == {IPv4Address("10.10.0.5")}
    assert peer.addresses(SetKind.BACKENDS) == {IPv4Address("10.10.0.7")}
    assert peer.addresses(SetKind.API_CLIENTS) == {IPv4Address("10.20.0.9")}


def test_a_configuration_that_comes_or_changes_after_our_offloaded_pod_maps_it_anew() -> None:
    """Our pod at a provider is known here by its remapped address. The provider's Configuration
    may come after the pod and its virtual node, or change its remapping: the pod's address is
    mapped back with the Configuration in force (the join has the pods recompute)."""
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings())
    for obj, role in (
        (L.pod_cidr_network("10.10.0.0/16"), None),
        (L.foreign_cluster("c2"), None),
        (L.virtual_node("c2"), None),
        (L.offloaded_pod("q", "shop", "10.60.0.9", "c2"), PodRole.REMOTE),
    ):
        m.apply(_kind(obj), obj, role)
    assert "c2" not in m.desired.snapshot().peers  # no Configuration yet: no peer
    config = L.configuration("c2", ["10.20.0.0/16"], ["10.60.0.0/16"])
    m.apply(_kind(config), config)
    clients = m.desired.snapshot().peers["c2"].addresses(SetKind.API_CLIENTS)
    assert clients == {IPv4Address("10.20.0.9")}
    moved = L.configuration("c2", ["10.20.0.0/16"], ["10.61.0.0/16"])
    m.apply(_kind(moved), moved)
    assert m.desired.snapshot().peers["c2"].addresses(SetKind.API_CLIENTS) == set()


def test_an_endpoint_is_a_backend_until_its_node_turns_out_virtual() -> None:
    """An endpoint on a virtual node runs at a provider, never here, whatever its address: when
    the Node shows itself virtual after the slice came, the endpoint stops being a backend (the
    join has the slices recompute), and is one again once that Node is gone."""
    m = model()
    slice_ = L.endpoint_slice(
        "s-1", "shop", "s", [("10.10.0.7", L.WORKER), ("10.10.0.8", "liqo-c2")]
    )
    for obj in (L.namespace_offloading("shop", ["c2"]), L.service("s", "shop"), slice_):
        m.apply(_kind(obj), obj)
    both = {IPv4Address("10.10.0.7"), IPv4Address("10.10.0.8")}
    assert m.desired.snapshot().peers["c2"].addresses(SetKind.BACKENDS) == both
    node = L.virtual_node("c2")
    m.apply(_kind(node), node)
    backends = m.desired.snapshot().peers["c2"].addresses(SetKind.BACKENDS)
    assert backends == {IPv4Address("10.10.0.7")}
    m.remove(_kind(node), node)
    assert m.desired.snapshot().peers["c2"].addresses(SetKind.BACKENDS) == both


def test_removing_what_was_never_seen_is_harmless() -> None:
    m = model()
    before = m.desired.snapshot()
    for o in (
        L.shadow_pod("ghost", "ns", "10.10.0.9", "c2"),
        L.endpoint_slice("e", "ns", "s", []),
        L.node("n"),
        L.foreign_cluster("c9"),
    ):
        m.remove(_kind(o), o, PodRole.SHADOW if o["kind"] == "Pod" else None)
    assert m.desired.snapshot() == before


def test_unknown_mode_in_a_peeringsecurity_segregates() -> None:
    m = model(default_mode=SecurityMode.FULL_POD_TO_POD)
    bad = L.peering_security("c2", "Open")  # the CRD forbids it; an old CRD might not
    m.apply(liqo.PEERING_SECURITY, bad)
    assert m.desired.snapshot().peers["c2"].mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def test_a_peeringsecurity_audits_segregation_over_the_chart_default() -> None:
    seg = "IntraClusterTrafficSegregation"
    m = model(default_mode=SecurityMode.FULL_POD_TO_POD, default_audit=True)
    assert m.desired.snapshot().peers["c2"].audit  # the chart's default
    m.apply(liqo.PEERING_SECURITY, L.peering_security("c2", seg, audit=False))
    assert not m.desired.snapshot().peers["c2"].audit  # the peering's own say wins
    m.apply(liqo.PEERING_SECURITY, L.peering_security("c2", seg, audit=True))
    peer = m.desired.snapshot().peers["c2"]
    assert peer.audit and peer.mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    # Two that disagree (an older CRD allows it): enforce, the fail-closed side.
    m.apply(liqo.PEERING_SECURITY, L.peering_security("c2", seg, name="other", audit=False))
    assert not m.desired.snapshot().peers["c2"].audit


def test_several_api_server_ips_are_one_api_server() -> None:
    m = model()
    m.apply(liqo.IP, L.api_server_ip("10.96.0.3", "10.70.0.2", name="api-server-2"))
    api = m.desired.snapshot().peers["c2"].api
    assert api == ApiServer(IPv4Address("10.96.0.1"), 443, (IPv4Address("10.96.0.3"),))


def test_overrides_for_api_server_and_pod_cidrs() -> None:
    m = model(
        api_server=ApiServer(IPv4Address("192.0.2.1"), 6443),
        pod_cidrs=(IPv4Network("10.11.0.0/16"),),
    )
    peer = m.desired.snapshot().peers["c2"]
    assert peer.api == ApiServer(IPv4Address("192.0.2.1"), 6443)
    assert peer.full_access == (IPv4Network("10.11.0.0/16"), IPv4Network("192.0.2.1/32"))


def test_no_configuration_no_peer() -> None:
    m = model()
    m.remove(liqo.CONFIGURATION, L.configuration("c2", ["10.20.0.0/16"], None))
    assert m.desired.snapshot().peers == {}
    m.apply(liqo.CONFIGURATION, L.configuration("c2", ["10.20.0.0/16"], None))
    assert list(m.desired.snapshot().peers) == ["c2"]


def test_tunnel_is_configurable() -> None:
    m = model(tunnel=lambda peer: f"wg-{peer}")
    assert m.desired.snapshot().peers["c2"].tunnel == "wg-c2"


def test_backends_exclude_addresses_outside_the_local_pod_cidrs() -> None:
    """A hostNetwork backend (a node address) would open the node: FullPodToPod doesn't either."""
    m = model()
    m.apply(liqo.NAMESPACE_OFFLOADING_KIND, L.namespace_offloading("shop", ["c2"]))
    m.apply(
        liqo.ENDPOINTSLICE,
        L.endpoint_slice("s-1", "shop", "s", [("192.168.1.10", L.WORKER), ("10.10.0.3", L.WORKER)]),
    )
    assert m.desired.snapshot().peers["c2"].addresses(SetKind.BACKENDS) == {
        IPv4Address("10.10.0.3")
    }


def test_disagreeing_peeringsecurities_segregate() -> None:
    """The CRD names each after its peer (CEL), so two cannot coexist; an older CRD could."""
    m = model(default_mode=SecurityMode.FULL_POD_TO_POD)
    m.apply(liqo.PEERING_SECURITY, L.peering_security("c2", "FullPodToPod"))
    assert m.desired.snapshot().peers["c2"].mode is SecurityMode.FULL_POD_TO_POD
    m.apply(
        liqo.PEERING_SECURITY,
        L.peering_security("c2", "IntraClusterTrafficSegregation", name="other"),
    )
    assert m.desired.snapshot().peers["c2"].mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    m.remove(liqo.PEERING_SECURITY, L.peering_security("c2", "", name="other"))
    assert m.desired.snapshot().peers["c2"].mode is SecurityMode.FULL_POD_TO_POD
