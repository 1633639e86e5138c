"""Explained drops and audit mode (issue 19), on the seed's lab with real packets.

Every forbidden packet is sent once (a lone SYN, one datagram, one echo request, one forged
frame), so each must give exactly one event. Reports arrive asynchronously: after the traffic
under test, a *marker* (TCP to port 9 of each gateway itself, always dropped and reported) is sent
to both gateways, and the events are read once both markers are in. A gateway reports in order, so
any event the traffic under test caused is in by then: "exactly these events" is checked, not
hoped for.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from ipaddress import IPv4Address
from typing import Any

import pytest
from typer.testing import CliRunner

from hostile import checksum, ipv4, send_raw, tcp_syn
from labkit import LabUp, seed_topology
from peerwall.cli.main import app
from peerwall.compile.names import tunnel_ifname
from peerwall.lab import build as labs
from peerwall.lab.drops import Follower
from peerwall.lab.plan import LabPlan
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode
from peerwall.nsenter import entered
from peerwall.policy import Verdict, expect
from peerwall.policy.explain import explain_cell
from peerwall.settings import LabSettings, ProbeSettings

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
MARKER_PORT = 9
WAIT = 20.0
"""Seconds to wait for the markers' events before calling the reports lost (not a bound on
speed: they normally take milliseconds)."""


def _address(plan: LabPlan, pod: str, viewer: str) -> str:
    a = plan.topology.addresses.pod_seen_from(plan.topology.pod_by_name[pod], viewer)
    assert a is not None
    return str(a)


def _gateway(plan: LabPlan, cluster: str, seen_from: str) -> str:
    """``cluster``'s gateway address on its tunnel with ``seen_from``."""
    return str(plan.tunnel(seen_from, cluster)[2])


def lone_syn(plan: LabPlan, pod: str, host: str, port: int) -> None:
    """One SYN from ``pod`` (closed before any retransmission)."""
    with entered(plan.pod_ns(pod)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((host, port))
        time.sleep(0.05)


def one_datagram(plan: LabPlan, pod: str, host: str, port: int) -> None:
    with entered(plan.pod_ns(pod)):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.sendto(b"peerwall", (host, port))


def one_echo(plan: LabPlan, pod: str, host: str) -> None:
    with entered(plan.pod_ns(pod)):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with s:
        body = struct.pack("!BBHHH", 8, 0, 0, 0x4219, 1) + b"peerwall"
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        s.sendto(body, (host, 0))


def mac(netns: str, ifname: str) -> bytes:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))


def forged_syn(plan: LabPlan, src: IPv4Address, pod: str, port: int) -> None:
    """A SYN with a forged source, put on C2's end of the tunnel (a hostile C2 gateway), for
    ``pod`` of C1 as C2 addresses it."""
    c1, c2 = plan.gateway_ns("C1"), plan.gateway_ns("C2")
    out_if, in_if = tunnel_ifname("C1"), tunnel_ifname("C2")
    dst = IPv4Address(_address(plan, pod, "C2"))
    with entered(c2):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with raw:
        raw.bind((out_if, 0))
        frame = mac(c1, in_if) + mac(c2, out_if) + struct.pack("!H", 0x0800)
        raw.send(frame + tcp_syn(src, dst, 40019, port))


def lone_ack(plan: LabPlan, pod: str, host: str, port: int) -> None:
    """One mid-stream TCP segment (ACK, no connection) from ``pod``: conntrack's loose pickup
    makes it a new connection, which the tunnel's egress chain drops (new TCP must be a SYN)."""
    src, dst = plan.topology.pod_by_name[pod].ip, IPv4Address(host)
    tcp = struct.pack("!HHIIBBHHH", 40020, port, 7, 7, 5 << 4, 0x10, 64240, 0, 0)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    send_raw(plan.pod_ns(pod), ipv4(src, dst, socket.IPPROTO_TCP, tcp))


def markers(plan: LabPlan) -> None:
    lone_syn(plan, "P1", _gateway(plan, "C2", "C1"), MARKER_PORT)
    lone_syn(plan, "P5", _gateway(plan, "C1", "C2"), MARKER_PORT)


def is_marker(e: dict[str, Any]) -> bool:
    return e["hook"] == "input" and e["port"] == MARKER_PORT


