"""Anti-spoofing: a forged source address gains nothing, because peers are told apart by tunnel.

Frames are injected straight onto C2's end of the C1–C2 tunnel with an AF_PACKET socket, below
C2's own netfilter, as a compromised C2 gateway could. A sniffer in P1's namespace reports whether
anything arrived.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from ipaddress import IPv4Address

import pytest

from hostile import tcp_syn
from labkit import LabUp, seed_topology, switch
from peerwall.compile.names import peer_chain, tunnel_ifname
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode
from peerwall.nsenter import entered

pytestmark = pytest.mark.lab
ETH_P_ALL, ETH_P_IP = 0x0003, 0x0800
DPORT = 8080


def syn_packet(src: IPv4Address, dst: IPv4Address, sport: int) -> bytes:
    return tcp_syn(src, dst, sport, DPORT)


def mac(netns: str, ifname: str) -> bytes:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))


def inject_and_sniff(plan: LabPlan, src: IPv4Address, sport: int) -> bool:
    """Inject a SYN for P1 from C2's tunnel end with source ``src``; did it reach P1?"""
    c1, c2 = plan.gateway_ns("C1"), plan.gateway_ns("C2")
    out_if, in_if = tunnel_ifname("C1"), tunnel_ifname("C2")  # C2's end, C1's end
    p1 = plan.topology.pod_by_name["P1"]
    dst = plan.topology.addresses.pod_seen_from(p1, "C2")  # P1 as C2 addresses it
    assert dst is not None
    with entered(plan.pod_ns("P1")):
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with entered(c2):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with sniffer, raw:
        sniffer.bind(("eth0", 0))
        sniffer.setblocking(False)
        raw.bind((out_if, 0))
        frame = mac(c1, in_if) + mac(c2, out_if) + struct.pack("!H", ETH_P_IP)
        raw.send(frame + syn_packet(src, dst, sport))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                data = sniffer.recv(2048)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            ip = data[14:]
            if (
                data[12:14] == b"\x08\x00"
                and ip[9] == socket.IPPROTO_TCP
                and struct.unpack("!H", ip[20:22])[0] == sport
                and ip[16:20] == p1.ip.packed
            ):
                return True
    return False


def drops(plan: LabPlan) -> int:
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            plan.gateway_ns("C1"),
            "nft",
            "-j",
            "list",
            "chain",
            "inet",
            "peerwall",
            peer_chain("C2"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = 0
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += expr["counter"]["packets"]
    return total


def test_forged_sources_cannot_reach_p1(lab_up: LabUp, seed_text: str) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, SecurityMode.FULL_POD_TO_POD)
    p2, p4, p5 = (plan.topology.pod_by_name[n] for n in ("P2", "P4", "P5"))
    legit = plan.topology.addresses.pod_seen_from(p5, "C1")  # a real C2 pod, as C1 sees it
    assert legit is not None
    # Control: under FullPodToPod a well-formed packet from a C2 pod does arrive, so the sniffer
    # and the injection work and a "no" below means a drop.
    assert inject_and_sniff(plan, legit, 40001)
    # Claiming to be P2 (a C1 pod, as if the traffic were intra-cluster) is dropped even here.
    before = drops(plan)
    assert not inject_and_sniff(plan, p2.ip, 40002)
    assert drops(plan) == before + 1

    switch(plan, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    p4_seen = plan.topology.addresses.pod_seen_from(
        p4, "C1"
    )  # P4 was offloaded by C1: it may reach P2, never P1
    assert p4_seen is not None
    for i, forged in enumerate((p2.ip, p4_seen, legit, p4.ip)):
        before = drops(plan)
        assert not inject_and_sniff(plan, forged, 40010 + i), f"forged source {forged} got through"
        assert drops(plan) == before + 1
