"""Acceptance: the desired state built from a cluster's Kubernetes objects equals the one the
topology file implies.

The Kubernetes picture of each cluster is ``cluster_objects(topology, cluster)`` (what Liqo would
hold there). The expected state is ``compile.desired.gateway_state`` of the topology, with Liqo's
tunnel names, no NAT of our own and its gateways' tunnel addresses; where pod CIDRs overlap, in Liqo
v1's addressing: at the gateway's forward hook a peer's traffic carries the peer's *original* pod
addresses (Liqo remaps sources after the forward hook, ``peerwall.liqo``), where the
lab's gateways, which remap before it, see the remapped ones. Without overlap the two agree as they
are. The seed's two states are also written out by hand.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeapi.harness import run, running
from kubeapi.liqo_objects import (
    EXTERNAL_CIDR,
    api_cluster_ip,
    cluster_objects,
    is_gateway_server,
)
from peerwall import liqo
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import CONNCHECK_PORT, ApiServer, GatewayState, PeerState, SetKind
from peerwall.model.addressing import translate
from peerwall.model.load import load_topology
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.settings import KubeSettings

HERE = Path(__file__).parent
SEED = HERE.parents[2] / "src" / "peerwall" / "examples" / "seed.yaml"
"""The seed's example topology as the package ships it (reference/seed-topology.yaml)."""
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def seed_text() -> str:
    """The seed with valid Liqo cluster IDs (lowercase) and its API servers named, so that the
    file's picture has what every Kubernetes cluster has."""
    return (HERE / "seed-topology.yaml").read_text()


def net(s: str) -> IPv4Network:
    return IPv4Network(s)


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def expected(cluster: str, mode: SecurityMode) -> GatewayState:
    """The seed, by hand. Both pod CIDRs are 10.244.0.0/16; c1 sees c2's as 10.0.0.0/16 and c2
    sees c1's as 10.1.0.0/16, but sources at the forward hook are the originals. Pods: P1 10.244.0.1,
    P2 .2, P3 .3 in c1; P4 (home c1) 10.244.0.1 and P5 .2 in c2. S2 (backend P2) is reflected to c2."""
    full_access = (net("10.244.0.0/16"), net("10.96.0.1/32"))  # API server outside the pod CIDR
    api = ApiServer(ip("10.96.0.1"), 443)
    if cluster == "c1":
        peer = PeerState(
            name="c2",
            tunnel="liqo-tunnel",
            mode=mode,
            sources=(net("10.244.0.0/16"),),
            full_access=full_access,
            members={
                SetKind.OFFLOADED: frozenset(),
                SetKind.BACKENDS: frozenset({ip("10.244.0.2")}),  # P2, backend of S2
                SetKind.API_CLIENTS: frozenset({ip("10.244.0.1")}),  # P4 as it runs in c2
            },
            api=api,
            gateway=ip("169.254.18.1"),  # c1 consumes: gateway client; c2 is the server
            masquerade=ip("10.70.0.0"),  # c2's default external CIDR, as c2 uses it
        )
    else:
        peer = PeerState(
            name="c1",
            tunnel="liqo-tunnel",
            mode=mode,
            sources=(net("10.244.0.0/16"),),
            full_access=full_access,
            members={
                SetKind.OFFLOADED: frozenset({ip("10.244.0.1")}),  # P4, offloaded here by c1
                SetKind.BACKENDS: frozenset(),
                SetKind.API_CLIENTS: frozenset(),
            },
            api=api,
            gateway=ip("169.254.18.2"),
            masquerade=ip("10.70.0.0"),
        )
    return GatewayState(cluster, {peer.name: peer}, "liqo-tunnel*", CONNCHECK_PORT)


def test_the_seed_copy_is_the_seed() -> None:
    """The test's copy differs from the reference only in cluster IDs and named API servers."""
    ours = load_topology(seed_text())
    ref = load_topology(SEED.read_text())
    assert [
        (p.name, p.ip, p.namespace, p.labels, p.home.lower(), p.physical.lower()) for p in ref.pods
    ] == [(p.name, p.ip, p.namespace, p.labels, p.home, p.physical) for p in ours.pods]
    assert [(c.name.lower(), c.pod_cidr, c.service_cidr) for c in ref.clusters] == [
        (c.name, c.pod_cidr, c.service_cidr) for c in ours.clusters
    ]
    assert [(s.name, s.backends, s.reflected_to) for s in ours.services] == [
        (s.name, s.backends, tuple(r.lower() for r in s.reflected_to)) for s in ref.services
    ]
    assert {p.name: p.ip for p in ours.pods} == {
        "P1": ip("10.244.0.1"),
        "P2": ip("10.244.0.2"),
        "P3": ip("10.244.0.3"),
        "P4": ip("10.244.0.1"),
        "P5": ip("10.244.0.2"),
    }
    assert ours.addresses.remapped("c1", "c2") == net("10.0.0.0/16")
    assert ours.addresses.remapped("c2", "c1") == net("10.1.0.0/16")


