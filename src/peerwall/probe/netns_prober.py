"""TCP probes between network namespaces, thousands per second, from one asyncio process.

A socket belongs for life to the network namespace that was current when it was created. So
each listener and client socket is created inside its namespace (a brief ``setns`` on the
event-loop thread, see ``peerwall.nsenter``) and then driven non-blocking from the loop. This
runs thousands of probes per second, where one ``ip netns exec`` per probe manages about a hundred.

Protocol: a listener accepts, writes ``identity + "\\n"`` and closes. A probe connects, reads
that line, and closes with an abortive close (RST), so neither side keeps the 4-tuple in
TIME_WAIT and a later run may reuse the same source port at once (a probe that timed out is
reset explicitly first, see ``_abort``: the retry of silence reuses its 4-tuple at once).
"""

from __future__ import annotations

import _socket
import asyncio
import collections
import contextlib
import dataclasses
import enum
import errno
import functools
import ipaddress
import os
import select
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from peerwall import nsenter
from peerwall.errors import LabError
from peerwall.model.parse import gc_paused

BACKLOG = 4096
"""Listen backlog: a run may aim thousands of concurrent connections at one listener."""

IDENTITY_MAX = 256
"""Bytes read at most for an identity line."""

_ACCEPT_BATCH = 512  # accepts per wake-up, so one busy listener cannot starve the loop
_START_BATCH = 256  # probes started per wake-up: between batches the listeners answer and the
# answers are read, so a probe's timeout is not spent waiting for this process to start others
_ACCEPT_RETRY = 0.1  # seconds to pause a listener when accept() runs out of resources
_LINGER_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, no TIME_WAIT
_AF_UNSPEC_ADDRESS = bytes(16)  # a struct sockaddr whose family is AF_UNSPEC


@functools.cache
def _libc_connect() -> Callable[[int, bytes, int], int]:
    import ctypes  # only runs that retry silence need it

    connect = ctypes.CDLL(None, use_errno=True).connect
    connect.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    connect.restype = ctypes.c_int
    return connect


def _abort(sock: _socket.socket) -> None:
    """Reset ``sock``'s connection now (connect to AF_UNSPEC: the kernel's tcp_disconnect).

    ``close()`` only resets it when it drops the last reference to the socket; a child forked
    by another thread of this process (any subprocess start) holds one until it execs, and the
    connection, still in the kernel's tables, makes a connect from the same 4-tuple fail with
    EADDRNOTAVAIL. The retry of silence reuses the 4-tuple at once, so its sockets are reset
    explicitly."""
    _libc_connect()(sock.fileno(), _AF_UNSPEC_ADDRESS, len(_AF_UNSPEC_ADDRESS))


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


