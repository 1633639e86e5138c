"""The fake API server keeps to the protocol and the schemas, seen through the source's client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubeapi import liqo_objects as L
from kubeapi.fake import K8S_VERSION, FakeApiServer, Invalid, core_validator, validate
from kubeapi.harness import run
from peerwall import liqo
from peerwall.agent.kube import KubeApi
from peerwall.agent.kube.client import Gone
from peerwall.model.load import load_topology
from peerwall.model.spec import SecurityMode

HERE = Path(__file__).parent
REPO = HERE.parents[2]


def topologies() -> list[Path]:
    return [HERE / "seed-topology.yaml", HERE / "three-clusters.yaml"]


@pytest.mark.parametrize("path", topologies(), ids=lambda p: p.name)
def test_served_objects_pass_the_schemas(path: Path, tmp_path: Path) -> None:
    """Every object a test cluster holds is valid when stored (core kinds: kubernetes-validate,
    strict; Liqo's and ours: their CRD schema, unknown fields refused), and still when served."""
    topology = load_topology(path.read_text())

    async def main() -> None:
        async with FakeApiServer() as fake:
            api = KubeApi.from_config(fake.kubeconfig(tmp_path / "kubeconfig"))
            try:
                for cluster in topology.clusters:
                    fake.objects.clear()
                    for obj in L.cluster_objects(topology, cluster.name):
                        fake.create(obj)
                    for kind in liqo.ALL_KINDS:
                        items, _ = await api.list(kind)
                        for item in items:
                            item.setdefault("kind", kind.kind)
                            item.setdefault("apiVersion", kind.api_version)
                            validate(fake.resource_of(item), item)
            finally:
                await api.aclose()

    run(main())


@pytest.mark.parametrize(
    "obj",
    [
        L.peering_security("c2", "Open"),
        L.peering_security("C2", SecurityMode.FULL_POD_TO_POD.value),
        {
            **L.pod("a", "b", "10.0.0.1"),
            "spec": {"containers": [{"name": "x", "image": "i", "bogus": 1}]},
        },
        {**L.configuration("c2", ["10.0.0.0/16"], None), "spec": {"remote": {"cidrs": {}}}},
        {**L.foreign_cluster("c2"), "spec": {}},
        {**L.endpoint_slice("e", "ns", "s", []), "endpoints": [{"nodeName": "n"}]},
    ],
    ids=["mode", "cluster-id", "pod-field", "config-field", "fc-no-id", "slice-no-addresses"],
)
def test_invalid_objects_are_refused(obj: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        FakeApiServer().create(obj)


def core_cases() -> list[dict[str, Any]]:
    """Core objects a cluster of the seed holds, each also broken three ways (an unknown field,
    a wrong type, a required field gone), and one of a kind kubernetes-validate has no schema for."""
    topology = load_topology((HERE / "seed-topology.yaml").read_text())
    kept = [
        o
        for c in topology.clusters
        for o in L.cluster_objects(topology, c.name)
        if "." not in o["apiVersion"].split("/")[0] or o["apiVersion"].startswith("discovery.")
    ]
    cases: list[dict[str, Any]] = []
    for obj in {o["kind"]: o for o in kept}.values():
        cases.append(obj)
        cases.append({**obj, "bogus": 1})
        cases.append({**obj, "metadata": {**obj["metadata"], "name": 7}})
        cases.append({k: v for k, v in obj.items() if k != "metadata"})
    cases.append({"apiVersion": "v1", "kind": "NoSuchKind", "metadata": {"name": "x"}})
    return cases


def test_the_fakes_core_validation_is_kubernetes_validates() -> None:
    """The fake checks core kinds with kubernetes-validate's validator built once per kind
    (``server.core_validator``), not the library's ``validate`` that re-reads the schemas per
    call: same verdict and same message on valid objects and on broken ones."""
    seen_kinds, refused = set(), 0
    for obj in core_cases():
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            want: str | None = None
        except kubernetes_validate.ValidationError as exc:
            want = exc.message
        except kubernetes_validate.SchemaNotFoundError as exc:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError) as got:
                core_validator(obj["kind"], obj["apiVersion"])
            assert got.value.message == exc.message
            continue
        try:
            core_validator(obj["kind"], obj["apiVersion"]).validate(obj)
            got_message: str | None = None
        except jsonschema.ValidationError as exc:
            got_message = exc.message
        assert got_message == want, obj
        seen_kinds.add(obj["kind"])
        refused += want is not None
    assert {"Pod", "Service", "Namespace", "EndpointSlice"} <= seen_kinds
    assert refused >= 2 * len(seen_kinds)  # the broken copies are refused, by both


def test_peeringsecurity_crd_is_structural_with_the_two_modes() -> None:
    crd = yaml.safe_load((REPO / "deploy" / "crds" / "peeringsecurity.yaml").read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == "peerwall.io" and crd["spec"]["scope"] == "Cluster"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["clusterID", "securityMode"]
    assert spec["properties"]["securityMode"]["enum"] == [m.value for m in SecurityMode]

    def structural(schema: dict[str, object], path: str = "") -> None:
        assert "type" in schema, f"{path}: no type"
        for name, sub in (schema.get("properties") or {}).items():  # type: ignore[attr-defined]
            structural(sub, f"{path}.{name}")

    structural(version["schema"]["openAPIV3Schema"])


def test_list_pages_selectors_and_watch(tmp_path: Path) -> None:
    async def main() -> None:
        async with FakeApiServer() as fake:
            api = KubeApi.from_config(fake.kubeconfig(tmp_path / "kubeconfig"))
            try:
                fake.create(L.namespace("ns"))
                for i in range(5):
                    fake.create(L.pod(f"p{i}", "ns", f"10.0.0.{i + 1}", labels={"n": str(i % 2)}))
                items, rv = await api.list(liqo.POD, limit=2)
                assert [i["metadata"]["name"] for i in items] == [f"p{i}" for i in range(5)]
                assert rv == str(fake.rv)
                assert len([r for r in fake.requests if r[0] == "/api/v1/pods"]) == 3
                odd, _ = await api.list(liqo.POD, namespace="ns", labels="n=1")
                assert [i["metadata"]["name"] for i in odd] == ["p1", "p3"]
                some, _ = await api.list(
                    liqo.POD, labels="n,n notin (1)", fields="metadata.name!=p0"
                )
                assert [i["metadata"]["name"] for i in some] == ["p2", "p4"]

                # A watch with a selector sees objects enter (ADDED) and leave (DELETED) it.
                events = []
                stream = api.watch(liqo.POD, rv, labels="n=1", timeout_seconds=5)
                fake.update(L.pod("p0", "ns", "10.0.0.1", labels={"n": "1"}))
                fake.update(L.pod("p1", "ns", "10.0.0.2", labels={"n": "0"}))
                fake.update(L.pod("p2", "ns", "10.0.0.3", labels={"n": "0", "x": "y"}))
                async for event in stream:
                    events.append((event.type, event.object["metadata"]["name"]))
                    if len(events) == 2:
                        break
                assert events == [("ADDED", "p0"), ("DELETED", "p1")]

                fake.compact()
                with pytest.raises(Gone):
                    async for _ in api.watch(liqo.POD, rv, timeout_seconds=5):
                        pass
            finally:
                await api.aclose()

    run(main())


def test_the_charts_crd_is_this_one() -> None:
    """The chart ships the CRD it copied from deploy/crds, and so does the emulated API server
    (package data): they must not drift apart."""
    ours = yaml.safe_load((REPO / "deploy" / "crds" / "peeringsecurity.yaml").read_text())
    chart = yaml.safe_load(
        (REPO / "deploy" / "helm" / "peerwall" / "crds" / "peeringsecurity.yaml").read_text()
    )
    served = REPO / "src" / "peerwall" / "lab" / "apiserver" / "crds"
    emulated = yaml.safe_load((served / "peerwall.io_peeringsecurities.yaml").read_text())
    assert ours == chart == emulated
