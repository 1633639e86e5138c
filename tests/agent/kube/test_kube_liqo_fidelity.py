"""Liqo's behaviours as its code has them (issue 16.3, 16.4; issue 14.7), with objects shaped as
Liqo writes them, through the API server (the fake validates each against Liqo's CRDs).

Each case cites the Liqo file (liqotech/liqo at 557c199c) whose behaviour it pins:

* the masquerade source: ``internal-network/configuration-controller/firewall.go``;
* EndpointSlices by namespace: ``pkg/virtualKubelet/reflection/exposition/endpointslice.go``;
* the reflection policy: ``VkOptionsTemplate.spec.reflectorsConfig.service.type`` and
  ``extraArgs`` (``pkg/vkMachinery/forge/forge.go``, ``cmd/virtual-kubelet/root/root.go``);
* ``networking.reflectIPs=false``: ``--disable-ip-reflection``
  (``pkg/virtualKubelet/provider/provider.go``, ``forge.OpaqueIPTranslationMutator``);
* several API server IPs: ``pkg/liqo-controller-manager/ipmapping/endpointslice_controller.go``;
* several tunnels: ``pkg/gateway/tunnel/netlink.go`` (``GetTunnelName``, ``GetInterfaceIP``).
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kubeapi import liqo_objects as L
from kubeapi.harness import Harness, run, running
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import LiqoJoin
from peerwall.agent.kube.objects import VkOptions, vk_options
from peerwall.agent.kube.source import IgnoredEndpoints
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology
from peerwall.model.reflection import ReflectionPolicy
from peerwall.model.topology import Topology
from peerwall.settings import KubeSettings

HERE = Path(__file__).parent
DENY, ALLOW = ReflectionPolicy.DENY_LIST, ReflectionPolicy.ALLOW_LIST


def three() -> Topology:
    """c1 (10.10/16) offloads ``shop`` (service ``front``, backend ``web`` 10.10.0.1) to c2."""
    return load_topology((HERE / "three-clusters.yaml").read_text())


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def backends(h: Harness, peer: str) -> frozenset[IPv4Address]:
    state = h.state()
    return state.peers[peer].addresses(SetKind.BACKENDS) if peer in state.peers else frozenset()


# --- 16.3: the masquerade source ---------------------------------------------------------------


def test_the_peers_masquerade_source_is_the_first_address_of_its_external_cidr(
    backend: str, tmp_path: Path
) -> None:
    """``GetUnknownSourceIP(GetPrimary(spec.local.cidr.external))`` on the peer: as we know it,
    ``spec.remote.cidr.external[0]``, not the remapped ``status`` (remapped after our hook)."""

    async def main() -> None:
        objects = L.cluster_objects(three(), "c1")
        async with running(backend, tmp_path, objects) as h:
            # Every cluster has Liqo's default external CIDR: c2's, as c2 uses it.
            assert h.state().peers["c2"].masquerade == ip("10.70.0.0")
            await h.cluster.update(
                L.configuration(
                    "c2",
                    ["10.20.0.0/16"],
                    ["10.20.0.0/16"],
                    external=["10.80.0.0/16", "10.81.0.0/16"],  # the primary is the first
                    external_remapped=["10.90.0.0/16", "10.91.0.0/16"],
                )
            )
            await h.until(lambda: h.state().peers["c2"].masquerade == ip("10.80.0.0"), "moved")
            peer = h.state().peers["c2"]
            assert IPv4Network("10.80.0.0/32") in peer.valid_sources
            assert peer.sources == (IPv4Network("10.20.0.0/16"),)  # pods: unchanged
            # Never an API client: the API clients are pods, mapped back into the pod CIDR.
            assert ip("10.80.0.0") not in peer.addresses(SetKind.API_CLIENTS)

    run(main())


# --- 16.4: every slice of an offloaded namespace, whoever manages it ------------------------------


def test_slices_are_reflected_by_namespace_not_by_managed_by(backend: str, tmp_path: Path) -> None:
    """The reflector's informer is namespace-scoped with no label selector: a slice written by the
    mirroring controller or by hand is reflected like the EndpointSlice controller's."""

    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            assert backends(h, "c2") == {ip("10.10.0.1")}
            for name, manager, address in (
                ("mirrored", "endpointslicemirroring-controller.k8s.io", "10.10.0.21"),
                ("manual", "someone-else", "10.10.0.22"),
            ):
                await h.cluster.create(L.service(name, "shop"))
                await h.cluster.create(
                    L.endpoint_slice(
                        f"{name}-x", "shop", name, [(address, L.WORKER)], managed_by=manager
                    )
                )
            want = {ip("10.10.0.1"), ip("10.10.0.21"), ip("10.10.0.22")}
            await h.until(lambda: backends(h, "c2") == want, "every manager's slice")
            # A namespace that is not offloaded: nothing, whoever manages its slices.
            await h.cluster.create(L.namespace("private"))
            await h.cluster.create(L.service("db", "private"))
            await h.cluster.create(
                L.endpoint_slice("db-x", "private", "db", [("10.10.0.30", L.WORKER)])
            )
            await h.cluster.delete(L.endpoint_slice("manual-x", "shop", "manual", []))
            await h.until(
                lambda: backends(h, "c2") == {ip("10.10.0.1"), ip("10.10.0.21")}, "manual gone"
            )

    run(main())


