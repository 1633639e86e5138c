"""A cut connection stays cut whoever sends next (issue 14.1), without any sysctl.

A change that narrows what a peer may reach deletes the conntrack entries of the connections it
now forbids. The gateways run with conntrack's loose TCP pickup on (``nf_conntrack_tcp_loose=1``,
the default, which peerwall does not touch), so a mid-stream segment creates a new entry: before
the rules demanded a SYN for every new TCP connection crossing a tunnel, the *local* side's next
segment (its data, a retransmission, a keepalive) became a new connection towards the peer, and
the peer's packets its replies. Here the peer's connection is cut, then each side in turn (or the
peer alone) sends, after the change and after each of 3 read-backs of every agent (the periodic
resync's own path, asked for at once); nothing may arrive on either side.

UDP keeps the stateful rule it always had, and it is tested as documented (docs/enforcement.md):
after the cut the peer's datagrams are dropped; a new datagram from the local pod to the peer
opens a new connection from this side, and the peer's datagrams on it are its replies.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import pytest

from hostile import nft
from labkit import LabUp, frozen_agent, repair, seed_topology, switch, tables_as_built
from peerwall.lab.plan import LabPlan
from peerwall.lab.state import load_state
from peerwall.model import SecurityMode, load_topology
from peerwall.nsenter import entered
from support import REFERENCE

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
PORT = 9201
QUIET = 1.0
"""Seconds a socket is watched for data that must not come (TCP retransmits within it)."""


@pytest.fixture(scope="module")
def seed_lab(module_lab_up: LabUp) -> LabPlan:
    """One seed lab for the module's tests that start in FullPodToPod (tests/conftest.py's
    SHARED_MODULES runs them on one xdist worker): each narrows it to segregation, and
    ``seed_in_full`` switches it back before the next, which is what a lab brought up in
    FullPodToPod enforces (the agents' table of the mode, the flows it forbids cleared). Each test
    makes its own connections, on fresh source ports: what an earlier test left in conntrack is
    not on their flows, and a cut that must hold beside such entries is the more demanding."""
    text = (REFERENCE / "seed-topology.yaml").read_text()
    return module_lab_up(seed_topology(text), text, FULL)


@pytest.fixture
def seed_in_full(seed_lab: LabPlan) -> LabPlan:
    if load_state(seed_lab.name).mode != FULL.value:
        switch(seed_lab, FULL)
    return seed_lab


@pytest.fixture(scope="module")
def three_lab(module_lab_up: LabUp) -> LabPlan:
    """One three-cluster lab (segregation, no periodic resync) for the tests that delete C1's
    table: each one's repairs put the table back, so the next finds the lab as it was built."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return module_lab_up(load_topology(text, "three"), text, SEG, agent_resync_interval=3600)


@pytest.fixture
def three(three_lab: LabPlan) -> LabPlan:
    return tables_as_built(three_lab)


def address(plan: LabPlan, pod: str, seen_by: str) -> str:
    t = plan.topology
    seen = t.addresses.pod_seen_from(t.pod_by_name[pod], t.pod_by_name[seen_by].physical)
    assert seen is not None
    return str(seen)


@contextlib.contextmanager
def tcp_pair(
    plan: LabPlan, opener: str, listener: str
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """A TCP connection ``opener`` -> ``listener``: (the opener's socket, the listener's)."""
    with entered(plan.pod_ns(listener)):
        srv = socket.socket()
    with entered(plan.pod_ns(opener)):
        cli = socket.socket()
    with srv, cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", PORT))
        srv.listen(1)
        srv.settimeout(2)
        cli.settimeout(2)
        cli.connect((address(plan, listener, opener), PORT))
        conn, _ = srv.accept()
        with conn:
            yield cli, conn


def receives(sock: socket.socket) -> bytes:
    """What arrives on ``sock`` within ``QUIET`` seconds (b"" if nothing; a reset says so)."""
    sock.settimeout(QUIET)
    try:
        return sock.recv(100) or b"<closed>"
    except TimeoutError:
        return b""
    except OSError as e:
        return f"<{e.strerror}>".encode()


def receives_each(*socks: socket.socket) -> list[bytes]:
    """``receives`` on every socket at once (a thread each): each socket is still watched for
    ``QUIET`` seconds, side by side instead of one after the other."""
    with ThreadPoolExecutor(max_workers=len(socks)) as pool:
        return list(pool.map(receives, socks))


def talks(a: socket.socket, b: socket.socket) -> bool:
    a.sendall(b"hello")
    return receives(b) == b"hello"


def send(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


@pytest.mark.parametrize("first", ["local", "peer", "peer alone"])
def test_a_narrowed_connection_stays_cut_whoever_sends_next(
    seed_in_full: LabPlan, first: str
) -> None:
    # P4 (in C2) opens a connection to P1 (in C1): FullPodToPod allows it, segregation does not.
    plan = seed_in_full
    with tcp_pair(plan, "P4", "P1") as (peer, local):
        assert talks(peer, local) and talks(local, peer)
        switch(plan, SEG)
        for check in range(4):  # after the change, then after each of 3 read-backs
            if check:
                repair(plan)
            if first == "local":
                send(local, b"L%d" % check)
                send(peer, b"P%d" % check)
            else:
                send(peer, b"P%d" % check)
                if first == "peer":
                    send(local, b"L%d" % check)
            at_local, at_peer = receives_each(local, peer)
            assert at_local in (b"", b"<Connection reset by peer>"), f"check {check}"
            assert at_peer in (b"", b"<Connection reset by peer>"), f"check {check}"


@pytest.mark.parametrize("first", ["local", "peer"])
def test_a_connection_made_while_the_table_was_gone_stays_cut_after_the_repair(
    three: LabPlan, first: str
) -> None:
    # C1 and C3 do not overlap: with C1's table gone, local3 (C3) reaches tool (C1), which
    # segregation forbids.
    plan = three
    with contextlib.ExitStack() as stack:
        with frozen_agent(plan, "C1"):  # the table stays gone until the connection is made
            nft(plan.gateway_ns("C1"), "delete", "table", "inet", "peerwall")
            peer, local = stack.enter_context(tcp_pair(plan, "local3", "tool"))
            assert talks(peer, local) and talks(local, peer)
        for check in range(4):  # the repair, then 3 more read-backs
            repair(plan)
            a, b = (local, peer) if first == "local" else (peer, local)
            send(a, b"first %d" % check)
            send(b, b"second %d" % check)
            at_local, at_peer = receives_each(local, peer)
            assert at_local in (b"", b"<Connection reset by peer>"), f"check {check}"
            assert at_peer in (b"", b"<Connection reset by peer>"), f"check {check}"


def test_udp_after_a_cut_only_a_new_datagram_from_the_local_side_opens_it_again(
    seed_in_full: LabPlan,
) -> None:
    plan = seed_in_full
    with entered(plan.pod_ns("P1")):
        local = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(plan.pod_ns("P4")):
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with local, peer:
        local.bind(("0.0.0.0", PORT))
        peer.bind(("0.0.0.0", PORT))
        to_local = (address(plan, "P1", "P4"), PORT)
        to_peer = (address(plan, "P4", "P1"), PORT)
        peer.sendto(b"opened by the peer", to_local)
        assert receives(local) == b"opened by the peer"
        switch(plan, SEG)
        for check in range(3):  # the peer's flow stays cut, through read-backs
            peer.sendto(b"after the cut", to_local)
            assert receives(local) == b"", f"check {check}"
            repair(plan)
        # The local pod speaks first: a new connection from this side, which segregation does
        # not restrict (P1 may reach P4: C1 offloaded P4 to C2), and the peer may answer on it.
        local.sendto(b"opened by P1", to_peer)
        assert receives(peer) == b"opened by P1"
        peer.sendto(b"a reply", to_local)
        assert receives(local) == b"a reply"
        # From another port of the peer, it is a new connection again: dropped.
        with entered(plan.pod_ns("P4")):
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with other:
            other.sendto(b"not a reply", to_local)
            assert receives(local) == b""
