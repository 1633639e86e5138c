"""Which connections a change cuts is read from their tunnel mark, not guessed from addresses
(issue 14.3).

Where pod CIDRs overlap, a peer's sources (in Liqo's shape: its original pod CIDR, see
``agent.kube.join``) contain our own pods' addresses, so an address cannot tell our connection
to the peer from the peer's connection to us. Here a gateway namespace stands between a local pod
and a peer's pod behind a tunnel, both clusters on 10.244.0.0/16; the agent's enforcer (real
libnftables, real conntrack) narrows the peer 50 times. Our connection to the peer survives every
step untouched; the peer's connection to us, which segregation forbids, is cut at the first.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network

import pytest

from peerwall.agent.enforcer import Enforcer
from peerwall.compile import ctmark, names
from peerwall.compile.state import GatewayState, PeerState
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.nft import LibNft
from peerwall.model import SecurityMode
from support import require_lab, talks, tcp_connection

pytestmark = pytest.mark.lab
CIDR = IPv4Network("10.244.0.0/16")
LOCAL, PEER = "10.244.1.2", "10.244.2.3"
PORT = 9400


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def gateway() -> Iterator[tuple[str, str, str]]:
    """(gateway, local pod, peer pod) namespaces, wired; removed whatever happens."""
    require_lab()
    base = f"pw-o{secrets.token_hex(3)}"
    gw, loc, peer = f"{base}-gw", f"{base}-loc", f"{base}-peer"
    try:
        for ns in (gw, loc, peer):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        tunnel = names.tunnel_ifname("R")
        ip("-n", gw, "link", "add", "pod", "type", "veth", "peer", "name", "eth0", "netns", loc)
        ip("-n", gw, "link", "add", tunnel, "type", "veth", "peer", "name", "eth0", "netns", peer)
        for ns, dev, addr in ((gw, "pod", "10.244.1.1/24"), (gw, tunnel, "10.244.2.1/24")):
            ip("-n", ns, "addr", "add", addr, "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        for ns, addr, via in ((loc, LOCAL, "10.244.1.1"), (peer, PEER, "10.244.2.1")):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "route", "add", "default", "via", via)
        subprocess.run(
            ["ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
        )
        yield gw, loc, peer
    finally:
        for ns in (gw, loc, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def state(mode: SecurityMode) -> GatewayState:
    peer = PeerState(
        name="R",
        tunnel=names.tunnel_ifname("R"),
        mode=mode,
        sources=(CIDR,),  # the peer's own pod CIDR: ours too
        full_access=(CIDR,),
    )
    return GatewayState("L", {"R": peer}, names.LAB_TUNNEL_PATTERN)


def connection(
    src: str, dst: str, dst_addr: str
) -> contextlib.AbstractContextManager[tuple[socket.socket, socket.socket]]:
    return tcp_connection(src, None, dst, dst_addr, PORT)


def test_our_connection_survives_50_narrowings_and_the_peers_is_cut(
    gateway: tuple[str, str, str],
) -> None:
    gw, loc, peer = gateway
    with LibNft(gw) as nft, Conntrack(gw) as flows:
        enforcer = Enforcer(nft, flows)
        enforcer.table.write_whole(state(SecurityMode.FULL_POD_TO_POD))
        with (
            connection(loc, peer, PEER) as (ours, ours_far),
            connection(peer, loc, LOCAL) as (theirs, theirs_far),
        ):
            assert talks(ours, ours_far, b"a") and talks(ours_far, ours, b"b")
            assert talks(theirs, theirs_far, b"c") and talks(theirs_far, theirs, b"d")
            marks = {
                (str(e.flow.orig.src), e.flow.orig.dport): e.flow.mark for e in flows.entries()
            }
            assert marks[(LOCAL, PORT)] == ctmark.to_peer("R")
            assert marks[(PEER, PORT)] == ctmark.from_peer("R")
            for step in range(50):
                enforcer.table.write_whole(state(SecurityMode.FULL_POD_TO_POD))
                narrowed = state(SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
                enforcer.table.write_whole(narrowed)
                assert enforcer.clear_flows(narrowed) == (1 if step == 0 else 0), f"step {step}"
                assert talks(ours, ours_far, b"%d" % step), f"step {step}"
                assert talks(ours_far, ours, b"%d" % step), f"step {step}"
            assert not talks(theirs_far, theirs, b"e")
            assert not talks(theirs, theirs_far, b"f")
