"""A forged source cannot use the API-server exception (issue 7.2).

In the three-cluster example, pod ``cache`` (home C2) may not reach C1's API server; ``web2``
(home C1, running in C2 beside ``cache``) may. ``cache`` forges ``web2``'s address:
(a) the sender's node stops it, as a real CNI does (the lab's per-pod source check);
(b) with that check turned off on purpose, the exception still admits nothing but TCP to the API
port: the trust assumption of source-based rules is the peer's CNI, and the damage without it is
bounded to one port of one host.
"""

from __future__ import annotations

import socket
from importlib import resources

import pytest

from hostile import from_to, nft, send_raw, sniffer, tcp_syn, udp
from labkit import LabUp
from peerwall.lab.kube import CNI_TABLE
from peerwall.model import SecurityMode, load_topology

pytestmark = pytest.mark.lab
API_PORT = 6443


def three() -> tuple[object, str]:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return load_topology(text, "three-clusters.yaml"), text


def drops(netns: str) -> int:
    out = nft(netns, "list", "table", "ip", CNI_TABLE)
    return sum(
        int(line.split("packets ")[1].split()[0]) for line in out.splitlines() if "packets" in line
    )


def test_a_forged_api_client_is_stopped_at_the_sender_and_bounded_without_it(lab_up: LabUp) -> None:
    topology, text = three()
    plan = lab_up(topology, text, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)  # type: ignore[arg-type]
    t = plan.topology
    cache, web2 = t.pod_by_name["cache"], t.pod_by_name["web2"]
    api = t.addresses.api_ip("C1")
    api_seen = t.addresses.seen_from(api, "C1", "C2")  # how C2's pods address it
    web2_at_c1 = t.addresses.pod_seen_from(web2, "C1")
    cache_at_c1 = t.addresses.pod_seen_from(cache, "C1")
    assert api_seen is not None and web2_at_c1 is not None and cache_at_c1 is not None
    src_ns, gw2, api_ns = plan.pod_ns("cache"), plan.gateway_ns("C2"), plan.api_ns("C1")

    with sniffer(api_ns, "eth0") as seen:
        # cache as itself: not an API client of C1.
        send_raw(src_ns, tcp_syn(cache.ip, api_seen, 41000, API_PORT))
        assert not seen(from_to(cache_at_c1, api, socket.IPPROTO_TCP))
    # (a) Forged: the sender's node drops it before anything else sees it.
    before = drops(gw2)
    with sniffer(api_ns, "eth0") as seen:
        send_raw(src_ns, tcp_syn(web2.ip, api_seen, 41001, API_PORT))
        assert not seen(from_to(web2_at_c1, api, socket.IPPROTO_TCP))
    assert drops(gw2) == before + 1

    # (b) The sender's check off: only TCP to the API port gets through.
    nft(gw2, "delete", "table", "ip", CNI_TABLE)
    with sniffer(api_ns, "eth0") as seen:
        send_raw(src_ns, udp(web2.ip, api_seen, 41002, API_PORT))
        send_raw(src_ns, udp(web2.ip, api_seen, 41003, 53))
        send_raw(src_ns, tcp_syn(web2.ip, api_seen, 41004, 8080))
        assert not seen(from_to(web2_at_c1, api, socket.IPPROTO_UDP))
        assert not seen(
            lambda ip: ip[9] == socket.IPPROTO_TCP and ip[22:24] == (8080).to_bytes(2, "big")
        )
    with sniffer(api_ns, "eth0") as seen:
        send_raw(src_ns, tcp_syn(web2.ip, api_seen, 41005, API_PORT))
        assert seen(from_to(web2_at_c1, api, socket.IPPROTO_TCP))