# --- 16.4: the reflection policy, read from the installation ------------------------------------


def test_the_reflection_policy_is_the_vk_options_templates(backend: str, tmp_path: Path) -> None:
    """The chart's default template (DenyList) reflects ``front``; switched to AllowList (as
    ``offloading.reflection.service.type=AllowList`` renders it) only allowed Services are."""

    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            assert backends(h, "c2") == {ip("10.10.0.1")}
            await h.cluster.update(L.vk_options_template(service_type="AllowList"))
            await h.until(lambda: backends(h, "c2") == frozenset(), "AllowList: not allowed")
            allow = {"liqo.io/allow-reflection": "true"}
            await h.cluster.update(L.service("front", "shop", {"app": "web"}, annotations=allow))
            await h.until(lambda: backends(h, "c2") == {ip("10.10.0.1")}, "front allowed")
            # extraArgs come after reflectorsConfig on the command line: the last flag wins.
            await h.cluster.update(L.service("front", "shop", {"app": "web"}))
            await h.cluster.update(
                L.vk_options_template(
                    service_type="DenyList", extra_args=["--service-reflection-type=AllowList"]
                )
            )
            await h.until(lambda: backends(h, "c2") == frozenset(), "AllowList from extraArgs")

    run(main())


def test_each_provider_follows_its_own_virtual_kubelets_template(
    backend: str, tmp_path: Path
) -> None:
    """``shop`` offloaded to c2 and c3; c3's VirtualNode names a template of its own (AllowList)."""

    async def main() -> None:
        objects = [
            o for o in L.cluster_objects(three(), "c1") if o["kind"] != "NamespaceOffloading"
        ]
        objects.append(L.namespace_offloading("shop", ["c2", "c3"]))
        async with running(backend, tmp_path, objects) as h:
            await h.until(lambda: backends(h, "c3") == {ip("10.10.0.1")}, "c3 default: DenyList")
            await h.cluster.create(
                L.vk_options_template("strict", L.tenant("c3"), service_type="AllowList")
            )
            await h.cluster.update(L.virtual_node_object("c3", (L.tenant("c3"), "strict")))
            await h.until(lambda: backends(h, "c3") == frozenset(), "c3's own template")
            assert backends(h, "c2") == {ip("10.10.0.1")}  # c2 keeps the default's DenyList

    run(main())


