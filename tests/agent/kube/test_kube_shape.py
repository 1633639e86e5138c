"""Objects of the wrong shape: refused in one line naming the field, handled as deleted."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

import pytest

from kubeapi import liqo_objects as L
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import LiqoJoin
from peerwall.agent.kube.join import PodRole
from peerwall.agent.kube.shape import kept, problem
from peerwall.compile.state import SetKind
from peerwall.settings import KubeSettings


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("Pod", lambda o: o.update(spec="x"), "spec is str, expected a mapping"),
        ("Pod", lambda o: o["metadata"].update(labels=["a"]), "metadata.labels is list"),
        ("Pod", lambda o: o["metadata"]["labels"].update(a=1), "metadata.labels.a is int"),
        ("Pod", lambda o: o["status"].update(podIPs=[None]), "status.podIPs[0] is NoneType"),
        ("Pod", lambda o: o["status"].update(podIP=10**30), "status.podIP is int"),
        ("Pod", lambda o: o.update(status=None), "status is null"),
        ("Pod", lambda o: o.pop("metadata"), "metadata is missing"),
        (
            "EndpointSlice",
            lambda o: o["endpoints"][0].update(addresses="10.0.0.1"),
            "endpoints[0].addresses is str, expected a list",
        ),
    ],
)
def test_a_field_of_the_wrong_type_is_named(kind, change, message) -> None:  # type: ignore[no-untyped-def]
    obj = (
        L.shadow_pod("a", "ns", "10.10.0.5", "c2")
        if kind == "Pod"
        else L.endpoint_slice("s", "ns", "s", [("10.10.0.6", L.WORKER)])
    )
    assert problem(kind, obj) is None
    assert problem(kind, kept(kind, obj)) is None
    change(obj)
    found = problem(kind, obj)
    assert found is not None and message in found, found
    # What the source keeps of an object (the reflector's trim) has the same fault.
    assert problem(kind, kept(kind, obj)) == found
    assert problem(kind, "a string") == "the object is str, expected a mapping"


def test_an_object_that_turns_unreadable_is_handled_as_deleted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings())
    for kind, obj in (
        (liqo.NETWORK, L.pod_cidr_network("10.10.0.0/16")),
        (liqo.FOREIGN_CLUSTER, L.foreign_cluster("c2")),
        (liqo.CONFIGURATION, L.configuration("c2", ["10.20.0.0/16"], None)),
        (liqo.NAMESPACE, L.namespace("liqo-tenant-c2", {"liqo.io/remote-cluster-id": "c2"})),
    ):
        m.apply(kind, obj)
    pod = L.shadow_pod("a", "liqo-tenant-c2", "10.10.0.5", "c2")
    m.apply(liqo.POD, pod, PodRole.SHADOW)
    assert m.desired.members("c2", SetKind.OFFLOADED) == {IPv4Address("10.10.0.5")}
    pod["metadata"]["labels"] = "garbage"
    caplog.set_level(logging.ERROR, logger="peerwall")
    m.apply(liqo.POD, pod, PodRole.SHADOW)
    assert m.desired.members("c2", SetKind.OFFLOADED) == frozenset()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        "Pod liqo-tenant-c2/a refused: metadata.labels is str, expected a mapping; "
        "handled as deleted"
    )
