"""Keep one lab agent running, as the kubelet keeps a pod's container: restart it when it exits,
with backoff, and kill it when it stops answering its liveness probe.

``python -m peerwall.lab.supervise -- <agent command>`` runs inside the gateway's namespace (the
lab starts it under ``ip netns exec``) and is the process the lab records: SIGTERM and SIGINT stop
the agent and the supervisor, SIGUSR1 is passed on (``lab repair``). The agent dies with its
supervisor (``PR_SET_PDEATHSIG``), so no agent outlives the lab's record of it.

Backoff: the first restart comes after ``FIRST_DELAY`` (well within a second), then doubles up to
``MAX_DELAY`` while the agent keeps dying before it is ready; an agent that was ready (``/readyz``
answered 200: it enforced its state) or ran ``RESET_AFTER`` seconds starts the count again. The
kubelet resets after 10 minutes of running; a lab gateway has no other way back, and an agent that
did its work and was then killed is not a crash loop. Liveness: once ``/healthz`` has
answered, ``PROBE_FAILURES`` failed probes ``PROBE_PERIOD`` apart (a stopped or hung agent) kill it;
before, as a startup probe, ``STARTUP_FAILURES`` probes ``STARTUP_PERIOD`` apart.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit

FIRST_DELAY = 0.2
MAX_DELAY = 10.0
RESET_AFTER = 30.0
PROBE_PERIOD = 2.0
"""Liveness probes of a lab agent this far apart (the chart's kubelet probes every 5 s): each one
wakes the supervisor and the agent's endpoint, several ms of CPU on a virtual machine, and a lab
host runs hundreds of agents over a test run."""
PROBE_TIMEOUT = 1.0
PROBE_FAILURES = 3
STARTUP_PERIOD = 0.2
STARTUP_FAILURES = 75
"""Probes (``STARTUP_PERIOD`` apart: 15 s; an agent answers within 1-2 s) an agent has to
answer a first time; the budget is those 15 s, however long each failed probe waited."""
PR_SET_PDEATHSIG = 1


def say(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: {message}\n")
    sys.stderr.flush()


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def delay(restarts: int) -> float:
    """Seconds before restart number ``restarts`` (from 1) of a crash loop."""
    return float(min(MAX_DELAY, FIRST_DELAY * 2 ** (restarts - 1)))


def health_url(command: Sequence[str]) -> str | None:
    for arg in command:
        if arg.startswith("--metrics-address="):
            host, _, port = arg.split("=", 1)[1].rpartition(":")
            host = "127.0.0.1" if host in ("", "0.0.0.0") else host
            return f"http://{host}:{port}/healthz"
    return None


def healthy(url: str) -> bool:
    """Whether a GET of ``url`` answers 200 within ``PROBE_TIMEOUT``, as the kubelet's HTTP probe.
    With ``http.client``: ``urllib.request`` would add half again to the imports of this process,
    which every lab agent starts with."""
    try:
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=PROBE_TIMEOUT
        )
        try:
            connection.request("GET", parts.path)
            return connection.getresponse().status == 200
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException):
        return False


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


class Supervisor:
    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.url = health_url(command)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.was_ready = False
        """The current agent answered ``/readyz`` once: it is not crash-looping."""

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.send_signal(signum)

    def run(self) -> int:
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(s, self._signal)
        restarts = 0
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command, preexec_fn=_die_with_parent)
            code = self._watch(self.child)
            if self.stopping:
                return 0
            ran = time.monotonic() - started
            restarts = 1 if ran >= RESET_AFTER or self.was_ready else restarts + 1
            wait = delay(restarts)
            say(
                f"agent {self.child.pid} ended ({_exit_text(code)}) after {ran:.1f} s; "
                f"restart {restarts} in {wait:.2f} s"
            )
            deadline = time.monotonic() + wait
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            if self.stopping:
                return 0

    def _watch(self, child: subprocess.Popen[bytes]) -> int:
        """Until the child exits (its status), killing it if it stops answering its probe."""
        self.was_ready = False
        pidfd = _pidfd(child)
        try:
            return self._probe_until_exit(child, pidfd)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _probe_until_exit(self, child: subprocess.Popen[bytes], pidfd: int | None) -> int:
        answered, failures = False, 0
        born = time.monotonic()
        while True:
            code = _wait(child, pidfd, PROBE_PERIOD if answered else STARTUP_PERIOD)
            if code is not None:
                return code
            if self.url is None or self.stopping:
                continue
            if healthy(self.url):
                answered, failures = True, 0
                if not self.was_ready:
                    self.was_ready = healthy(self.url.replace("/healthz", "/readyz"))
            else:
                failures += 1
                # The startup budget is time, as the kubelet's (threshold x period): a probe of a
                # stopped agent waits out its own timeout, so counting probes alone would stretch
                # 15 s to 90 s for an agent stopped before its first answer.
                late = not answered and time.monotonic() - born >= STARTUP_FAILURES * STARTUP_PERIOD
                if late or failures >= (PROBE_FAILURES if answered else STARTUP_FAILURES):
                    say(f"agent {child.pid} failed {failures} liveness probes: killing it")
                    with contextlib.suppress(ProcessLookupError):
                        child.kill()


def _pidfd(child: subprocess.Popen[bytes]) -> int | None:
    """A descriptor that becomes readable when ``child`` exits, or None where the kernel has no
    pidfd (before Linux 5.3). ``Popen.wait(timeout)`` checks every 50 ms instead: 20 wake-ups a
    second for the whole life of every agent of a lab host."""
    try:
        return os.pidfd_open(child.pid)
    except OSError:
        return None


def _wait(child: subprocess.Popen[bytes], pidfd: int | None, timeout: float) -> int | None:
    """``child``'s exit status if it ends within ``timeout`` seconds, else None."""
    if pidfd is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return child.wait(timeout=timeout)
        return None
    select.select([pidfd], [], [], timeout)  # retried by Python after a signal, for the time left
    return child.poll()


def main(argv: Sequence[str]) -> int:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        sys.stderr.write("usage: python -m peerwall.lab.supervise -- AGENT COMMAND...\n")
        return 2
    return Supervisor(argv[argv.index("--") + 1 :]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