def events_until_markers(follower: Follower) -> list[dict[str, Any]]:
    """Every event up to the markers of both gateways (markers left out)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT
    while sum(is_marker(e) for e in got) < 2:
        assert time.monotonic() < deadline, f"the markers' events never came: {got}"
        got += follower.poll()
        time.sleep(0.05)
    return [e for e in got if not is_marker(e)]


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


def fields(e: dict[str, Any]) -> tuple[object, ...]:
    return (
        e["cluster"],
        e["peer"],
        e["hook"],
        e["verdict"],
        e["reason"],
        e["src"]["name"],
        e["src"]["address"],
        e["dst"]["name"],
        e["dst"]["address"],
        e["protocol"],
        e["port"],
    )


def test_each_kind_of_forbidden_traffic_gives_exactly_its_explained_event(
    lab_up: LabUp, seed_text: str
) -> None:
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, SEG)
    follower = Follower(plan, ["C1", "C2"])
    expected = expect(topology, SEG).table

    # Allowed traffic first: every cross-cluster pod cell that is YES, by TCP, UDP and ICMP.
    allowed = [
        (s, d)
        for s, d, v in expected.cells()
        if v is Verdict.YES
        and d in topology.pod_by_name
        and topology.pod_by_name[s].physical != topology.pod_by_name[d].physical
    ]
    assert allowed  # P1 -> P4 at least: P4 was offloaded by C1
    for s, d in allowed:
        where = topology.pod_by_name[s].physical
        host = _address(plan, d, where)
        lone_syn(plan, s, host, 8080)
        one_datagram(plan, s, host, 5000)
        one_echo(plan, s, host)
    markers(plan)
    assert events_until_markers(follower) == []  # allowed traffic is never reported

    # Forbidden traffic, one packet of each kind.
    p1_at_c2, p5_at_c1 = _address(plan, "P1", "C2"), _address(plan, "P5", "C1")
    p4_at_c1 = _address(plan, "P4", "C1")
    lone_syn(plan, "P1", _address(plan, "P5", "C1"), 8080)  # TCP to a pod C2 denies C1
    one_datagram(plan, "P5", _address(plan, "P1", "C2"), 5353)  # UDP to a pod C1 denies C2
    one_echo(plan, "P4", _address(plan, "P3", "C2"))  # ICMP: P4 runs in C2, so it is C2's
    lone_syn(plan, "P5", _gateway(plan, "C1", "C2"), 22)  # to the gateway itself
    forged = IPv4Address("192.0.2.19")
    forged_syn(plan, forged, "P1", 8080)  # a spoofed source from C2's side
    lone_ack(plan, "P1", p4_at_c1, 8080)  # mid-stream, leaving by C1's tunnel to C2
    markers(plan)
    events = events_until_markers(follower)

    p3 = str(topology.pod_by_name["P3"].ip)
    p1, p5 = str(topology.pod_by_name["P1"].ip), str(topology.pod_by_name["P5"].ip)
    assert sorted(map(fields, events), key=str) == sorted(
        [
            ("C2", "C1", "forward", "dropped", "segregation-denied", "P1", p1_at_c2, "P5", p5, "tcp", 8080),
            ("C1", "C2", "forward", "dropped", "segregation-denied", "P5", p5_at_c1, "P1", p1, "udp", 5353),
            ("C1", "C2", "forward", "dropped", "segregation-denied", "P4", p4_at_c1, "P3", p3, "icmp", 8),
            ("C1", "C2", "input", "dropped", "gateway-itself", "P5", p5_at_c1, "gateway", _gateway(plan, "C1", "C2"), "tcp", 22),
            ("C1", "C2", "forward", "dropped", "spoofed-source", None, str(forged), "P1", p1, "tcp", 8080),
            ("C1", "C2", "forward", "dropped", "not-syn", "P1", p1, "P4", p4_at_c1, "tcp", 8080),
        ],
        key=str,
    )  # fmt: skip
    by = {(e["src"]["name"] or e["src"]["address"], e["dst"]["name"]): e for e in events}
    # The explanation is the decision procedure's, word for word (what `peerwall explain` says).
    for s, d in (("P1", "P5"), ("P5", "P1"), ("P4", "P3")):
        assert by[(s, d)]["explanation"] == explain_cell(topology, s, d, SEG).reason
        assert by[(s, d)]["mode"].startswith(SEG.value)
    assert "192.0.2.19" in by[(str(forged), "P1")]["explanation"]
    assert "not an address of C2's pods" in by[(str(forged), "P1")]["explanation"]
    assert "only what the link needs" in by[("P5", "gateway")]["explanation"]
    assert "must start with a SYN" in by[("P1", "P4")]["explanation"]

    # The CLI shows the same: filtered JSON lines, and the probe page with each cell's drops.
    result = cli("lab", "drops", "--name", plan.name, "--from", "P1", "--to", "P5", "-o", "json")
    assert result.exit_code == 0, result.output
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert [fields(e) for e in shown] == [fields(by[("P1", "P5")])]
    result = cli("lab", "drops", "--name", plan.name, "-o", "html")
    assert result.exit_code == 0, result.output
    cells = set(re.findall(r'<td class="drop" title="[^"]*" data-source="([^"]+)" '
                           r'data-destination="([^"]+)"', result.stdout))  # fmt: skip
    assert cells == set(by) | {("P1", "gateway")}  # and the markers': P1's and P5's to a gateway
    result = cli("lab", "probe", "--name", plan.name, "-o", "html", "--timeout", "0.5")
    assert result.exit_code == 0, result.output
    listed = set(
        re.findall(r'<li data-source="([^"]+)" data-destination="([^"]+)">', result.stdout)
    )
    assert listed == {
        (s, d)
        for s, d, v in expected.cells()
        if v is Verdict.NO
        and d in topology.pod_by_name
        and topology.pod_by_name[s].physical != topology.pod_by_name[d].physical
    }
    assert explain_cell(topology, "P1", "P5", SEG).reason in result.stdout

    # --follow prints what comes next, as it comes (the process is ended by its PID).
    follow = subprocess.Popen(
        [sys.executable, "-m", "peerwall.cli", "lab", "drops", "--name", plan.name, "--follow",
         "-o", "json", "--from", "P5", "--to", "P1"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert follow.stdout is not None
    stream = follow.stdout

    def pump() -> None:
        for x in stream:
            lines.put(x)

    threading.Thread(target=pump, daemon=True).start()

    def line() -> dict[str, Any]:
        return dict(json.loads(lines.get(timeout=WAIT)))  # never hangs the run

    try:
        old = line()  # the UDP datagram above, already in the ring
        assert fields(old) == fields(by[("P5", "P1")])
        one_datagram(plan, "P5", _address(plan, "P1", "C2"), 6000)
        # After the ring's older P5 -> P1 events (the probe's above), the new one.
        seen = [line()]
        while seen[-1]["port"] != 6000:
            assert len(seen) < 20, seen
            seen.append(line())
        new = seen[-1]
        assert (new["src"]["name"], new["dst"]["name"], new["protocol"]) == ("P5", "P1", "udp")
        assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)
    finally:
        follow.terminate()
        follow.wait(10)


def test_audit_lets_through_exactly_what_segregation_drops_and_reports_it(
    lab_up: LabUp, seed_text: str
) -> None:
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, FULL)
    settings = LabSettings()
    done = labs.set_mode(plan.name, SEG, settings, audit=True)
    # Switching audit on (with the mode) is one element per gateway, as a mode change.
    assert all(s["transactions"]["mode"] == 1 for s in done.statuses.values())
    follower = Follower(plan, ["C1", "C2"])

    observed = observe_lab(plan, SEG.value, probe=ProbeSettings(timeout=0.5))
    assert not expect(topology, FULL).table.compare(observed.table)  # FullPodToPod's table
    markers(plan)
    events = events_until_markers(follower)

    full, seg = expect(topology, FULL).table, expect(topology, SEG).table
    turned = {(s, d) for s, d, v in seg.cells() if v is not full[s, d]}
    assert len(turned) == 7  # the seed's `peerwall diff`
    assert {(e["src"]["name"], e["dst"]["name"]) for e in events} == turned
    for e in events:
        assert e["verdict"] == "would-drop"
        s, d = e["src"]["name"], e["dst"]["name"]
        assert (e["reason"], e["explanation"]) == (
            "segregation-denied",
            explain_cell(topology, s, d, SEG).reason,
        )

    # Audit off again: one element per gateway, and the same cells are dropped for real.
    done = labs.set_mode(plan.name, SEG, settings, audit=False)
    assert all(s["transactions"]["mode"] == 2 for s in done.statuses.values())
    observed = observe_lab(plan, SEG.value, probe=ProbeSettings(timeout=0.5))
    assert not seg.compare(observed.table)
    markers(plan)
    events = events_until_markers(follower)
    assert {(e["src"]["name"], e["dst"]["name"]) for e in events} == turned
    assert {e["verdict"] for e in events} == {"dropped"}
