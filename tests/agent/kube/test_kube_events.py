"""Watch events change the desired state: against the fake, and a real cluster when enabled."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from kubeapi import liqo_objects as L
from kubeapi.harness import Harness, run, running
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.settings import KubeSettings

HERE = Path(__file__).parent
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def three() -> Topology:
    return load_topology((HERE / "three-clusters.yaml").read_text())


def seed() -> Topology:
    return load_topology((HERE / "seed-topology.yaml").read_text())


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def members(h: Harness, peer: str, kind: SetKind) -> frozenset[IPv4Address]:
    state = h.state()
    return state.peers[peer].addresses(kind) if peer in state.peers else frozenset()


def test_initial_list_two_peers(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            s = h.state()
            assert s.cluster == "c1"
            assert sorted(s.peers) == ["c2", "c3"]
            c2, c3 = s.peers["c2"], s.peers["c3"]
            assert [str(n) for n in c2.sources] == ["10.20.0.0/16"]
            assert [str(n) for n in c3.sources] == ["10.30.0.0/16"]
            # front's backends: web here; api runs at c2 (on its virtual node), not a local one.
            assert c2.addresses(SetKind.BACKENDS) == {ip("10.10.0.1")}
            assert c2.addresses(SetKind.API_CLIENTS) == {ip("10.20.0.1")}
            assert c3.addresses(SetKind.BACKENDS) == frozenset()  # shop is not offloaded to c3
            assert c3.addresses(SetKind.API_CLIENTS) == frozenset()
            assert c2.mode is c3.mode is FULL

    run(main())


def test_pod_offloaded_here_appears_and_goes(backend: str, tmp_path: Path) -> None:
    """On the provider c2 of the seed: c1 offloads one more pod, which later completes."""

    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(seed(), "c2")) as h:
            assert members(h, "c1", SetKind.OFFLOADED) == {ip("10.244.0.1")}
            extra = L.shadow_pod("p9", "offloaded-c1", "10.244.0.9", "c1")
            await h.cluster.create(extra)
            await h.until(
                lambda: ip("10.244.0.9") in members(h, "c1", SetKind.OFFLOADED), "p9 offloaded"
            )
            # A pod in a namespace that does not belong to c1 gains nothing, whatever its labels.
            forged = L.shadow_pod("forged", "default", "10.244.0.10", "c1")
            await h.cluster.create(forged)
            done = L.shadow_pod("p9", "offloaded-c1", "10.244.0.9", "c1", phase="Succeeded")
            await h.cluster.update(done)
            await h.until(
                lambda: members(h, "c1", SetKind.OFFLOADED) == {ip("10.244.0.1")}, "p9 completed"
            )
            await h.cluster.delete(extra)
            await h.cluster.delete(L.shadow_pod("p4", "offloaded-c1", "10.244.0.1", "c1"))
            await h.until(lambda: members(h, "c1", SetKind.OFFLOADED) == frozenset(), "p4 deleted")

    run(main())


def test_endpointslice_changes_backends(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            assert members(h, "c2", SetKind.BACKENDS) == {ip("10.10.0.1")}
            await h.cluster.create(L.pod("web2", "shop", "10.10.0.7", labels={"app": "web"}))
            endpoints = [
                ("10.10.0.1", L.WORKER),
                ("10.10.0.7", L.WORKER),
                ("10.20.0.1", L.virtual_node_name("c2")),
            ]
            await h.cluster.update(L.endpoint_slice("front-abcde", "shop", "front", endpoints))
            await h.until(
                lambda: members(h, "c2", SetKind.BACKENDS) == {ip("10.10.0.1"), ip("10.10.0.7")},
                "web2 a backend",
            )
            # A second slice of the same service sharing an address: it stays while either has it.
            await h.cluster.create(
                L.endpoint_slice("front-fghij", "shop", "front", [("10.10.0.7", L.WORKER)])
            )
            await h.cluster.update(
                L.endpoint_slice("front-abcde", "shop", "front", [("10.10.0.1", L.WORKER)])
            )
            await h.until(
                lambda: members(h, "c2", SetKind.BACKENDS) == {ip("10.10.0.1"), ip("10.10.0.7")},
                "shared address kept",
            )
            await h.cluster.delete(L.endpoint_slice("front-fghij", "shop", "front", []))
            await h.until(
                lambda: members(h, "c2", SetKind.BACKENDS) == {ip("10.10.0.1")}, "second slice gone"
            )
            # The Service marked not to be reflected: its slices are no backends of anyone.
            skip = {"liqo.io/skip-reflection": "true"}
            await h.cluster.update(L.service("front", "shop", {"app": "web"}, annotations=skip))
            await h.until(
                lambda: members(h, "c2", SetKind.BACKENDS) == frozenset(), "front skipped"
            )

    run(main())


def test_namespace_offloaded_to_one_more_provider(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            assert members(h, "c3", SetKind.BACKENDS) == frozenset()
            await h.cluster.update(L.namespace_offloading("shop", ["c2", "c3"]))
            await h.until(
                lambda: members(h, "c3", SetKind.BACKENDS) == {ip("10.10.0.1")},
                "shop offloaded to c3",
            )
            assert members(h, "c2", SetKind.BACKENDS) == {ip("10.10.0.1")}
            # c2 deselected (its condition False): its backends go, c3's stay.
            await h.cluster.update(L.namespace_offloading("shop", ["c3"], not_selected=["c2"]))
            await h.until(
                lambda: members(h, "c2", SetKind.BACKENDS) == frozenset(), "c2 deselected"
            )
            assert members(h, "c3", SetKind.BACKENDS) == {ip("10.10.0.1")}

    run(main())


def test_peering_security_switches_a_peers_mode(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(
            backend, tmp_path, L.cluster_objects(three(), "c1"), KubeSettings(default_mode=FULL)
        ) as h:
            mode = lambda peer: h.state().peers[peer].mode  # noqa: E731
            assert mode("c2") is mode("c3") is FULL
            await h.cluster.create(L.peering_security("c2", SEG.value))
            await h.until(lambda: mode("c2") is SEG, "c2 segregated")
            assert mode("c3") is FULL
            await h.cluster.update(L.peering_security("c2", FULL.value))
            await h.until(lambda: mode("c2") is FULL, "c2 back to full")
            await h.cluster.delete(L.peering_security("c2", FULL.value))
            await h.until(lambda: mode("c2") is FULL, "default again")

    run(main())


def test_peer_goes_and_comes_back(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            await h.cluster.delete(L.foreign_cluster("c3"))
            await h.until(lambda: sorted(h.state().peers) == ["c2"], "c3 removed")
            await h.cluster.create(L.foreign_cluster("c3"))
            await h.until(lambda: sorted(h.state().peers) == ["c2", "c3"], "c3 back")

    run(main())


def test_remapped_pod_ips_are_translated_back(backend: str, tmp_path: Path) -> None:
    """On the seed's c1, c2's pods are remapped into 10.0.0.0/16: P4's status IP 10.0.0.1 is
    10.244.0.1 at c2, and so at the forward hook; a new remapping moves it."""

    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(seed(), "c1")) as h:
            assert members(h, "c2", SetKind.API_CLIENTS) == {ip("10.244.0.1")}
            await h.cluster.create(L.offloaded_pod("p8", "offloaded", "10.0.3.8", "c2"))
            await h.until(
                lambda: ip("10.244.3.8") in members(h, "c2", SetKind.API_CLIENTS), "p8 translated"
            )
            # Not yet running: no IP, nothing to allow.
            await h.cluster.create(L.offloaded_pod("p7", "offloaded", None, "c2", phase="Pending"))
            # c2 remapped elsewhere: addresses in the old remapped CIDR name nothing any more,
            # until the virtual kubelet reports them in the new one.
            await h.cluster.update(L.configuration("c2", ["10.244.0.0/16"], ["10.5.0.0/16"]))
            await h.until(
                lambda: members(h, "c2", SetKind.API_CLIENTS) == frozenset(), "old remap gone"
            )
            await h.cluster.update(L.offloaded_pod("p4", "offloaded", "10.5.0.1", "c2"))
            await h.until(
                lambda: members(h, "c2", SetKind.API_CLIENTS) == {ip("10.244.0.1")}, "new remap"
            )

    run(main())


def test_api_server_address_follows_its_ip_resource(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with running(
            backend, tmp_path, L.cluster_objects(three(), "c1", L.api_cluster_ip(three(), "c1"))
        ) as h:
            api = lambda: h.state().peers["c2"].api  # noqa: E731
            assert api() is not None and str(api().address) == "10.96.0.1" and api().port == 443
            assert [str(n) for n in h.state().peers["c2"].full_access] == [
                "10.10.0.0/16",
                "10.96.0.1/32",
            ]
            await h.cluster.update(L.api_server_ip("10.96.0.10", "10.70.0.1"))
            await h.until(lambda: str(api().address) == "10.96.0.10", "new API address")
            assert [str(n) for n in h.state().peers["c2"].full_access] == [
                "10.10.0.0/16",
                "10.96.0.10/32",
            ]

    run(main())


def test_sidecar_serves_only_its_peer(backend: str, tmp_path: Path) -> None:
    async def main() -> None:
        settings = KubeSettings(peer="c3")
        objects = [*L.cluster_objects(three(), "c1"), L.namespace_offloading("shop", ["c2", "c3"])]
        async with running(backend, tmp_path, objects, settings) as h:
            assert list(h.state().peers) == ["c3"]
            assert members(h, "c3", SetKind.BACKENDS) == {ip("10.10.0.1")}
            # Nothing is kept for c2, not even out of sight.
            assert not any(
                p == "c2"
                for key in ("endpointslice/shop/front-abcde", "pod/shop/api")
                for p, _ in h.desired.contributions(key)
            )
            if h.fake is not None:
                selectors = [
                    q.get("labelSelector", "")
                    for path, q in h.fake.requests
                    if path.endswith("/configurations")
                ]
                assert selectors and all(s == "liqo.io/remote-cluster-id=c3" for s in selectors)

    run(main())
