"""Acceptance: the desired state built from a cluster's Kubernetes objects equals the one the
topology file implies.

The Kubernetes picture of each cluster is ``cluster_objects(topology, cluster)`` (what Liqo would
hold there); the expected states are written out by hand for the seed's two clusters, in Liqo v1's
addressing: at the gateway's forward hook a peer's traffic carries the peer's *original* pod
addresses (Liqo remaps sources after the forward hook, ``peerwall.agent.kube.liqo``), where the
lab's gateways, which remap before it, see the remapped ones.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from kubeapi.harness import run, running
from kubeapi.liqo_objects import cluster_objects
from peerwall.agent.kube import Settings
from peerwall.compile.state import CONNCHECK_PORT, ApiServer, GatewayState, PeerState, SetKind
from peerwall.model.load import load_topology
from peerwall.model.spec import SecurityMode

SEED = Path("/work/shared/reference/seed-topology.yaml")
HERE = Path(__file__).parent
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def seed_text() -> str:
    """The seed with valid Liqo cluster IDs (lowercase) and its API servers named, so that the
    file's picture has what every Kubernetes cluster has."""
    text = (HERE / "seed-topology.yaml").read_text()
    return text


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
        )
    return GatewayState(cluster, {peer.name: peer}, "liqo-tunnel*", CONNCHECK_PORT)


def test_the_seed_copy_is_the_seed() -> None:
    """The test's copy differs from the reference only in cluster IDs and named API servers."""
    ours = load_topology(seed_text())
    if SEED.exists():
        ref = load_topology(SEED.read_text())
        assert [(p.name, p.ip, p.namespace, p.labels) for p in ours.pods] == [
            (p.name, p.ip, p.namespace, p.labels) for p in ref.pods
        ]
        assert [c.pod_cidr for c in ours.clusters] == [c.pod_cidr for c in ref.clusters]
    assert {p.name: p.ip for p in ours.pods} == {
        "P1": ip("10.244.0.1"),
        "P2": ip("10.244.0.2"),
        "P3": ip("10.244.0.3"),
        "P4": ip("10.244.0.1"),
        "P5": ip("10.244.0.2"),
    }
    assert ours.addresses.view("c1", "c2") == net("10.0.0.0/16")
    assert ours.addresses.view("c2", "c1") == net("10.1.0.0/16")


@pytest.mark.parametrize("cluster", ["c1", "c2"])
@pytest.mark.parametrize("mode", [FULL, SEG])
def test_kubernetes_objects_give_the_topologys_state(
    backend: str, tmp_path: Path, cluster: str, mode: SecurityMode
) -> None:
    topology = load_topology(seed_text())

    async def main() -> None:
        objects = cluster_objects(topology, cluster)
        async with running(backend, tmp_path, objects, Settings(default_mode=mode)) as h:
            assert h.state() == expected(cluster, mode)

    run(main())