@dataclasses.dataclass(frozen=True)
class Listener:
    """Listen on 0.0.0.0:``port`` inside ``netns`` and answer every connection with ``identity``."""

    netns: str
    port: int
    identity: str

    def __post_init__(self) -> None:
        if "\n" in self.identity or len(self.identity.encode()) >= IDENTITY_MAX:
            raise ValueError(f"identity must be one line under {IDENTITY_MAX} bytes")


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
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
    timed_out: bool = False
    """The outcome is the timeout's, not an answer's: silence (BLOCKED), or a connection whose
    identity line had not come (CONNECTED without identity). A loaded machine can look so."""

    @property
    def unanswered(self) -> bool:
        """Worth a retry before it stands: a timed-out outcome, or UNREACHABLE (a neighbour that
        did not answer in time fails a connect as an ICMP error does). A refusal, an identity or
        any other answer came from the network and is what it is."""
        return self.timed_out or self.outcome is Outcome.UNREACHABLE


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
        self._payloads: dict[socket.socket, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> ListenerSet:
        self._loop = asyncio.get_running_loop()
        try:
            for listener in self.listeners:
                sock = _listening_socket(listener)
                self._open.append(sock)
                self._payloads[sock] = (listener.identity + "\n").encode()
                self._watch(sock, self._payloads[sock])
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

    def _serve(self, sock: socket.socket, payload: bytes) -> bool:
        """Accept and answer up to a batch; True if there may be more waiting."""
        for _ in range(_ACCEPT_BATCH):
            try:
                # The bare descriptor (``_accept``, what ``socket.accept`` wraps): no socket
                # object is made for a connection that is written to once and closed, a cost
                # that shows at a hundred thousand connections a run.
                conn, _peer = sock._accept()  # type: ignore[attr-defined]  # not in typeshed
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES and self._loop is not None:
                    # The socket stays readable: without a pause the loop would spin on it.
                    self._loop.remove_reader(sock.fileno())
                    self._loop.call_later(_ACCEPT_RETRY, self._resume, sock, payload)
                    return False
                continue  # e.g. ECONNABORTED: the client is gone already
            try:
                # A fresh socket's send buffer always takes a line this short, so a plain
                # write neither blocks nor comes up short.
                os.write(conn, payload)
            except OSError:
                pass  # the client gave up first; there is nobody left to tell
            finally:
                os.close(conn)
        return True

    def serve_pending(self) -> None:
        """Answer every connection the kernel has accepted and this process has not yet: a
        probe run calls it before it gives up on an identity line, so that a process starved
        of CPU does not take its own listeners' lateness for a connection nobody answers."""
        for sock, payload in self._payloads.items():
            for _ in range(BACKLOG // _ACCEPT_BATCH):
                if not self._serve(sock, payload):
                    break

    def _resume(self, sock: socket.socket, payload: bytes) -> None:
        if sock in self._open:
            self._watch(sock, payload)

    def _close(self) -> None:
        for sock in self._open:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            # Stop listening now, not when the last reference goes: a child forked meanwhile
            # holds the socket until it execs, and the next run's listener on this port would
            # find it still listening (EADDRINUSE).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()
        self._payloads.clear()


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
    confirm: float | None = None,
    confirm_concurrency: int | None = None,
    serve: Callable[[], None] | None = None,
) -> list[ProbeResult]:
    """Run every probe, at most ``concurrency`` at a time; results come in the order of ``probes``.

    Each probe gets ``timeout`` seconds for the connect and the identity line together, counted
    from when it gets a slot, so a run lasts about ``ceil(len / concurrency) * timeout`` at
    worst. A probe that cannot run (say its namespace is missing) yields ERROR; the run goes on.
    ``progress(done, total)`` is called after each probe; if it raises, the run stops (every
    socket closed) and the error comes out in an ``ExceptionGroup``.

    With ``confirm`` (seconds), every probe left ``unanswered`` is run once more, with that
    timeout, at most ``confirm_concurrency`` at a time (default ``concurrency``; such probes are
    mostly silent and hold nothing but a socket), and the retry's result stands: under CPU load an
    answer can come after a short timeout, and silence must not be taken for a block until it
    lasted the longer wait too. The retry reuses the probe's 4-tuple, as a retransmitted SYN
    would. ``serve`` (the run's own ``ListenerSet.serve_pending``) is called before deadlines are
    judged, so that an identity line this process was too busy to send is not missing.
    """
    if timeout <= 0 or (confirm is not None and confirm <= 0):
        raise ValueError("timeout must be positive")
    if concurrency < 1 or (confirm_concurrency is not None and confirm_concurrency < 1):
        raise ValueError("concurrency must be at least 1")
    if not probes:
        return []
    loop = asyncio.get_running_loop()
    # A run allocates several objects a probe and keeps its results, which set off full
    # collections over the whole process's heap (1.4 s of CPU around one 116,512-probe run in a
    # test process), while a probe leaves no reference cycle: its socket, flight and result are
    # freed by reference count.
    with gc_paused():
        results = await _Run(loop, probes, timeout, concurrency, progress, serve).run()
    again = [i for i, r in enumerate(results) if r.unanswered] if confirm is not None else []
    if not again:
        return results
    assert confirm is not None
    with gc_paused():
        retried = await _Run(
            loop,
            [probes[i] for i in again],
            confirm,
            confirm_concurrency or concurrency,
            None,
            serve,
        ).run()
    for i, second in zip(again, retried, strict=True):
        first = results[i]
        detail = f"{first.detail}; retried: {second.detail}" if second.unanswered else second.detail
        results[i] = dataclasses.replace(
            second, detail=detail, seconds=first.seconds + second.seconds
        )
    return results


class _Flight:
    """One probe in progress."""

    __slots__ = ("deadline", "done", "index", "line", "probe", "reading", "sock", "start")

    def __init__(
        self, index: int, probe: Probe, sock: _socket.socket, start: float, deadline: float
    ):
        self.index = index
        self.probe = probe
        self.sock = sock
        self.start = start
        self.deadline = deadline
        self.reading = False
        self.line = bytearray()
        self.done = False


class _Run:
    """Every probe of one ``run_probes`` call, driven from one epoll set.

    The epoll set's own descriptor is watched by the event loop (so listeners and everything
    else on the loop keep running), and one timer walks the probes' deadlines: probes start in
    order with the same timeout, so their deadlines are in order too. No task, future or loop
    handle per probe: a probe is a socket and a few fields. Consecutive probes from the same
    namespace get their sockets in one ``setns`` round trip.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        probes: Sequence[Probe],
        timeout: float,
        concurrency: int,
        progress: Callable[[int, int], None] | None,
        serve: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.serve = serve
        self.probes = probes
        self.timeout = timeout
        self.concurrency = concurrency
        self.progress = progress
        self.total = len(probes)
        self.results: list[ProbeResult | None] = [None] * self.total
        self.next = 0
        self.finished = 0
        self.flights: dict[int, _Flight] = {}
        """By file descriptor: the probes connecting or reading."""
        self.deadlines: collections.deque[_Flight] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None
        self.epoll = select.epoll()
        self.over: asyncio.Future[None] = loop.create_future()
        self.more: asyncio.Handle | None = None
        """The next batch of starts, when one is due."""

    async def run(self) -> list[ProbeResult]:
        fd = self.epoll.fileno()
        self.loop.add_reader(fd, self._guarded, self._on_events)
        try:
            self._guarded(self._fill)
            await self.over
        finally:
            self.loop.remove_reader(fd)
            if self.timer is not None:
                self.timer.cancel()
            if self.more is not None:
                self.more.cancel()
            for flight in self.flights.values():
                flight.sock.close()
            self.flights.clear()
            self.epoll.close()
        return [r for r in self.results if r is not None]

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a step; an error it raises ends the run (with every socket closed) instead of
        being lost in the event loop's exception handler."""
        try:
            step()
        except Exception as exc:
            if not self.over.done():
                self.over.set_exception(ExceptionGroup("the probe run stopped", [exc]))

    # --- starting ------------------------------------------------------------------------

    def _fill(self) -> None:
        started = 0
        while (
            self.next < self.total and len(self.flights) < self.concurrency and not self.over.done()
        ):
            if started >= _START_BATCH:
                # The rest after the loop has had a turn (listeners, answers, deadlines).
                if self.more is None:
                    self.more = self.loop.call_soon(self._guarded, self._more)
                break
            room = min(self.concurrency - len(self.flights), _START_BATCH - started)
            first = self.next
            netns = self.probes[first].netns
            last = min(self.total, first + room)
            end = first + 1
            while end < last and self.probes[end].netns == netns:
                end += 1
            self.next = end
            started += end - first
            self._start(first, end, netns)
        if self.finished == self.total and not self.over.done():
            self.over.set_result(None)

    def _more(self) -> None:
        self.more = None
        self._fill()

    def _start(self, first: int, end: int, netns: str) -> None:
        """Start probes ``first`` to ``end - 1``, all from ``netns``."""
        families: list[socket.AddressFamily | None] = []
        for i in range(first, end):
            try:
                families.append(_family(self.probes[i].address))
            except ValueError as exc:
                families.append(None)
                self._result(i, self.loop.time(), Outcome.ERROR, str(exc))
        socks: list[_socket.socket | None] = []
        try:
            with nsenter.entered(netns):
                for family in families:
                    socks.append(None if family is None else _new_socket(family))
        except (LabError, OSError) as exc:
            for s in socks:
                if s is not None:
                    s.close()
            detail = (
                str(exc)
                if isinstance(exc, LabError)
                else f"cannot create a socket in {netns}: {_errno_text(exc)}"
            )
            for i, family in zip(range(first, end), families, strict=True):
                if family is not None:
                    self._result(i, self.loop.time(), Outcome.ERROR, detail)
            return
        for i, sock in zip(range(first, end), socks, strict=True):
            if sock is not None:
                self._connect(i, sock)

    def _connect(self, i: int, sock: _socket.socket) -> None:
        probe = self.probes[i]
        start = self.loop.time()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
            if probe.source_port is not None:
                # The same source port may be in use towards another destination (or, with
                # linger 0, was just released): the 4-tuple is what must be unique.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                any_address = "::" if sock.family == socket.AF_INET6 else "0.0.0.0"
                sock.bind((any_address, probe.source_port))
        except OSError as exc:
            sock.close()
            detail = f"cannot prepare a socket in {probe.netns}: {_errno_text(exc)}"
            self._result(i, start, Outcome.ERROR, detail)
            return
        # No resolver step (numeric addresses only), and the errno is ours to classify.
        err = sock.connect_ex((probe.address, probe.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            refused = OSError(err, os.strerror(err))
            self._result(i, start, _connect_outcome(refused), _errno_text(refused))
            return
        flight = _Flight(i, probe, sock, start, start + self.timeout)
        fd = sock.fileno()
        self.flights[fd] = flight
        self.deadlines.append(flight)
        if self.timer is None:
            self.timer = self.loop.call_at(flight.deadline, self._guarded, self._on_timer)
        if err == 0:
            self._connected(flight, fd, registered=False)
        else:
            self.epoll.register(fd, select.EPOLLOUT)

    # --- progress ----------------------------------------------------------------------------

    def _on_events(self) -> None:
        for fd, _events in self.epoll.poll(0, 4096):
            flight = self.flights.get(fd)
            if flight is None:
                continue
            if flight.reading:
                self._read(flight)
            else:
                self._answered(flight, fd)
        self._fill()

    def _answered(self, flight: _Flight, fd: int) -> None:
        """The connect has an outcome: connected, or an error."""
        err = flight.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            exc = OSError(err, os.strerror(err))
            self._finish(flight, _connect_outcome(exc), _errno_text(exc))
            return
        self._connected(flight, fd, registered=True)

    def _connected(self, flight: _Flight, fd: int, registered: bool) -> None:
        flight.reading = True
        self._read(flight)
        if not flight.done:
            if registered:
                self.epoll.modify(fd, select.EPOLLIN)
            else:
                self.epoll.register(fd, select.EPOLLIN)

    def _read(self, flight: _Flight) -> None:
        """Take what has arrived of the identity line; finish once it is whole (or never)."""
        line = flight.line
        while True:
            try:
                chunk = flight.sock.recv(IDENTITY_MAX - len(line))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._identity(flight, f"{_errno_text(exc)} before a whole identity line")
                return
            if not chunk:
                self._identity(flight, "the peer closed before a whole identity line")
                return
            line += chunk
            if b"\n" in line or len(line) >= IDENTITY_MAX:
                self._identity(flight, "")
                return

    def _identity(self, flight: _Flight, missing: str, timed_out: bool = False) -> None:
        identity, newline, _ = bytes(flight.line).partition(b"\n")
        if newline:
            self._finish(flight, Outcome.CONNECTED, "connected", identity.decode(errors="replace"))
        else:
            self._finish(flight, Outcome.CONNECTED, f"connected; {missing}", timed_out=timed_out)

    def _on_timer(self) -> None:
        self.timer = None
        now = self.loop.time()
        # Answers already there count, even if the loop was too busy to see them in time:
        # BLOCKED must mean silence, never "the prober was slow". Our own listeners answer
        # what the kernel accepted for them first, for the same reason.
        if self.serve is not None:
            self.serve()
        self._on_events()
        while self.deadlines and self.deadlines[0].deadline <= now + 1e-6:
            flight = self.deadlines.popleft()
            if not flight.done:
                self._expire(flight)
        while self.deadlines and self.deadlines[0].done:
            self.deadlines.popleft()
        if self.deadlines:
            self.timer = self.loop.call_at(
                self.deadlines[0].deadline, self._guarded, self._on_timer
            )
        self._fill()

    def _expire(self, flight: _Flight) -> None:
        sock = flight.sock
        if flight.reading:
            with contextlib.suppress(OSError):  # BlockingIOError included: nothing came
                flight.line += sock.recv(IDENTITY_MAX - len(flight.line))
            self._identity(flight, f"no identity line within {self.timeout:g}s", timed_out=True)
            return
        # An ICMP error that arrived while the kernel held the socket is only kept as a soft
        # error (the SYN would be retried); SO_ERROR still reports it.
        soft = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if soft in _UNREACHABLE:
            exc = OSError(soft, os.strerror(soft))
            self._finish(flight, Outcome.UNREACHABLE, _errno_text(exc))
            return
        self._finish(flight, Outcome.BLOCKED, f"no answer within {self.timeout:g}s", timed_out=True)

    # --- results -----------------------------------------------------------------------------

    def _finish(
        self,
        flight: _Flight,
        outcome: Outcome,
        detail: str,
        identity: str | None = None,
        timed_out: bool = False,
    ) -> None:
        flight.done = True
        fd = flight.sock.fileno()
        del self.flights[fd]
        if timed_out:  # its 4-tuple may be dialled again at once: see _abort
            _abort(flight.sock)
        flight.sock.close()  # linger 0: a RST, no TIME_WAIT; and out of the epoll set
        self._result(flight.index, flight.start, outcome, detail, identity, timed_out)

    def _result(
        self,
        i: int,
        start: float,
        outcome: Outcome,
        detail: str,
        identity: str | None = None,
        timed_out: bool = False,
    ) -> None:
        self.results[i] = ProbeResult(
            self.probes[i], outcome, identity, detail, self.loop.time() - start, timed_out
        )
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished, self.total)


def _new_socket(family: socket.AddressFamily) -> _socket.socket:
    """A bare non-blocking TCP socket (``_socket.socket``: none of ``socket.socket``'s Python
    wrapper, whose cost shows at tens of thousands of probes a second)."""
    return _socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)


@functools.lru_cache(maxsize=4096)
def _family(address: str) -> socket.AddressFamily:
    # Only numeric addresses: a host name would make connect() block on a resolver.
    try:
        version = ipaddress.ip_address(address).version
    except ValueError:
        raise ValueError(f"not an IP address: {address!r}") from None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


def _connect_outcome(exc: OSError) -> Outcome:
    if exc.errno == errno.ECONNREFUSED:
        return Outcome.REFUSED
    if exc.errno in _UNREACHABLE:
        return Outcome.UNREACHABLE
    return Outcome.ERROR
