"""Sources as Liqo sends them (issue 16.3): a peer's masqueraded traffic, with real packets.

Liqo's nodes give traffic towards a peer that does not come from one of their pods (NodePort,
hostNetwork) the first address of the cluster's external CIDR as source, and with
``fullMasquerade`` all of it (``internal-network/configuration-controller/firewall.go`` in
liqotech/liqo). The lab's nodes do the same for clusters with an ``externalCIDR``
(``peerwall.lab.kube.liqo_masquerade``), so the receiving gateway sees exactly what Liqo sends.
That source is valid, judged by its destination only, and never an API client.

Without the peer's masquerade address among the valid sources, all of this traffic was dropped as
spoofed: with ``fullMasquerade`` a peer reached nothing at all, even under FullPodToPod.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
import yaml

from hostile import ECHO_PORT, echo_server, roundtrip, tcp_connects
from labkit import LabUp, switch, topology_of
from peerwall.lab.plan import LabPlan
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode
from peerwall.nsenter import entered
from peerwall.policy.expected import expect

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
PORT = 9300

SEED = yaml.safe_load(
    """
clusters:
  - {name: C1, podCIDR: 10.244.0.0/16, apiServer: A1, externalCIDR: 10.70.0.0/16}
  - {name: C2, podCIDR: 10.244.0.0/16, apiServer: A2, externalCIDR: 10.71.0.0/16}
peerings:
  - {consumer: C1, provider: C2}
namespaces:
  - {name: offloaded, cluster: C1, offloadedTo: [C2]}
pods:
  - {name: P1, cluster: C1, namespace: default, labels: {app: s1}}
  - {name: P2, cluster: C1, namespace: offloaded, labels: {app: s2}}
  - {name: P3, cluster: C1, namespace: offloaded}
  - {name: P4, cluster: C1, namespace: offloaded, runsOn: C2}
  - {name: P5, cluster: C2, namespace: default, labels: {app: s3}}
services:
  - {name: S1, cluster: C1, namespace: default, selector: {app: s1}}
  - {name: S2, cluster: C1, namespace: offloaded, selector: {app: s2}}
  - {name: S3, cluster: C2, namespace: default, selector: {app: s3}}
