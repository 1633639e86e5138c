"""peerwall and Liqo share the connection mark in a gateway, with real packets (docs/enforcement.md,
"Sharing the mark with Liqo's NodePort marks").

A gateway namespace holds peerwall's table (through the agent's enforcer) beside a copy of the
table Liqo's controller manager has every gateway install for NodePort/hostNetwork traffic
(``pkg/liqo-controller-manager/networking/internal-network/route/internalnode_k8s.go`` at
557c199c): a forward chain that writes the whole mark (``ct mark set N``) of packets from the
node's interface with source ``unknownSourceIP``, a prerouting chain that copies the mark of the
replies into the packet mark, and an exact ``ip rule fwmark N`` (``pkg/route/rule.go``) that routes
them back to the node. The main table has no route back (``unreachable``), so a reply arrives only
if Liqo's rule routes it. Both chains are at forward priority 0: the kernel runs the chain
registered last first (``nf_hook_entries_grow`` puts a new hook before those of equal priority), so
the order in which the tables are created decides which runs first; both orders are tested, and a
counter in Liqo's chain shows which one ran first.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network

import pytest

from peerwall.agent.enforcer import Enforcer
from peerwall.compile import ctmark
from peerwall.compile.state import GatewayState, PeerState
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.nft import LibNft
from peerwall.model import SecurityMode
from support import require_lab, talks, tcp_connection

pytestmark = pytest.mark.lab

NODEPORT_SRC = "10.70.0.1"
"""Liqo's ``unknownSourceIP``: the first address of the external CIDR (as Liqo numbers it)."""
LOCAL_POD = "10.10.0.7"
PEER_POD = "10.20.0.5"
LIQO_MARK = 1
"""The node's mark (``mark.go`` hands out 1, 2, ...)."""
ROUTE_TABLE = 1001
PORT = 9500

