"""TCP probes between network namespaces, thousands per second, from one asyncio process.

A socket belongs for life to the network namespace that was current when it was created. So
each listener and client socket is created inside its namespace (a brief ``setns`` on the
event-loop thread, see ``peerwall.nsenter``) and then driven non-blocking from the loop. This
runs thousands of probes per second, where one ``ip netns exec`` per probe manages about a hundred.

Protocol: a listener accepts, writes ``identity + "\\n"`` and closes. A probe connects, reads
that line, and closes with an abortive close (RST), so neither side keeps the 4-tuple in
TIME_WAIT and a later run may reuse the same source port at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import ipaddress
import os
import select
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

from peerwall import nsenter
from peerwall.errors import LabError

BACKLOG = 4096
"""Listen backlog: a run may aim thousands of concurrent connections at one listener."""

IDENTITY_MAX = 256
"""Bytes read at most for an identity line."""

_ACCEPT_BATCH = 512  # accepts per wake-up, so one busy listener cannot starve the loop
_ACCEPT_RETRY = 0.1  # seconds to pause a listener when accept() runs out of resources
_LINGER_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENONET})
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Outcome(enum.Enum):
    """What became of one probe."""

    CONNECTED = "connected"
    """The TCP handshake completed."""
    BLOCKED = "blocked"
    """No answer before the timeout: something dropped the SYN (or the SYN-ACK)."""
    UNREACHABLE = "unreachable"
    """No route: locally (ENETUNREACH) or an ICMP unreachable from a router on the way.

    Routers rate-limit ICMP errors, so under load an unreachable destination may come out
    BLOCKED. A lab that wants UNREACHABLE at scale rejects with nftables
    (``reject with icmp type host-unreachable``) and lifts ``net.ipv4.icmp_ratelimit`` and
    ``icmp_msgs_per_sec``/``icmp_msgs_burst`` in the router's namespace. An ``unreachable``
    route is no good for that: its ICMP limit (``net.ipv4.route.error_cost``, about 1/s
    after a burst of 5 per source) exists only in the root namespace.
    """
    REFUSED = "refused"
    """A host answered with RST (or ICMP port unreachable): nothing listens there."""
    ERROR = "error"
    """The probe could not be run: missing namespace, bad address, source port in use…"""


@dataclass(frozen=True)
class Listener:
    """Listen on 0.0.0.0:``port`` inside ``netns`` and answer every connection with ``identity``."""

    netns: str
    port: int
    identity: str

    def __post_init__(self) -> None:
        if "\n" in self.identity or len(self.identity.encode()) >= IDENTITY_MAX:
            raise ValueError(f"identity must be one line under {IDENTITY_MAX} bytes")


@dataclass(frozen=True)
class Probe:
    """Connect from ``netns`` to ``address``:``port``."""

    netns: str
    address: str
    port: int
    source_port: int | None = None
    """Bind this client port: the lab picks a service backend by the source port's low bits."""

    def reproducer(self, timeout: float = 1.0) -> str:
        """A shell command that runs the same probe by hand."""
        sport = "" if self.source_port is None else f" -p {self.source_port}"
        return f"ip netns exec {self.netns} nc -zvw{timeout:g}{sport} {self.address} {self.port}"


@dataclass(frozen=True)
class ProbeResult:
    """What one probe observed."""

    probe: Probe
    outcome: Outcome
    identity: str | None
    """The listener's line; ``None`` unless CONNECTED and the line arrived in time."""
    detail: str
    """Human text: the errno name, or why the identity is missing."""
    seconds: float
    """Time from the probe's start (after it got a concurrency slot) to its result."""


def _errno_text(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc)
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"{name} ({os.strerror(exc.errno)})"


def _socket_in(netns: str, family: socket.AddressFamily) -> socket.socket:
    """A TCP socket created inside ``netns``; it stays there after we leave."""
    try:
        with nsenter.entered(netns):
            return socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise LabError(f"cannot create a socket in {netns}: {_errno_text(exc)}") from exc