"""
)
"""The seed (pod CIDRs overlap: remapped) with external CIDRs and both API servers named."""


def seed(full_masquerade: str | None = None, external: bool = True) -> dict[str, object]:
    data = yaml.safe_load(yaml.safe_dump(SEED))
    for c in data["clusters"]:
        if not external:
            del c["externalCIDR"]
        if c["name"] == full_masquerade:
            c["fullMasquerade"] = True
    return data  # type: ignore[no-any-return]


@contextlib.contextmanager
def listener(netns: str) -> Iterator[list[IPv4Address]]:
    """A TCP listener on ``PORT`` in ``netns``; the list holds the source of each connection."""
    with entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", PORT))
    s.listen(16)
    s.settimeout(0.1)
    seen: list[IPv4Address] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, (host, _) = s.accept()
            except OSError:
                continue
            seen.append(IPv4Address(host))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()
        s.close()


def from_node(plan: LabPlan, cluster: str, pod: str) -> tuple[bool, list[IPv4Address]]:
    """A hostNetwork connection from ``cluster``'s node to ``pod``: did it arrive, and from what
    source did the pod see it?"""
    t = plan.topology
    target = t.pod_by_name[pod]
    address = t.addresses.pod_seen_from(target, cluster)
    assert address is not None
    with listener(plan.pod_ns(pod)) as seen:
        ok = tcp_connects(plan.gateway_ns(cluster), str(address), PORT)
    return ok, seen


def test_node_traffic_arrives_masqueraded_and_is_judged_by_its_destination(lab_up: LabUp) -> None:
    topology, text = topology_of(seed())
    plan = lab_up(topology, text, FULL)
    c1_source = IPv4Address("10.70.0.0")

    # FullPodToPod: C1's node reaches C2's pods, which see C1's masquerade source.
    assert from_node(plan, "C1", "P5") == (True, [c1_source])
    assert from_node(plan, "C1", "P4") == (True, [c1_source])

    # Segregation: only what C1 may reach whatever its source: P4, which C1 offloaded into C2.
    switch(plan, SEG)
    assert from_node(plan, "C1", "P4") == (True, [c1_source])
    assert from_node(plan, "C1", "P5") == (False, [])
    # C2's node towards C1: S2's backend P2 is reflected to C2; P1 and P3 are not.
    c2_source = IPv4Address("10.71.0.0")
    assert from_node(plan, "C2", "P2") == (True, [c2_source])
    assert from_node(plan, "C2", "P1") == (False, [])
    assert from_node(plan, "C2", "P3") == (False, [])

    # A masqueraded source is never an API client, even from a node where a pod homed in C1 runs.
    api_c1 = topology.addresses.seen_from(topology.addresses.api_ip("C1"), "C1", "C2")
    assert api_c1 is not None
    assert not tcp_connects(plan.gateway_ns("C2"), str(api_c1), 6443)


def node_connection(plan: LabPlan, cluster: str, pod: str) -> socket.socket:
    t = plan.topology
    address = t.addresses.pod_seen_from(t.pod_by_name[pod], cluster)
    with entered(plan.gateway_ns(cluster)):
        sock = socket.socket()
    sock.settimeout(0.5)
    sock.connect((str(address), ECHO_PORT))
    return sock


def test_a_narrowing_change_cuts_masqueraded_flows_it_forbids(lab_up: LabUp) -> None:
    """Flow cleanup knows the masquerade source as the peer's: C1's node -> P5 is cut by the
    switch to segregation, C1's node -> P4 (offloaded by C1) keeps echoing."""
    topology, text = topology_of(seed())
    plan = lab_up(topology, text, FULL)
    with (
        echo_server(plan.pod_ns("P5")),
        echo_server(plan.pod_ns("P4")),
        node_connection(plan, "C1", "P5") as forbidden,
        node_connection(plan, "C1", "P4") as allowed,
    ):
        assert roundtrip(forbidden, b"a") == b"a" and roundtrip(allowed, b"a") == b"a"
        switch(plan, SEG)
        try:
            still = roundtrip(forbidden, b"b") == b"b"
        except OSError:
            still = False
        assert not still
        assert roundtrip(allowed, b"c") == b"c"


def test_without_the_masquerade_address_node_traffic_is_spoofed(lab_up: LabUp) -> None:
    """The control: no external CIDR, no masquerade, and the node's own source is dropped."""
    topology, text = topology_of(seed(external=False))
    plan = lab_up(topology, text, FULL)
    assert from_node(plan, "C1", "P5") == (False, [])


@pytest.mark.parametrize("mode", [FULL, SEG])
def test_full_masquerade_keeps_the_table_but_the_home_api_server(
    lab_up: LabUp, mode: SecurityMode
) -> None:
    """C2 masquerades everything: every cell of the table, probed, equals the computed one, in
    which P4 (home C1, running in C2) loses its home API server under segregation only."""
    topology, text = topology_of(seed(full_masquerade="C2"))
    plan = lab_up(topology, text, mode)
    observed = observe_lab(plan, mode.value).table
    expected = expect(topology, mode).table
    differ = observed.compare(expected)
    assert not differ, list(differ.mismatches())
    p4_api = expected.get("P4", "A1")
    assert p4_api is not None and p4_api.value == ("NO" if mode is SEG else "YES")
    # And C1's pods see C2's pods' traffic from C2's masquerade source.
    t = plan.topology
    with listener(plan.pod_ns("P2")) as seen:
        p2 = t.addresses.pod_seen_from(t.pod_by_name["P2"], "C2")
        assert tcp_connects(plan.pod_ns("P4"), str(p2), PORT)
    assert seen == [IPv4Address("10.71.0.0")]
