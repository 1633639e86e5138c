"""The agent's HTTP endpoint, built so that no client can stall enforcement.

A thread-per-connection server (``http.server``) gave 2,004 threads for 2,000 unfinished
requests, starved ``/healthz`` and slowed a mode change sevenfold. This one:

- runs one asyncio loop in a thread of its own: an idle connection costs a socket and a
  coroutine, never a thread, and nothing here runs on the agent's own loop;
- holds at most ``max_connections`` (4,096; the process's file limit is raised to fit): 2,000
  slow senders (slowloris) are held, each closed after its timeout, and the kubelet's probe
  still gets in. When full, the oldest connection that has been sending its request for more
  than ``evict_after`` seconds is closed to admit the new one (or, if none has, the new one is
  refused: evicting the newest would let a crowd that reconnects at once churn every slot);
- gives each connection ``request_timeout`` seconds for its whole request head (not per byte:
  trickling does not extend it) and ``write_timeout`` for the answer, then closes it;
- computes a *slow* route (``/metrics``: it reads nft counters) in a worker thread, once for all
  the requests that arrive meanwhile, and serves that answer for ``max_age`` seconds: forty
  looping scrapers cost one read per ``max_age``, on an nft handle of their own (``metrics``);
- answers each request with ``Connection: close`` and logs a broken client in one debug line,
  never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from peerwall.settings import EndpointSettings

log = logging.getLogger("peerwall.agent.http")

Answer = tuple[int, bytes, str]
"""(status code, body, content type)."""

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def split_address(address: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (every address) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r}: give host:port (e.g. 0.0.0.0:9090 or [fd00::1]:9090)")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port)


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    since: float
    reading: bool = True


class _Slow:
    """One slow route: computed in a worker thread, once for concurrent requests, reused for
    ``max_age`` seconds."""

    def __init__(self, compute: Callable[[], Answer], max_age: float) -> None:
        self.compute = compute
        self.max_age = max_age
        self.answer: Answer | None = None
        self.at = 0.0
        self.pending: asyncio.Future[Answer] | None = None

    async def get(self) -> Answer:
        if self.answer is not None and time.monotonic() - self.at < self.max_age:
            return self.answer
        if self.pending is None:
            self.pending = asyncio.ensure_future(asyncio.to_thread(self.compute))
            self.pending.add_done_callback(self._done)
        return await asyncio.shield(self.pending)

    def _done(self, fut: asyncio.Future[Answer]) -> None:
        self.pending = None
        if not fut.cancelled() and fut.exception() is None:
            self.answer, self.at = fut.result(), time.monotonic()


class Endpoint:
    """GET routes served on ``address`` from a thread of their own (``start``, ``shutdown``).

    ``fast`` routes run on the endpoint's loop and must only read attributes; ``slow`` ones run
    in a worker thread (see the module's docstring)."""

    def __init__(
        self,
        address: str,
        fast: Mapping[str, Callable[[], Answer]],
        slow: Mapping[str, Callable[[], Answer]],
        settings: EndpointSettings = EndpointSettings(),
        queried: Mapping[str, Callable[[str], Answer]] | None = None,
    ) -> None:
        self.host, self.port = split_address(address)
        self.settings = settings
        self.fast = dict(fast)
        self.queried = dict(queried or {})
        """Fast routes that read the query string (``/flows?since=…``)."""
        self._slow = {path: _Slow(f, settings.max_age) for path, f in slow.items()}
        self._conns: dict[int, _Conn] = {}
        self._next = 0
        self.server_address: tuple[Any, ...] | None = None
        self.limit = settings.max_connections
        """``max_connections``, or less if the process may not open that many files."""
        self.evicted = 0
        """Connections closed to make room."""
        self.refused = 0
        """Connections refused because none could make room."""
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def start(self) -> Endpoint:
        """Listen, or raise why not (``OSError``: the address is taken or not ours)."""
        self.limit = _files_for(self.settings.max_connections)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def shutdown(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=10)

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to start(), which re-raises it in its caller
            if not self._started.is_set():
                self._error = e
                self._started.set()
            else:
                log.error("the HTTP endpoint stopped: %s", e)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._client,
            self.host,
            self.port,
            limit=self.settings.max_request_bytes,
            backlog=1024,
            reuse_address=True,
        )
        self.server_address = server.sockets[0].getsockname()
        self._started.set()
        async with server:
            await self._stop.wait()
            server.close()
            for conn in list(self._conns.values()):
                conn.writer.transport.abort()

    def _admit(self, conn: _Conn) -> int:
        if len(self._conns) >= self.limit:
            oldest = next((k for k, c in self._conns.items() if c.reading), None)
            if oldest is None or conn.since - self._conns[oldest].since < self.settings.evict_after:
                conn.writer.transport.abort()
                self.refused += 1
                return -1
            self._conns.pop(oldest).writer.transport.abort()
            self.evicted += 1
        self._next += 1
        self._conns[self._next] = conn
        return self._next

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer, time.monotonic())
        key = self._admit(conn)
        if key < 0:
            return
        s = self.settings
        try:
            try:
                async with asyncio.timeout(s.request_timeout):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                answer: Answer = (400, b"request too large\n", "text/plain")
            else:
                conn.reading = False
                answer = await self._answer(head)
            conn.reading = False
            async with asyncio.timeout(s.write_timeout):
                writer.write(_response(*answer))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            peer = writer.get_extra_info("peername")
            log.debug("HTTP client %s dropped: %s", peer, type(e).__name__)
        finally:
            self._conns.pop(key, None)
            writer.transport.abort()

    async def _answer(self, head: bytes) -> Answer:
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) != 3 or not line[2].startswith(b"HTTP/"):
            return 400, b"bad request\n", "text/plain"
        method, (target, _, query) = line[0], line[1].decode("latin-1").partition("?")
        if method != b"GET":
            return 405, b"GET only\n", "text/plain"
        try:
            if target in self.queried:
                return self.queried[target](query)
            if target in self._slow:
                return await self._slow[target].get()
            if target in self.fast:
                return self.fast[target]()
        except Exception as e:
            log.warning("HTTP %s failed: %s", target, e)
            return 500, b"internal error\n", "text/plain"
        return 404, b"not found\n", "text/plain"


def _files_for(connections: int) -> int:
    """Raise the soft limit of open files to fit ``connections`` (and 256 more for the rest of
    the agent) if the hard limit allows; the connections that fit, otherwise."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        log.info("open files limit %d: the HTTP endpoint holds %d connections", soft, connections)
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(16, min(connections, soft - 256))


def _response(code: int, body: bytes, kind: str) -> bytes:
    head = (
        f"HTTP/1.1 {code} {REASONS.get(code, 'Error')}\r\n"
        f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
