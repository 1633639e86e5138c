"""A peer may send the receiving gateway itself only what the link needs (issue 7.1).

From the seed lab: P5 (in C2) and C2's gateway try C1's gateway on its tunnel address (TCP, UDP,
ICMP) and on its IPv6 link-local address. Controls show each attempt succeeds without peerwall's
table, so a blocked attempt means peerwall blocked it.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from hostile import link_local, nft, pings, tcp6_connects, tcp_connects, tcp_listener, udp_arrives
from labkit import LabUp, seed_topology, stop_agent
from peerwall.compile.names import tunnel_ifname
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode

pytestmark = pytest.mark.lab
PORT = 7777


def c1_gateway(plan: LabPlan) -> str:
    return str(plan.tunnel("C1", "C2")[1].ip)


@pytest.mark.parametrize("mode", list(SecurityMode))
def test_a_peer_pod_cannot_reach_the_gateway(
    lab_up: LabUp, seed_text: str, mode: SecurityMode
) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, mode)
    gw, p5, c1 = c1_gateway(plan), plan.pod_ns("P5"), plan.gateway_ns("C1")
    with tcp_listener(c1, PORT):
        assert not tcp_connects(p5, gw, PORT)
        assert not udp_arrives(p5, c1, gw, PORT)
        assert not udp_arrives(p5, c1, gw, 12345)  # the conncheck port, but not from the gateway
        assert not pings(p5, gw)
        # Control: without peerwall's table every one of them gets through.
        stop_agent(plan, "C1")
        nft(c1, "delete", "table", "inet", "peerwall")
        assert tcp_connects(p5, gw, PORT)
        assert udp_arrives(p5, c1, gw, PORT)
        assert pings(p5, gw)


def test_the_peer_gateway_gets_only_the_link_needs(lab_up: LabUp, seed_text: str) -> None:
    plan = lab_up(
        seed_topology(seed_text), seed_text, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    gw, c1, c2 = c1_gateway(plan), plan.gateway_ns("C1"), plan.gateway_ns("C2")
    assert pings(c2, gw)  # health check
    assert udp_arrives(c2, c1, gw, 12345)  # Liqo's connection check
    with tcp_listener(c1, PORT):
        assert not tcp_connects(c2, gw, PORT)
        assert not tcp_connects(c2, gw, 12345)
        assert not udp_arrives(c2, c1, gw, PORT)


def test_ipv6_to_the_gateway_is_dropped(lab_up: LabUp, seed_text: str) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, SecurityMode.FULL_POD_TO_POD)
    c1, c2 = plan.gateway_ns("C1"), plan.gateway_ns("C2")
    c1_end = link_local(c1, tunnel_ifname("C2"))
    link_local(c2, tunnel_ifname("C1"))
    # A hostile C2 controls its own gateway: no agent, no peerwall table; only C1's decides.
    stop_agent(plan, "C2")
    nft(c2, "delete", "table", "inet", "peerwall")
    with tcp_listener(c1, PORT, socket.AF_INET6):
        assert not tcp6_connects(c2, c1_end, tunnel_ifname("C1"), PORT)
        # Control: without C1's table (and a fresh neighbour cache) the same attempt connects.
        stop_agent(plan, "C1")
        nft(c1, "delete", "table", "inet", "peerwall")
        subprocess.run(["ip", "-n", c2, "-6", "neigh", "flush", "all"], check=True)
        assert tcp6_connects(c2, c1_end, tunnel_ifname("C1"), PORT)