# --- listeners ---------------------------------------------------------------------------


class ListenerSet:
    """Open every listener on entry, close them all on exit (also when entry fails half-way).

    Connections are served straight from the listening socket's readiness callback (accept,
    one ``send``, close) with no transport or task per connection: a probe run makes the
    listeners accept as fast as the clients connect, in the same event loop.
    """

    def __init__(self, listeners: Iterable[Listener]) -> None:
        self.listeners = tuple(listeners)
        self._open: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> ListenerSet:
        self._loop = asyncio.get_running_loop()
        try:
            for listener in self.listeners:
                sock = _listening_socket(listener)
                self._open.append(sock)
                self._watch(sock, (listener.identity + "\n").encode())
        except BaseException:
            self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    def _watch(self, sock: socket.socket, payload: bytes) -> None:
        assert self._loop is not None
        self._loop.add_reader(sock.fileno(), self._serve, sock, payload)

    def _serve(self, sock: socket.socket, payload: bytes) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                conn, _peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES and self._loop is not None:
                    # The socket stays readable: without a pause the loop would spin on it.
                    self._loop.remove_reader(sock.fileno())
                    self._loop.call_later(_ACCEPT_RETRY, self._resume, sock, payload)
                return  # e.g. ECONNABORTED: the client is gone already
            try:
                # A fresh socket's send buffer always takes a line this short, so a plain
                # send neither blocks nor comes up short.
                conn.send(payload)
            except OSError:
                pass  # the client gave up first; there is nobody left to tell
            finally:
                conn.close()

    def _resume(self, sock: socket.socket, payload: bytes) -> None:
        if sock in self._open:
            self._watch(sock, payload)

    def _close(self) -> None:
        for sock in self._open:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._open.clear()


def _listening_socket(listener: Listener) -> socket.socket:
    sock = _socket_in(listener.netns, socket.AF_INET)
    try:
        # Re-listening must not wait for connections of an earlier run to time out.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", listener.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"{listener.netns} 0.0.0.0:{listener.port}"
        raise LabError(f"cannot listen on {where}: {_errno_text(exc)}") from exc
    return sock


# --- probes ------------------------------------------------------------------------------