def test_reflect_ips_false_reflects_no_slice_and_no_pod_ip(backend: str, tmp_path: Path) -> None:
    """``networking.reflectIPs=false`` adds ``--disable-ip-reflection`` to the template: no
    EndpointSlice reflector runs, and offloaded pods' local status has no IP."""

    async def main() -> None:
        async with running(backend, tmp_path, L.cluster_objects(three(), "c1")) as h:
            assert backends(h, "c2") == {ip("10.10.0.1")}
            assert h.state().peers["c2"].addresses(SetKind.API_CLIENTS) == {ip("10.20.0.1")}
            await h.cluster.update(L.vk_options_template(extra_args=["--disable-ip-reflection"]))
            await h.until(lambda: backends(h, "c2") == frozenset(), "no slice reflected")
            # The pod reflector's OpaqueIPTranslationMutator: podIP "" and podIPs [].
            api = next(p for p in three().pods if p.name == "api")
            opaque = L.offloaded_pod(L.k8s_name(api.name), api.namespace, None, "c2", api.labels)
            opaque["status"] = {"phase": "Running", "podIP": "", "podIPs": []}
            await h.cluster.update(opaque)
            await h.until(
                lambda: h.state().peers["c2"].addresses(SetKind.API_CLIENTS) == frozenset(),
                "no API client without an IP",
            )
            await h.cluster.update(
                L.vk_options_template(extra_args=["--disable-ip-reflection=false"])
            )
            await h.until(lambda: backends(h, "c2") == {ip("10.10.0.1")}, "back with =false")

    run(main())


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, VkOptions(DENY)),  # no type: the fallback (the virtual kubelet's default)
        ({"reflectorsConfig": {"service": {"workers": 3, "type": "AllowList"}}}, VkOptions(ALLOW)),
        ({"extraArgs": ["--service-reflection-type", "AllowList"]}, VkOptions(ALLOW)),
        ({"extraArgs": ["--service-reflection-type=Other"]}, VkOptions(None)),  # VK won't start
        ({"extraArgs": ["--disable-ip-reflection=true"]}, VkOptions(DENY, ip_reflection=False)),
        ({"extraArgs": ["--disable-ip-reflection", "--disable-ip-reflection=F"]}, VkOptions(DENY)),
    ],
)
def test_vk_options_read_like_the_virtual_kubelets_flags(
    spec: dict[str, object], expected: VkOptions
) -> None:
    assert vk_options({"spec": spec}, DENY) == expected


# --- 14.7: only local pods are ever opened ------------------------------------------------------


