"""The agent's HTTP endpoint against hostile and broken clients: 2,000 slow senders and 40
looping scrapers do not keep /healthz from answering nor add threads; connections are bounded
and time out; a broken client leaves no traceback; a scrape does not wait on the enforcer's nft
handle; /status tells nothing a peer could use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import select
import selectors
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from ipaddress import IPv4Address

import pytest

from agentloop import HandSource
from peerwall.agent.desired import DesiredState
from peerwall.agent.endpoint import Endpoint, split_address
from peerwall.agent.run import Agent
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft
from peerwall.settings import AgentSettings, EndpointSettings

HEAD = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n"
"""A request head without its final empty line: the slow sender never finishes it."""


def get(address: tuple[str, int], path: str, timeout: float = 30.0) -> tuple[int, str]:
    host, port = address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def three_clusters_state() -> DesiredState:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    desired = DesiredState("C1", "pwt-*", 12345)
    desired.load(state)
    return desired


@contextlib.asynccontextmanager
async def running(
    nft: Nft, endpoint: EndpointSettings = EndpointSettings()
) -> AsyncIterator[Agent]:
    desired = three_clusters_state()
    source = HandSource()
    settings = AgentSettings(metrics_address="127.0.0.1:0", endpoint=endpoint)
    agent = Agent(source, desired, nft, None, settings)
    task = asyncio.create_task(agent.run())
    source.listed.set()
    source.changed.set()
    try:
        async with asyncio.timeout(60):
            while not (agent.ready and agent.address is not None):
                await asyncio.sleep(0.01)
                if task.done():
                    task.result()
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SlowSenders:
    """``n`` connections that each send part of a request head and never finish it; a thread
    reopens every one the server closes, so that ``n`` are always trying."""

    def __init__(self, address: tuple[str, int], n: int) -> None:
        self.address = address
        self.n = n
        self.sel = selectors.DefaultSelector()
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _open(self) -> None:
        s = socket.create_connection(self.address, timeout=30)
        s.sendall(HEAD)
        self.sel.register(s, selectors.EVENT_READ)

    def _hold(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.05):  # readable: closed by the server
                self.sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
                with contextlib.suppress(OSError):
                    self._open()
                    self.reopened += 1

    def __enter__(self) -> SlowSenders:
        for _ in range(self.n):
            self._open()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.sel.close()


@contextlib.contextmanager
def scrapers(address: tuple[str, int], n: int) -> Iterator[list[int]]:
    """``n`` threads scraping /metrics in a loop; yields the count of answers per thread."""
    stop = threading.Event()
    done = [0] * n

    def loop(i: int) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                if get(address, "/metrics")[0] == 200:
                    done[i] += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        yield done
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_healthz_answers_under_2000_slow_senders_and_40_scrapers_without_a_thread_each() -> None:
    async def scenario() -> None:
        async with running(FakeNft(), EndpointSettings(request_timeout=1.0)) as agent:
            assert agent.address is not None
            address = agent.address[:2]
            threads_before = threading.active_count()
            with SlowSenders(address, 2000) as slow, scrapers(address, 40) as scraped:
                for _ in range(20):
                    code, body = await asyncio.to_thread(get, address, "/healthz")
                    assert (code, body) == (200, "ok\n")
                # The server threads: one for the endpoint and a few workers for /metrics, not
                # one per connection (the test's own: 40 scrapers and 1 holder).
                extra = threading.active_count() - threads_before - 40 - 1
                assert extra <= 12, f"{extra} threads beyond the clients'"
                assert sum(scraped) > 0, "the scrapers never got an answer"
                async with asyncio.timeout(60):  # the slow senders are timed out, and come back
                    while slow.reopened < 100:
                        await asyncio.sleep(0.05)
                code, body = await asyncio.to_thread(get, address, "/healthz")
                assert (code, body) == (200, "ok\n")
            assert agent.ready

    asyncio.run(scenario())


def test_connections_are_bounded_and_the_oldest_slow_sender_makes_room() -> None:
    limits = EndpointSettings(max_connections=50, request_timeout=30.0, evict_after=0.0)
    ep = Endpoint("127.0.0.1:0", {"/healthz": lambda: (200, b"ok\n", "text/plain")}, {}, limits)
    ep.start()
    try:
        address = ep.server_address
        assert address is not None
        socks = [socket.create_connection(address[:2], timeout=30) for _ in range(200)]
        for s in socks:
            s.sendall(HEAD)
        assert get(address[:2], "/healthz") == (200, "ok\n")
        assert ep.connections <= 50
        assert ep.evicted >= 150
        # The first ones were closed to make room: they read the end of the stream.
        first = socks[0]
        first.settimeout(30)
        with contextlib.suppress(ConnectionResetError):
            assert first.recv(100) == b""
        for s in socks:
            s.close()
    finally:
        ep.shutdown()


def test_a_request_that_never_ends_is_closed_after_its_timeout_and_trickling_does_not_extend_it() -> (
    None
):
    limits = EndpointSettings(request_timeout=0.5)
    ep = Endpoint("127.0.0.1:0", {"/healthz": lambda: (200, b"ok\n", "text/plain")}, {}, limits)
    ep.start()
    try:
        assert ep.server_address is not None
        s = socket.create_connection(ep.server_address[:2], timeout=30)
        closed = False
        # One byte every 0.1 s would keep a per-read timeout alive forever.
        for byte in HEAD * 20:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                with contextlib.suppress(ConnectionResetError):
                    assert s.recv(100) == b""
                closed = True
                break
        assert closed, "the server kept a request that never ended"
        s.close()
    finally:
        ep.shutdown()


def test_a_broken_client_logs_one_line_at_most_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    big = b"x" * 4_000_000  # more than the socket buffers: the write meets the closed socket
    limits = EndpointSettings(write_timeout=30.0)
    ep = Endpoint("127.0.0.1:0", {"/big": lambda: (200, big, "text/plain")}, {}, limits)
    ep.start()
    caplog.set_level(logging.DEBUG, logger="peerwall")
    try:
        assert ep.server_address is not None
        clients = 30
        for _ in range(clients):
            s = socket.create_connection(ep.server_address[:2], timeout=30)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(10)
            # Close with a reset (linger 0): the server's next write fails (broken pipe).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        for _ in range(clients):
            s = socket.create_connection(ep.server_address[:2], timeout=30)
            s.sendall(b"GET /b")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        # Every one of them is done with once an orderly client gets its answer after them.
        ep.fast["/healthz"] = lambda: (200, b"ok\n", "text/plain")
        assert get(ep.server_address[:2], "/healthz") == (200, "ok\n")
    finally:
        ep.shutdown()
    records = [r for r in caplog.records if r.name.startswith("peerwall")]
    assert all(r.exc_info is None and r.levelno < logging.WARNING for r in records), [
        r.getMessage() for r in records
    ]
    assert len(records) <= 2 * clients
    assert "Traceback" not in caplog.text


def test_bad_requests_get_a_clear_status() -> None:
    ep = Endpoint("127.0.0.1:0", {"/healthz": lambda: (200, b"ok\n", "text/plain")}, {})
    ep.start()
    try:
        assert ep.server_address is not None

        def ask(data: bytes) -> bytes:
            with socket.create_connection(ep.server_address[:2], timeout=30) as s:
                s.sendall(data)
                out = b""
                while chunk := s.recv(4096):
                    out += chunk
                return out

        assert ask(b"POST /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert ask(b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert ask(b"GET /nothing HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
        assert ask(b"GET /healthz?x=1 HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200")
        assert ask(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n").startswith(
            b"HTTP/1.1 400"
        )
    finally:
        ep.shutdown()


def test_addresses() -> None:
    assert split_address("0.0.0.0:9090") == ("0.0.0.0", 9090)
    assert split_address("[fd00::1]:9090") == ("fd00::1", 9090)
    assert split_address(":9090") == ("0.0.0.0", 9090)
    for bad in ("9090", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="host:port"):
            split_address(bad)


def test_status_tells_a_peer_nothing_it_could_use() -> None:
    async def scenario() -> None:
        async with running(FakeNft()) as agent:
            assert agent.address is not None
            agent.desired.contribute("pod/x", "C2", SetKind.BACKENDS, [IPv4Address("10.9.9.9")])
            code, body = await asyncio.to_thread(get, agent.address[:2], "/status")
            assert code == 200
            status = json.loads(body)
            assert set(status) == {
                "ready",
                "last_sync",
                "transactions",
                "checks",
                "repairs",
                "apply_failures",
                "readback_failures",
                "peers",
                "guard",
            }
            assert status["ready"] is True and status["peers"] == 2
            assert status["transactions"]["full"] == 1
            full = agent.status()  # what the lab's status file holds, for comparison
            for secret in (
                *full["peers"],
                full["cluster"],
                str(full["pid"]),
                "pwt-",
                "digest",
            ):
                assert secret not in body, secret
            # No address at all (a dotted quad; "10." alone also matched a timestamp's digits).
            assert not re.search(r"\d{1,3}(\.\d{1,3}){3}", body), body

    asyncio.run(scenario())


@pytest.mark.lab
def test_a_scrape_does_not_wait_on_the_enforcers_nft_handle(netns: str) -> None:
    """While the enforcer's libnftables context is held (a long transaction), /metrics still
    answers with the kernel's counters: scrapes read them on a handle of their own."""
    with LibNft(netns) as nft:

        async def scenario() -> None:
            async with running(nft) as agent:
                assert agent.address is not None
                assert agent.collector.nft is not nft
                with nft._lock:  # the enforcer's handle is busy
                    code, body = await asyncio.to_thread(get, agent.address[:2], "/metrics")
                assert code == 200
                assert 'peerwall_dropped_packets_total{hook="forward",peer="C2"' in body

        asyncio.run(scenario())
