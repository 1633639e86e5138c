"""Explained drops without a kernel: logged packets (as the NFLOG reader yields them) become
events that name both ends from the topology and carry the decision procedure's explanation; the
ring keeps the newest and counts what it pushed out; ``/flows`` serves JSON lines and HTML."""

from __future__ import annotations

import json
from importlib import resources
from ipaddress import IPv4Address

from peerwall.agent.desired import DesiredState
from peerwall.agent.flowevents import FlowEvent, FlowNamer, FlowRing, event_of, parse_prefix
from peerwall.agent.flowsapi import flows_route
from peerwall.compile.desired import gateway_state
from peerwall.compile.names import flow_prefix
from peerwall.dataplane.nflog import LoggedPacket
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy.explain import explain_cell

SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def seed_namer(cluster: str = "C2") -> tuple[FlowNamer, Topology]:
    text = resources.files("peerwall.examples").joinpath("seed.yaml").read_text()
    t = load_topology(text, "seed.yaml")
    desired = DesiredState(cluster, "pwt-*", 12345)
    desired.load(gateway_state(t, cluster, SEG))
    namer = FlowNamer(lambda: cluster, desired.declarations)
    namer.use(t, SEG)
    return namer, t


def packet(
    prefix: str, src: str, dst: str, proto: str = "tcp", port: int | None = 8080
) -> LoggedPacket:
    return LoggedPacket(
        1796612400.5, prefix, "forward", 3, 4, IPv4Address(src), IPv4Address(dst), proto, port
    )


def test_a_denied_packet_names_both_pods_and_says_why_as_explain_does() -> None:
    namer, t = seed_namer("C2")
    p1_at_c2 = str(t.addresses.pod_seen_from(t.pod_by_name["P1"], "C2"))
    p5 = str(t.pod_by_name["P5"].ip)
    e = event_of(packet(flow_prefix("dropped", "forward", "denied", "C1"), p1_at_c2, p5), namer)
    assert e is not None
    assert (e.cluster, e.peer, e.verdict, e.reason) == ("C2", "C1", "dropped", "segregation-denied")
    assert (e.src.name, e.src.kind, e.src.cluster) == ("P1", "pod", "C1")
    assert (e.dst.name, e.dst.kind, e.dst.cluster) == ("P5", "pod", "C2")
    assert e.explanation == explain_cell(t, "P1", "P5", SEG).reason
    assert e.mode is not None and e.mode.startswith(SEG.value)
    assert e.time == "2026-12-07T03:00:00.500000+00:00"


def test_a_spoofed_source_is_never_credited_to_the_pod_it_names() -> None:
    namer, t = seed_namer("C1")
    p2 = str(t.pod_by_name["P2"].ip)  # a C1 pod, claimed by C2
    e = event_of(packet(flow_prefix("dropped", "forward", "spoofed", "C2"), p2, p2), namer)
    assert e is not None and e.reason == "spoofed-source"
    assert e.src.name is None and e.src.address == p2
    assert "not an address of C2's pods" in e.explanation and "P2 of C1" in e.explanation


def test_unknown_prefixes_are_not_peerwall_events() -> None:
    namer, _ = seed_namer()
    assert parse_prefix("kube-proxy: drop") is None
    assert event_of(packet("someone:else", "10.0.0.1", "10.0.0.2"), namer) is None
    assert parse_prefix(flow_prefix("would-drop", "forward", "denied", "a:b")) == (
        "would-drop",
        "forward",
        "denied",
        "a:b",
    )


def test_without_a_topology_the_event_still_says_what_and_where() -> None:
    namer, _t = seed_namer("C2")
    namer.use(None, SEG)
    e = event_of(
        packet(flow_prefix("dropped", "forward", "denied", "C1"), "10.9.9.9", "10.244.0.5"), namer
    )
    assert e is not None and e.reason == "not-admitted"
    assert e.src.name is None and "10.244.0.5" in e.explanation and "C1" in e.explanation


def ring_event() -> FlowEvent:
    namer, _t = seed_namer("C2")
    e = event_of(
        packet(flow_prefix("dropped", "input", "gateway", "C1"), "10.0.0.1", "169.254.2.2"), namer
    )
    assert e is not None
    return e


def test_the_ring_keeps_the_newest_and_counts_what_it_pushed_out() -> None:
    ring = FlowRing(3)
    for _k in range(5):
        ring.add(ring_event())
    assert [e.seq for e in ring.since()] == [3, 4, 5]
    assert [e.seq for e in ring.since(4)] == [5]
    assert [e.seq for e in ring.since(0, limit=2)] == [4, 5]
    assert ring.dropped == 2


def test_flows_serves_json_lines_html_and_refuses_bad_queries() -> None:
    ring = FlowRing(10)
    for _k in range(3):
        ring.add(ring_event())
    route = flows_route(ring, lambda: "drops at C2")
    code, body, kind = route("since=1")
    assert (code, kind) == (200, "application/x-ndjson")
    lines = [json.loads(x) for x in body.decode().splitlines()]
    assert [x["seq"] for x in lines] == [2, 3]
    assert FlowEvent.from_json(lines[0]) == ring.since(1)[0]
    assert lines[0]["dst"]["name"] == "gateway" and lines[0]["reason"] == "gateway-itself"
    code, body, kind = route("format=html")
    assert code == 200 and kind.startswith("text/html")
    assert b"drops at C2" in body and b"only what the link needs" in body
    assert route("since=x")[0] == 400 and route("limit=-1")[0] == 400


def test_state_drops_say_why_and_a_leaving_packet_has_its_source_here() -> None:
    namer, t = seed_namer("C2")
    p5 = str(t.pod_by_name["P5"].ip)  # C2's pod
    p1_at_c2 = str(t.addresses.pod_seen_from(t.pod_by_name["P1"], "C2"))
    # The local pod's mid-stream segment of a cut connection, leaving by C1's tunnel.
    e = event_of(packet(flow_prefix("dropped", "egress", "not-syn", "C1"), p5, p1_at_c2), namer)
    assert e is not None and (e.reason, e.verdict) == ("not-syn", "dropped")
    assert (e.src.name, e.src.cluster) == ("P5", "C2")
    assert (e.dst.name, e.dst.cluster) == ("P1", "C1")
    assert "must start with a SYN" in e.explanation
    e = event_of(
        packet(flow_prefix("dropped", "forward", "other-tunnel", "C1"), p1_at_c2, p5), namer
    )
    assert e is not None and e.reason == "other-tunnel"
    assert (e.src.name, e.dst.name) == ("P1", "P5")
    assert "did not cross C1's tunnel" in e.explanation
    e = event_of(packet(flow_prefix("dropped", "input", "invalid", "C1"), p1_at_c2, p5), namer)
    assert e is not None and e.reason == "invalid" and "invalid" in e.explanation