def test_endpoints_outside_the_local_pod_cidrs_are_ignored_logged_and_counted(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node address (hostNetwork), a ClusterIP, a gateway's tunnel address, a foreign pod's
    address and a Liqo gateway pod (a pod, inside the pod CIDR), written into a slice of an
    offloaded namespace: none is opened, each is logged once and counted; the local pod beside
    them is opened."""
    caplog.set_level(logging.WARNING, "peerwall.agent.kube")
    hostile = ["192.168.1.10", "10.96.0.10", "169.254.18.1", "10.20.0.1", "10.10.0.9"]
    gateway_pod = L.pod(
        "gw-c3-abcde",
        L.tenant("c3"),
        "10.10.0.9",
        labels={"networking.liqo.io/component": "gateway", "networking.liqo.io/active": "true"},
    )

    async def main() -> None:
        objects = [*L.cluster_objects(three(), "c1"), gateway_pod]
        async with running(backend, tmp_path, objects) as h:
            eps = [(a, L.WORKER) for a in [*hostile, "10.10.0.5"]]
            await h.cluster.create(L.endpoint_slice("front-evil", "shop", "front", eps))
            await h.until(lambda: ip("10.10.0.5") in backends(h, "c2"), "local pod opened")
            assert backends(h, "c2") == {ip("10.10.0.1"), ip("10.10.0.5")}
            model = h.source.join.backends
            assert model.ignored_endpoints == {"shop/front-evil": frozenset(map(ip, hostile))}
            assert model.ignored_endpoints_total == 5
            lines = [r.getMessage() for r in caplog.records if "front-evil" in r.getMessage()]
            assert len(lines) == 1 and all(a in lines[0] for a in hostile)
            assert (
                "not a local pod (outside the local pod CIDRs 10.10.0.0/16, or a Liqo " in lines[0]
            )
            registry = CollectorRegistry()
            for c in h.source.collectors:
                registry.register(c)
            text = generate_latest(registry).decode()
            assert "peerwall_endpoints_ignored_total 5.0" in text
            assert "peerwall_endpoints_ignored_now 5.0" in text
            # The same slice seen again (a resync, an unrelated change): not logged again.
            await h.cluster.update(L.endpoint_slice("front-evil", "shop", "front", eps[1:]))
            await h.until(lambda: len(model.ignored_endpoints["shop/front-evil"]) == 4, "4 left")
            assert model.ignored_endpoints_total == 5
            # The gateway pod goes: its address is an ordinary pod address again (here, 10.10.0.9
            # reused by a backend pod); while it exists, it is never opened.
            await h.cluster.delete(gateway_pod)
            await h.until(lambda: ip("10.10.0.9") in backends(h, "c2"), "no longer a gateway")
            await h.cluster.delete(L.endpoint_slice("front-evil", "shop", "front", []))
            await h.until(lambda: not model.ignored_endpoints, "slice gone")

    run(main())


def test_ignored_endpoints_are_never_opened_under_any_reflection() -> None:
    """Whatever the policy, the pod-CIDR filter holds (the model alone, every policy)."""
    for policy in ReflectionPolicy:
        m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings(reflection=policy))
        for obj, kind in (
            (L.pod_cidr_network("10.10.0.0/16"), liqo.NETWORK),
            (L.foreign_cluster("c2"), liqo.FOREIGN_CLUSTER),
            (L.configuration("c2", ["10.20.0.0/16"], None), liqo.CONFIGURATION),
            (L.namespace_offloading("shop", ["c2"]), liqo.NAMESPACE_OFFLOADING_KIND),
        ):
            m.apply(kind, obj)
        allow = {"liqo.io/allow-reflection": "true"}
        m.apply(
            liqo.ENDPOINTSLICE,
            L.endpoint_slice("s", "shop", None, [("172.16.0.1", None)], annotations=allow),
        )
        assert m.desired.snapshot().peers["c2"].addresses(SetKind.BACKENDS) == frozenset()
        assert m.backends.ignored_endpoints == {"shop/s": {ip("172.16.0.1")}}


# --- 16.4: several API server addresses, several tunnels ----------------------------------------


def test_several_api_server_addresses_are_all_admitted(backend: str, tmp_path: Path) -> None:
    """With ``apiServerAccessThroughEndpointSlices`` the controller manager writes one IP per
    endpoint of ``default/kubernetes`` (named ``<slice>-<a-b-c-d>``): every one is admitted, on
    the API port, for API clients only, and FullPodToPod opens each."""

    async def main() -> None:
        objects = [o for o in L.cluster_objects(three(), "c1") if o["kind"] != "IP"]
        objects += [
            L.api_server_endpoint_ip("kubernetes", "172.18.0.2", "10.70.0.5"),
            L.api_server_endpoint_ip("kubernetes", "172.18.0.3", "10.70.0.6"),
        ]
        async with running(backend, tmp_path, objects) as h:
            peer = h.state().peers["c2"]
            assert peer.api is not None
            assert peer.api.addresses == (ip("172.18.0.2"), ip("172.18.0.3"))
            assert IPv4Network("172.18.0.2/32") in peer.full_access
            assert IPv4Network("172.18.0.3/32") in peer.full_access
            await h.cluster.delete(L.api_server_endpoint_ip("kubernetes", "172.18.0.2", ""))
            await h.until(
                lambda: (
                    (api := h.state().peers["c2"].api) is not None
                    and api.addresses == (ip("172.18.0.3"),)
                ),
                "one endpoint left",
            )

    run(main())


@pytest.mark.parametrize(
    ("we_serve", "peer_addresses"),
    [
        (True, ["169.254.18.2", "169.254.18.6", "169.254.18.10"]),
        (False, ["169.254.18.1", "169.254.18.5", "169.254.18.9"]),
    ],
)
def test_several_tunnels_per_gateway(
    backend: str, tmp_path: Path, we_serve: bool, peer_addresses: list[str]
) -> None:
    """``spec.endpoint.ports`` of three ports: three WireGuard interfaces ``liqo-tunnel``,
    ``liqo-tunnel1``, ``liqo-tunnel2``, the peer's end of tunnel i at ``169.254.18.4i+1`` (server)
    or ``+2`` (client); all lead to the peer's chains."""

    async def main() -> None:
        objects = [
            o
            for o in L.cluster_objects(three(), "c1")
            if o["kind"] not in ("GatewayServer", "GatewayClient") or o["metadata"]["name"] != "c2"  # type: ignore[index]
        ]
        objects.append(L.gateway("c2", we_serve, ports=[51840, 51841, 51842]))
        async with running(backend, tmp_path, objects, KubeSettings(peer="c2")) as h:
            peer = h.state().peers["c2"]
            assert peer.tunnels == ("liqo-tunnel", "liqo-tunnel1", "liqo-tunnel2")
            assert peer.gateways == tuple(map(ip, peer_addresses))
            await h.cluster.update(L.gateway("c2", we_serve, ports=[51840]))
            await h.until(lambda: h.state().peers["c2"].tunnels == ("liqo-tunnel",), "one tunnel")

    run(main())


def test_ignored_endpoints_collector_reads_a_fresh_model() -> None:
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings())
    registry = CollectorRegistry()
    registry.register(IgnoredEndpoints(m))
    text = generate_latest(registry).decode()
    assert "peerwall_endpoints_ignored_total 0.0" in text
