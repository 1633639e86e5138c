"""Stateful enforcement: replies flow back, and established flows survive a ruleset replace."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from labkit import LabUp, seed_topology

from peerwall.compile.build import build
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft
from peerwall.lab.build import apply_modes, desired_state
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode
from peerwall.nsenter import entered

pytestmark = pytest.mark.lab
PORT = 9100
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


@contextmanager
def echo_server(netns: str) -> Iterator[None]:
    """A listener in ``netns`` that echoes every byte back, until the block ends."""
    with entered(netns):
        srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", PORT))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()
        for c in conns:
            c.close()

    def echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(100):
                conn.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        srv.close()


def connect(plan: LabPlan, src: str, dst: str, timeout: float = 1.0) -> socket.socket:
    t = plan.topology
    s, d = t.pod_by_name[src], t.pod_by_name[dst]
    address = plan.topology.addresses.pod_seen_from(d, s.physical)
    with entered(plan.pod_ns(src)):
        sock = socket.socket()
    sock.settimeout(timeout)
    sock.connect((str(address), PORT))
    return sock


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(100)


def test_p1_reaches_p4_but_p4_cannot_open_to_p1(lab_up: LabUp, seed_text: str) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, SEG)
    with echo_server(plan.pod_ns("P4")), echo_server(plan.pod_ns("P1")):
        with connect(plan, "P1", "P4") as sock:
            assert roundtrip(sock, b"ping") == b"ping"  # the reply came back through C1
        with pytest.raises(TimeoutError):
            connect(plan, "P4", "P1").close()


def test_established_flow_survives_ruleset_replace(lab_up: LabUp, seed_text: str) -> None:
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, SEG)
    with echo_server(plan.pod_ns("P4")), connect(plan, "P1", "P4") as sock:
        assert roundtrip(sock, b"one") == b"one"
        # Full replace of both gateways' tables (delete + re-create in one transaction) ...
        for c in topology.clusters:
            with LibNft(plan.gateway_ns(c.name)) as nft:
                outcome = sync(nft, build(desired_state(plan, c.name, SEG)), force_full=True)
                assert outcome.full
        assert roundtrip(sock, b"two") == b"two"
        # ... and mode switches both ways, element by element.
        apply_modes(plan, SecurityMode.FULL_POD_TO_POD)
        apply_modes(plan, SEG)
        assert roundtrip(sock, b"three") == b"three"
        # New connections still follow the rules in force.
        with echo_server(plan.pod_ns("P1")), pytest.raises(TimeoutError):
            connect(plan, "P4", "P1").close()
