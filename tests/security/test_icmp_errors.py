"""ICMP errors are bound to their tunnel (issue 14.2).

Conntrack accepts an ICMP error as ``related`` to the connection it quotes, whoever sends it. In
the three-cluster example under segregation, C2 may not reach ``tool`` in C1; ``tool`` talks to
``web3`` in C3. A hostile C2 writes ICMP errors about that C1-C3 connection straight onto its
tunnel (below its own netfilter, as a peer without peerwall would): port and host unreachable,
time exceeded, and "fragmentation needed" (MTU 552) with its outer source forged as a pod of C1
or as C2's gateway. None may reach ``tool``. The same errors about ``tool``'s own connection to
``web2`` (in C2), from ``web2`` or from C2's gateway, still arrive: a path MTU and a refused port
are news the peer is entitled to give.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from importlib import resources
from ipaddress import IPv4Address

import pytest

from hostile import checksum, ipv4, sniffer, udp
from labkit import LabUp
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology
from peerwall.nsenter import entered

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
ETH_P_IP = 0x0800
SPORT, DPORT = 40123, 9300
PORT_UNREACHABLE, HOST_UNREACHABLE, FRAG_NEEDED, TIME_EXCEEDED = (3, 3), (3, 1), (3, 4), (11, 0)


def icmp_error(src: IPv4Address, dst: IPv4Address, kind: tuple[int, int], quoted: bytes) -> bytes:
    """An ICMP error from ``src`` to ``dst`` quoting ``quoted`` (an IP header and 8 bytes)."""
    rest = struct.pack("!HH", 0, 552) if kind == FRAG_NEEDED else b"\0\0\0\0"
    body = struct.pack("!BBH", *kind, 0) + rest + quoted
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    return ipv4(src, dst, socket.IPPROTO_ICMP, body)


def onto_tunnel(plan: LabPlan, sender: str, receiver: str, packet: bytes) -> None:
    """Put ``packet`` on ``sender``'s tunnel to ``receiver`` below ``sender``'s netfilter."""
    ifname = plan.tunnel(sender, receiver)[0]
    far = plan.tunnel(receiver, sender)[0]
    out = subprocess.run(
        ["ip", "-n", plan.gateway_ns(receiver), "-j", "link", "show", "dev", far],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mac = bytes.fromhex(json.loads(out)[0]["address"].replace(":", ""))
    with entered(plan.gateway_ns(sender)):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    with s:
        s.sendto(packet, (ifname, ETH_P_IP, 0, 0, mac))


def icmp_of(kind: tuple[int, int]) -> object:
    def match(ip: bytes) -> bool:
        head = (ip[0] & 0x0F) * 4
        return ip[9] == socket.IPPROTO_ICMP and (ip[head], ip[head + 1]) == kind

    return match


def test_a_peer_cannot_send_icmp_errors_about_another_tunnels_connection(lab_up: LabUp) -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    plan = lab_up(load_topology(text, "three"), text, SEG)
    t = plan.topology
    a = t.addresses
    tool, web2, web3, cache, db = (
        t.pod_by_name[n] for n in ("tool", "web2", "web3", "cache", "db")
    )
    web3_at_c1, web2_at_c1 = a.pod_seen_from(web3, "C1"), a.pod_seen_from(web2, "C1")
    tool_at_c2, cache_at_c1 = a.pod_seen_from(tool, "C2"), a.pod_seen_from(cache, "C1")
    assert web3_at_c1 and web2_at_c1 and tool_at_c2 and cache_at_c1
    c2_gateway = plan.tunnel("C1", "C2")[2]

    with entered(plan.pod_ns("tool")):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.bind(("0.0.0.0", SPORT))
        # tool's connection with C3 (across C1's other tunnel): C2 has nothing to say about it.
        s.sendto(b"to C3", (str(web3_at_c1), DPORT))
        about_c3 = udp(tool.ip, web3_at_c1, SPORT, DPORT, b"")[:28]
        forged = [
            (cache_at_c1, PORT_UNREACHABLE),
            (cache_at_c1, HOST_UNREACHABLE),
            (cache_at_c1, TIME_EXCEEDED),
            (cache_at_c1, FRAG_NEEDED),
            (db.ip, FRAG_NEEDED),  # the outer source forged as a pod of C1
            (c2_gateway, FRAG_NEEDED),  # C2's gateway: only about its own tunnel's connections
            (c2_gateway, PORT_UNREACHABLE),
        ]
        for src, kind in forged:
            with sniffer(plan.pod_ns("tool"), "eth0") as seen:
                onto_tunnel(plan, "C2", "C1", icmp_error(src, tool.ip, kind, about_c3))
                assert not seen(icmp_of(kind)), (str(src), kind)

        # tool's own connection to web2 in C2: C2's errors about it arrive, NAT undone. On the
        # tunnel, C2 sees tool through its remapped CIDR.
        s.sendto(b"to C2", (str(web2_at_c1), DPORT))
        about_c2 = udp(tool_at_c2, web2_at_c1, SPORT, DPORT, b"")[:28]
        genuine = [(web2_at_c1, PORT_UNREACHABLE), (c2_gateway, FRAG_NEEDED)]
        for src, kind in genuine:
            with sniffer(plan.pod_ns("tool"), "eth0") as seen:
                onto_tunnel(plan, "C2", "C1", icmp_error(src, tool_at_c2, kind, about_c2))
                assert seen(icmp_of(kind)), (str(src), kind)