LIQO_TABLE = f"""table ip service-nodeport-routing {{
	chain mark-to-conntrack {{
		type filter hook forward priority filter; policy accept;
		ip saddr {NODEPORT_SRC} iifname "liqo-node" ct state new ct mark & 0xffff0000 != 0 counter comment "peerwall ran first"
		ip saddr {NODEPORT_SRC} iifname "liqo-node" ct mark set {LIQO_MARK}
	}}
	chain conntrack-mark-to-meta-mark {{
		type filter hook prerouting priority filter; policy accept;
		ip daddr {NODEPORT_SRC} iifname "liqo-tunnel" meta mark set ct mark
		ip daddr {NODEPORT_SRC} iifname "liqo-tunnel" meta mark != {LIQO_MARK} counter comment "a reply Liqo cannot route"
	}}
}}
"""
"""Liqo's two chains as its firewall controller writes them (``pkg/firewall/utils/filterule.go``:
an immediate then ``ct mark set``; ``ct mark`` then ``meta mark set``), plus two observing rules
that change nothing: one counts the new connections peerwall had marked before Liqo's chain ran,
the other the replies whose packet mark Liqo's exact rule would not route (a retransmitted SYN
would hide them: the connection would still open, a second late)."""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def gateway() -> Iterator[tuple[str, str, str]]:
    """(gateway, node, peer) namespaces: the node behind ``liqo-node``, the peer's pod behind
    ``liqo-tunnel``; the only way back to the NodePort source is Liqo's fwmark rule."""
    require_lab()
    base = f"pw-lm{secrets.token_hex(3)}"
    gw, node, peer = f"{base}-gw", f"{base}-node", f"{base}-peer"
    try:
        for ns in (gw, node, peer):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh(
            "ip",
            "-n",
            gw,
            "link",
            "add",
            "liqo-node",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            node,
        )
        sh(
            "ip",
            "-n",
            gw,
            "link",
            "add",
            "liqo-tunnel",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            peer,
        )
        for ns, dev, addr in (
            (gw, "liqo-node", "10.80.0.1/30"),
            (gw, "liqo-tunnel", "169.254.18.1/30"),
            (node, "eth0", "10.80.0.2/30"),
            (peer, "eth0", "169.254.18.2/30"),
        ):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", node, "addr", "add", f"{NODEPORT_SRC}/32", "dev", "lo")
        sh("ip", "-n", node, "addr", "add", f"{LOCAL_POD}/32", "dev", "lo")
        sh("ip", "-n", node, "route", "add", "default", "via", "10.80.0.1")
        sh("ip", "-n", peer, "addr", "add", f"{PEER_POD}/32", "dev", "lo")
        sh("ip", "-n", peer, "route", "add", "default", "via", "169.254.18.1")
        sh("ip", "-n", gw, "route", "add", "10.20.0.0/16", "via", "169.254.18.2")
        sh("ip", "-n", gw, "route", "add", "10.10.0.0/16", "via", "10.80.0.2")
        sh("ip", "-n", gw, "route", "add", "unreachable", f"{NODEPORT_SRC}/32")
        sh(
            "ip",
            "-n",
            gw,
            "route",
            "add",
            f"{NODEPORT_SRC}/32",
            "via",
            "10.80.0.2",
            "table",
            str(ROUTE_TABLE),
        )
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"):
            sh("ip", "netns", "exec", gw, "sysctl", "-qw", key)
        for dev in ("default", "liqo-node", "liqo-tunnel"):
            sh("ip", "netns", "exec", gw, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0")
        yield gw, node, peer
    finally:
        for ns in (gw, node, peer):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def fwmark_rule(gw: str, verb: str) -> None:
    """Liqo's rule: exact mark (no mask), to the NodePort source, in its own table."""
    sh("ip", "-n", gw, "rule", verb, "fwmark", str(LIQO_MARK), "to", f"{NODEPORT_SRC}/32",
       "lookup", str(ROUTE_TABLE))  # fmt: skip


def state(mode: SecurityMode) -> GatewayState:
    peer = PeerState(
        name="c2",
        tunnel="liqo-tunnel",
        mode=mode,
        sources=(IPv4Network("10.20.0.0/16"),),
        full_access=(IPv4Network("10.10.0.0/16"),),
    )
    return GatewayState("c1", {"c2": peer}, "liqo-tunnel*")


def connection(
    src_ns: str, src: str, dst_ns: str, dst: str, port: int = PORT
) -> contextlib.AbstractContextManager[tuple[socket.socket, socket.socket]]:
    return tcp_connection(src_ns, src, dst_ns, dst, port)


def connects(src_ns: str, src: str, dst_ns: str, dst: str) -> bool:
    """A new connection on another port than the long-lived ones (whose listeners stay bound)."""
    try:
        with connection(src_ns, src, dst_ns, dst, PORT + 1):
            return True
    except TimeoutError:
        return False


def marks(flows: Conntrack) -> dict[str, int]:
    """Each TCP connection's mark, by its source address."""
    return {
        str(e.flow.orig.src): e.flow.mark
        for e in flows.entries()
        if e.flow.proto == "tcp" and e.flow.orig.dport in (PORT, PORT + 2, PORT + 3)
    }


def observed(gw: str, chain: str, comment: str) -> int:
    """The packets counted by the observing rule ``comment`` of Liqo's chain ``chain``."""
    listing = sh("ip", "netns", "exec", gw, "nft", "list", "chain", "ip",
                 "service-nodeport-routing", chain)  # fmt: skip
    m = re.search(rf'counter packets (\d+) bytes \d+ comment "{comment}"', listing)
    assert m is not None, listing
    return int(m.group(1))


def peerwall_ran_first(gw: str) -> int:
    return observed(gw, "mark-to-conntrack", "peerwall ran first")


def unroutable_replies(gw: str) -> int:
    return observed(gw, "conntrack-mark-to-meta-mark", "a reply Liqo cannot route")


@pytest.mark.parametrize("runs_first", ["liqo", "peerwall"])
def test_liqo_nodeport_replies_are_routed_by_its_mark_and_not_dropped(
    gateway: tuple[str, str, str], runs_first: str
) -> None:
    gw, node, peer = gateway
    liqo = ["ip", "netns", "exec", gw, "nft", "-f", "-"]
    fwmark_rule(gw, "add")
    with LibNft(gw) as nft, Conntrack(gw) as flows:
        enforcer = Enforcer(nft, flows)
        # The table created last runs first.
        if runs_first == "peerwall":
            subprocess.run(liqo, input=LIQO_TABLE, text=True, check=True)
        enforcer.table.write_whole(state(SecurityMode.FULL_POD_TO_POD))
        if runs_first == "liqo":
            subprocess.run(liqo, input=LIQO_TABLE, text=True, check=True)
        with (
            connection(node, NODEPORT_SRC, peer, PEER_POD) as (nodeport, nodeport_far),
            connection(node, LOCAL_POD, peer, PEER_POD, PORT + 2) as (ours, ours_far),
            connection(peer, PEER_POD, node, LOCAL_POD, PORT + 3) as (theirs, theirs_far),
        ):
            # The chains ran in the order intended.
            assert (peerwall_ran_first(gw) > 0) == (runs_first == "peerwall")
            # (1) The NodePort connection keeps exactly Liqo's mark, so the copy into the packet
            # mark matches Liqo's exact fwmark rule: its replies come back to the node.
            assert talks(nodeport, nodeport_far, b"a") and talks(nodeport_far, nodeport, b"b")
            assert unroutable_replies(gw) == 0
            got = marks(flows)
            assert got[NODEPORT_SRC] == LIQO_MARK
            # (2) Other connections carry peerwall's marks, Liqo's bits untouched (0).
            assert got[LOCAL_POD] == ctmark.to_peer("c2")
            assert got[PEER_POD] == ctmark.from_peer("c2")
            # A narrowing cuts the peer's connection to a local pod, and neither ours nor the
            # node's NodePort connection (a local node's, never restricted).
            narrowed = state(SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
            enforcer.table.write_whole(narrowed)
            assert enforcer.clear_flows(narrowed) == 1
            for a, b in ((nodeport, nodeport_far), (ours, ours_far)):
                assert talks(a, b, b"c") and talks(b, a, b"d")
            assert not talks(theirs_far, theirs, b"e")  # mid-stream from the local side: no SYN
            assert not talks(theirs, theirs_far, b"f")
            # The peer cannot open a new connection to a local pod now; the node still can.
            assert not connects(peer, PEER_POD, node, LOCAL_POD)
            assert connects(node, LOCAL_POD, peer, PEER_POD)
        # Without Liqo's rule the same reply has no way back: it was Liqo's route that carried it.
        fwmark_rule(gw, "del")
        assert not connects(node, NODEPORT_SRC, peer, PEER_POD)
        fwmark_rule(gw, "add")
        assert connects(node, NODEPORT_SRC, peer, PEER_POD)
        assert unroutable_replies(gw) == 0


def test_ours_and_liqos_bits_in_the_kernel() -> None:
    """The layout the chains above rely on (a fast check next to the packet test)."""
    assert ctmark.OURS & ctmark.LIQO == 0 and ctmark.OURS | ctmark.LIQO == 0xFFFF_FFFF
    assert all(m & ctmark.LIQO == 0 for m in (ctmark.to_peer("c2"), ctmark.from_peer("c2")))
    assert ctmark.is_liqo(LIQO_MARK) and not ctmark.is_liqo(ctmark.to_peer("c2"))
    assert not ctmark.is_liqo(0)
    assert IPv4Address(NODEPORT_SRC) not in IPv4Network("10.20.0.0/16")