@pytest.mark.parametrize("cluster", ["c1", "c2"])
@pytest.mark.parametrize("mode", [FULL, SEG])
def test_kubernetes_objects_give_the_topologys_state(
    backend: str, tmp_path: Path, cluster: str, mode: SecurityMode
) -> None:
    topology = load_topology(seed_text())

    async def main() -> None:
        objects = cluster_objects(topology, cluster, api_cluster_ip(topology, cluster))
        peer = "c2" if cluster == "c1" else "c1"  # the gateway pod's peer, as the chart says
        settings = KubeSettings(default_mode=mode, peer=peer)
        async with running(backend, tmp_path, objects, settings) as h:
            assert h.state() == expected(cluster, mode)

    run(main())


def lowercase_ids(text: str) -> str:
    """A topology file with its cluster names lowercased (Liqo cluster IDs are DNS labels)."""
    data: dict[str, Any] = yaml.safe_load(text)
    low = str.lower
    for c in data["clusters"]:
        c["name"] = low(c["name"])
    for p in data.get("peerings", []):
        p["consumer"], p["provider"] = low(p["consumer"]), low(p["provider"])
    for n in data.get("namespaces", []):
        n["cluster"] = low(n["cluster"])
        n["offloadedTo"] = [low(x) for x in n.get("offloadedTo", [])]
    for item in (*data.get("pods", []), *data.get("services", [])):
        item["cluster"] = low(item["cluster"])
        if item.get("runsOn"):
            item["runsOn"] = low(item["runsOn"])
    return yaml.safe_dump(data)


def liqo_expected(topology: Topology, cluster: str, global_default: SecurityMode) -> GatewayState:
    """``gateway_state`` as a Liqo v1 gateway sees it."""
    gateways = {
        peer: liqo.CLIENT_TUNNEL_IP
        if is_gateway_server(topology, cluster, peer)
        else liqo.SERVER_TUNNEL_IP
        for peer in topology.peers[cluster]
    }
    state = gateway_state(
        topology,
        cluster,
        global_default,
        api_port=liqo.API_SERVER_PORT,
        tunnel=lambda _peer: liqo.TUNNEL,
        tunnel_pattern=liqo.TUNNEL_PATTERN,
        gateways=gateways,
        nat=False,
    )
    peers = {}
    for name, peer in state.peers.items():
        remapped = topology.addresses.remapped(cluster, name)
        original = topology.cluster_by_name[name].pod_cidr
        clients = frozenset(
            translate(a, remapped, original) for a in peer.addresses(SetKind.API_CLIENTS)
        )
        # Every Liqo cluster has an external CIDR (by default Liqo's): its first address is the
        # peer's masquerade source, as the peer uses it.
        external = topology.cluster_by_name[name].external_cidr or EXTERNAL_CIDR
        peers[name] = replace(
            peer,
            sources=(original,),
            members={**peer.members, SetKind.API_CLIENTS: clients},
            masquerade=external.network_address,
        )
    return replace(state, peers=peers)


EXAMPLES = Path(__file__).parents[3] / "src" / "peerwall" / "examples"
TOPOLOGIES = [
    HERE / "seed-topology.yaml",
    HERE / "three-clusters.yaml",
    EXAMPLES / "three-clusters.yaml",
    EXAMPLES / "reflection.yaml",  # an AllowList template and reflection annotations
]


@pytest.mark.parametrize("path", TOPOLOGIES, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("mode", [FULL, SEG])
def test_kubernetes_objects_give_gateway_state(
    backend: str, tmp_path: Path, path: Path, mode: SecurityMode
) -> None:
    """Every cluster of each topology, one agent per peer as in a Liqo gateway pod (``--peer``:
    without it, every peer would be on the one ``liqo-tunnel``, a state the source refuses);
    the chart's default is the cluster's install-time mode, else the global default."""
    topology = load_topology(lowercase_ids(path.read_text()))

    async def main() -> None:
        for c in topology.clusters:
            want = liqo_expected(topology, c.name, mode)
            chart_default = c.security_mode or mode
            for peer in want.peers:
                async with running(
                    backend,
                    tmp_path,
                    cluster_objects(topology, c.name),
                    KubeSettings(default_mode=chart_default, peer=peer),
                ) as h:
                    assert h.state() == replace(want, peers={peer: want.peers[peer]}), c.name

    run(main())


def test_without_overlap_liqo_and_the_lab_agree(tmp_path: Path) -> None:
    """Disjoint pod CIDRs: nothing is remapped, so the Liqo view of gateway_state is the plain one."""
    topology = load_topology((HERE / "three-clusters.yaml").read_text())
    for c in topology.clusters:
        plain = gateway_state(
            topology,
            c.name,
            FULL,
            api_port=443,
            tunnel=lambda _p: "liqo-tunnel",
            tunnel_pattern="liqo-tunnel*",
            nat=False,
        )
        liqo_view = liqo_expected(topology, c.name, FULL)
        assert {n: p.sources for n, p in plain.peers.items()} == {
            n: p.sources for n, p in liqo_view.peers.items()
        }
        assert {n: p.members for n, p in plain.peers.items()} == {
            n: p.members for n, p in liqo_view.peers.items()
        }
