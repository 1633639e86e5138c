"""Fuzzing the Kubernetes source (issue 14, item 9): sequences of Liqo objects, valid and
damaged (missing IPs, garbage labels, huge values, IPv6, wrong types), listed, modified and
deleted in any order (deleted before they were seen, too), go through ``LiqoJoin`` without an
exception, and the desired state they leave compiles into a table whose names and addresses are
sound; deleting every object leaves no peer. The same sequences are applied to a real kernel by
``test_fuzz_kernel.py``."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from kubeapi import liqo_objects as L
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import LiqoJoin
from peerwall.agent.kube.join import PodRole
from peerwall.agent.kube.objects import valid_cluster_id
from peerwall.compile.build import build
from peerwall.compile.names import clashes, tunnel_ifname
from peerwall.compile.state import GatewayState, SetKind
from peerwall.nft.objects import render_replace
from peerwall.settings import KubeSettings

PEERS = ["c2", "c3", "c2", "c3", "c17439", "c24164", "C4", "c5\n", "", "x" * 70]
"""Cluster IDs: the base's peers (more often), two IDs with one hash, invalid ones."""
IPS = [
    "10.10.0.5",
    "10.10.0.6",
    "10.20.0.9",
    "10.30.1.1",
    "192.168.1.1",
    "fd00::5",
    "::ffff:10.10.0.7",
    "10.10.0.300",
    "",
    "not-an-ip",
    10**40,
    None,
]
CIDRS = ["10.20.0.0/16", "10.30.0.0/16", "10.10.0.0/16", "fd00::/64", "10.0.0.0/33", "x", 7]
NAMESPACES = ["shop", "offloaded", "liqo-tenant-c2", "default"]
MODES = ["FullPodToPod", "IntraClusterTrafficSegregation", "Open", "", None]