async def run_probes(
    probes: Sequence[Probe],
    *,
    timeout: float = 1.0,
    concurrency: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> list[ProbeResult]:
    """Run every probe, at most ``concurrency`` at a time; results come in the order of ``probes``.

    Each probe gets ``timeout`` seconds for the connect and the identity line together, counted
    from when it gets a slot, so a run lasts about ``ceil(len / concurrency) * timeout`` at
    worst. A probe that cannot run (say its namespace is missing) yields ERROR; the run goes on.
    ``progress(done, total)`` is called after each probe.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    total = len(probes)
    gate = asyncio.Semaphore(concurrency)
    results: list[ProbeResult | None] = [None] * total
    done = 0

    async def one(index: int, probe: Probe) -> None:
        nonlocal done
        try:
            results[index] = await _probe(probe, timeout)
        finally:
            gate.release()
        done += 1
        if progress is not None:
            progress(done, total)

    # The slot is taken before the task exists, so only this loop ever waits on the
    # semaphore: with thousands of waiters, 3.11's Semaphore wake-up scan turns quadratic
    # (measured: half of a 20,000-probe run). Only `concurrency` tasks are ever alive.
    # A TaskGroup, not gather: if a progress callback raises, the other probes are
    # cancelled and their sockets closed instead of running on unobserved.
    async with asyncio.TaskGroup() as group:
        for index, probe in enumerate(probes):
            await gate.acquire()
            group.create_task(one(index, probe))
    # The group exited without an error, so every task filled its slot.
    return [r for r in results if r is not None]


async def _probe(probe: Probe, timeout: float) -> ProbeResult:
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + timeout

    def result(outcome: Outcome, detail: str, identity: str | None = None) -> ProbeResult:
        return ProbeResult(probe, outcome, identity, detail, loop.time() - start)

    try:
        sock = _client_socket(probe)
    except (LabError, ValueError) as exc:
        return result(Outcome.ERROR, str(exc))
    try:
        try:
            answered = await _connect(loop, sock, (probe.address, probe.port), deadline)
        except OSError as exc:
            return result(_connect_outcome(exc), _errno_text(exc))
        if not answered:
            return result(Outcome.BLOCKED, f"no answer within {timeout:g}s")
        line = bytearray()
        missing = "the peer closed before a whole identity line"
        try:
            async with asyncio.timeout_at(deadline):
                await _read_line(loop, sock, line)
        except TimeoutError:
            _read_ready(sock, line)
            missing = f"no identity line within {timeout:g}s"
        except OSError as exc:
            missing = f"{_errno_text(exc)} before a whole identity line"
        identity, newline, _ = bytes(line).partition(b"\n")
        if not newline:
            return result(Outcome.CONNECTED, f"connected; {missing}")
        return result(Outcome.CONNECTED, "connected", identity.decode(errors="replace"))
    finally:
        sock.close()


@functools.lru_cache(maxsize=4096)
def _family(address: str) -> socket.AddressFamily:
    # Only numeric addresses: a host name would make connect() block on a resolver.
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _client_socket(probe: Probe) -> socket.socket:
    family = _family(probe.address)
    sock = _socket_in(probe.netns, family)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        if probe.source_port is not None:
            # The same source port may be in use towards another destination (or, with
            # linger 0, was just released): the 4-tuple is what must be unique.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", probe.source_port))
    except OSError as exc:
        sock.close()
        raise LabError(f"cannot prepare a socket in {probe.netns}: {_errno_text(exc)}") from exc
    return sock


async def _connect(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    address: tuple[str, int],
    deadline: float,
) -> bool:
    """True once connected, False if nothing answered by ``deadline``; OSError if refused etc.

    Hand-rolled rather than loop.sock_connect: no resolver step, and the errno is ours to
    classify. The finally also runs on cancellation, so no writer stays registered.
    """
    err = sock.connect_ex(address)
    if err == errno.EINPROGRESS:
        writable: asyncio.Future[None] = loop.create_future()
        fd = sock.fileno()
        loop.add_writer(fd, _resolve, writable)
        try:
            async with asyncio.timeout_at(deadline):
                await writable
        except TimeoutError:
            # A busy loop can run this timeout after the answer came in. An answer that is
            # already there counts: BLOCKED must mean silence, never "the prober was slow".
            if not _ready_now(fd, select.POLLOUT):
                # An ICMP error that arrived while the kernel held the socket is only kept as
                # a soft error (the SYN would be retried); SO_ERROR still reports it.
                soft = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if soft in _UNREACHABLE:
                    raise OSError(soft, os.strerror(soft)) from None
                return False
        finally:
            loop.remove_writer(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))
    return True


def _ready_now(fd: int, events: int) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))  # POLLERR/POLLHUP also count: the answer was an error


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _read_line(loop: asyncio.AbstractEventLoop, sock: socket.socket, line: bytearray) -> None:
    """Append to ``line`` up to the first newline, or whatever comes before EOF."""
    while b"\n" not in line and len(line) < IDENTITY_MAX:
        chunk = await loop.sock_recv(sock, IDENTITY_MAX - len(line))
        if not chunk:
            return
        line += chunk


def _read_ready(sock: socket.socket, line: bytearray) -> None:
    """Take what has arrived already, for the same reason as in ``_connect``."""
    with contextlib.suppress(OSError):  # BlockingIOError included: nothing came
        line += sock.recv(IDENTITY_MAX - len(line))


def _connect_outcome(exc: OSError) -> Outcome:
    if exc.errno == errno.ECONNREFUSED:
        return Outcome.REFUSED
    if exc.errno in _UNREACHABLE:
        return Outcome.UNREACHABLE
    return Outcome.ERROR