GARBAGE = st.one_of(
    st.none(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.text(max_size=20),
    st.just("y" * 3000),
    st.sampled_from(["fd00::1", "10.0.0.0/8", "c2\n", "true", "True", "False"]),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)

peer = st.sampled_from(PEERS)
ip = st.sampled_from(IPS)
cidr = st.sampled_from(CIDRS)
ns = st.sampled_from(NAMESPACES)
name = st.sampled_from(["a", "b", "c"])


def _builders() -> list[st.SearchStrategy[tuple[liqo.Kind, dict[str, Any], PodRole | None]]]:
    def k(kind: liqo.Kind, role: PodRole | None = None) -> Callable[[Any], Any]:
        return lambda obj: (kind, obj, role)

    return [
        st.builds(L.cluster_id_configmap, peer).map(k(liqo.CONFIGMAP)),
        st.builds(L.pod_cidr_network, cidr).map(k(liqo.NETWORK)),
        st.builds(L.api_server_ip, ip, ip).map(k(liqo.IP)),
        st.builds(L.foreign_cluster, peer).map(k(liqo.FOREIGN_CLUSTER)),
        st.builds(
            L.configuration, peer, st.lists(cidr, max_size=2), st.none() | st.lists(cidr)
        ).map(k(liqo.CONFIGURATION)),
        st.builds(L.gateway, peer, st.booleans()).map(
            lambda o: (
                liqo.GATEWAY_SERVER if o["kind"] == "GatewayServer" else liqo.GATEWAY_CLIENT,
                o,
                None,
            )
        ),
        st.builds(L.peering_security, peer, st.sampled_from(MODES), name).map(
            k(liqo.PEERING_SECURITY)
        ),
        st.builds(L.virtual_node, peer).map(k(liqo.NODE)),
        st.builds(L.node, name).map(k(liqo.NODE)),
        st.builds(L.namespace, ns, st.fixed_dictionaries({"liqo.io/remote-cluster-id": peer})).map(
            k(liqo.NAMESPACE)
        ),
        st.builds(L.namespace_offloading, ns, st.lists(peer, max_size=2)).map(
            k(liqo.NAMESPACE_OFFLOADING_KIND)
        ),
        st.builds(
            L.shadow_pod, name, ns, ip, peer, phase=st.sampled_from(["Running", "Failed"])
        ).map(k(liqo.POD, PodRole.SHADOW)),
        st.builds(L.offloaded_pod, name, ns, ip, peer).map(k(liqo.POD, PodRole.REMOTE)),
        st.builds(
            L.service,
            name,
            ns,
            st.none() | st.just({"app": "a"}),
            st.none() | st.just({"liqo.io/skip-reflection": "true"}),
        ).map(k(liqo.SERVICE)),
        st.builds(
            L.endpoint_slice,
            name,
            ns,
            st.none() | name,
            st.lists(st.tuples(ip, st.sampled_from([L.WORKER, "liqo-c2", None])), max_size=3),
        ).map(k(liqo.ENDPOINTSLICE)),
    ]


OBJECTS = st.one_of(*_builders())
"""Strategies are built once: one built per draw is validated per draw (90% of the time)."""
HOW_MANY = st.integers(0, 2)
INDEX = st.integers(0, 1 << 16)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, v in data.items():
            out += paths(v, (*prefix, key))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def damaged(draw: st.DrawFn) -> tuple[liqo.Kind, dict[str, Any], PodRole | None]:
    kind, obj, role = draw(OBJECTS)
    obj = copy.deepcopy(obj)
    for _ in range(draw(HOW_MANY)):
        places = paths(obj)
        where = places[draw(INDEX) % len(places)]
        parent = obj
        for p in where[:-1]:
            parent = parent[p]
        if draw(st.booleans()):
            parent[where[-1]] = draw(GARBAGE)
        elif isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent.pop(where[-1])
    return kind, obj, role


operations = st.lists(
    st.tuples(st.sampled_from(["apply", "apply", "remove"]), damaged()), min_size=1, max_size=12
)

BASE = [
    (liqo.NETWORK, L.pod_cidr_network("10.10.0.0/16"), None),
    (liqo.IP, L.api_server_ip("10.96.0.1", "10.70.0.1"), None),
    (liqo.FOREIGN_CLUSTER, L.foreign_cluster("c2"), None),
    (liqo.FOREIGN_CLUSTER, L.foreign_cluster("c3"), None),
    (liqo.CONFIGURATION, L.configuration("c2", ["10.20.0.0/16"], None), None),
    (liqo.CONFIGURATION, L.configuration("c3", ["10.30.0.0/16"], None), None),
    (liqo.GATEWAY_SERVER, L.gateway("c2", True), None),
    (liqo.NAMESPACE, L.namespace("liqo-tenant-c2", {"liqo.io/remote-cluster-id": "c2"}), None),
    (liqo.POD, L.shadow_pod("a", "liqo-tenant-c2", "10.10.0.5", "c2"), PodRole.SHADOW),
    (liqo.NODE, L.virtual_node("c3"), None),
    (liqo.POD, L.offloaded_pod("b", "shop", "10.30.1.1", "c3"), PodRole.REMOTE),
    (liqo.NAMESPACE_OFFLOADING_KIND, L.namespace_offloading("shop", ["c2", "c3"]), None),
    (liqo.SERVICE, L.service("a", "shop"), None),
    (liqo.ENDPOINTSLICE, L.endpoint_slice("a", "shop", "a", [("10.10.0.6", L.WORKER)]), None),
]
"""A cluster with two peers and something in every set, which the operations then change."""


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Garbage is logged, by design: not at these volumes."""
    logger = logging.getLogger("peerwall")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def new_join(per_peer_tunnels: bool) -> LiqoJoin:
    settings = KubeSettings(tunnel=tunnel_ifname) if per_peer_tunnels else KubeSettings()
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, 12345), settings)
    for kind, obj, role in BASE:
        m.apply(kind, copy.deepcopy(obj), role)
    return m


def run_operations(
    m: LiqoJoin, ops: list[tuple[str, tuple[liqo.Kind, dict[str, Any], PodRole | None]]]
) -> dict[tuple[str, str, PodRole | None], tuple[liqo.Kind, dict[str, Any], PodRole | None]]:
    """Apply or remove each object; returns the last applied state of every object still there."""
    live: dict[
        tuple[str, str, PodRole | None], tuple[liqo.Kind, dict[str, Any], PodRole | None]
    ] = {}
    for action, (kind, obj, role) in ops:
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        key = (kind.kind, f"{meta.get('namespace')}/{meta.get('name')}", role)
        if action == "apply":
            m.apply(kind, obj, role)
            live[key] = (kind, obj, role)
        else:
            m.remove(kind, obj, role)  # seen or not
            live.pop(key, None)
    return live


def check_sound(m: LiqoJoin) -> GatewayState:
    """The desired state compiles, names only valid peers, each on its own tunnel, with IPv4
    members, and local sets hold only local pod addresses."""
    state = m.desired.snapshot()
    script = render_replace(build(state))
    assert script.count("table inet peerwall {") == 1
    assert clashes((p.name, p.tunnel) for p in state.peers.values()) == {}
    local = m.peers.local_pod_cidrs()
    for p in state.peers.values():
        assert valid_cluster_id(p.name), repr(p.name)
        for kind in SetKind:
            for a in p.addresses(kind):
                assert isinstance(a, IPv4Address)
                if kind is not SetKind.API_CLIENTS:
                    assert any(a in c for c in local), (kind, a)
    return state


@budget("fuzz-kube-objects")
@given(operations, st.booleans())
def test_any_sequence_of_objects_is_digested_and_compiles(
    ops: list[tuple[str, tuple[liqo.Kind, dict[str, Any], PodRole | None]]],
    per_peer_tunnels: bool,
) -> None:
    with quiet():
        m = new_join(per_peer_tunnels)
        live = run_operations(m, ops)
        check_sound(m)
        # Everything deleted (as the watch reports it: the last known state): no peer is left.
        for kind, obj, role in live.values():
            m.remove(kind, obj, role)
        for kind, obj, role in BASE:
            m.remove(kind, obj, role)
        assert check_sound(m).peers == {}
