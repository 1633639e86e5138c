"""The lab supervisor sleeps until its agent exits or a probe is due: it is woken by the agent's
exit (a pidfd), not by checking every 50 ms as ``Popen.wait(timeout)`` does. A lab host runs an
agent supervisor per gateway for hours, and each wake-up costs CPU on a virtual machine."""

from __future__ import annotations

import os
import resource
import subprocess

import pytest

from peerwall.lab import supervise


def _switches() -> int:
    """Times this thread gave up the CPU of its own accord (it slept, then was woken)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


def test_the_wait_for_an_agent_is_woken_by_its_exit_alone() -> None:
    child = subprocess.Popen(["sleep", "0.5"])
    pidfd = supervise._pidfd(child)
    assert pidfd is not None, "this kernel has pidfd_open (Linux 5.3 and later)"
    try:
        before = _switches()
        code = supervise._wait(child, pidfd, timeout=3600)
        woken = _switches() - before
    finally:
        os.close(pidfd)
    assert code == 0
    # Popen.wait(timeout) would have slept and woken ~15 times in those 0.5 s (a check after
    # 0.5, 1, 2, ... ms, then every 50 ms); the pidfd wakes this thread once.
    assert woken <= 3, woken


def test_the_wait_returns_none_while_the_agent_runs_and_its_status_once_it_ended() -> None:
    child = subprocess.Popen(["sh", "-c", "read line; exit 7"], stdin=subprocess.PIPE)
    pidfd = supervise._pidfd(child)
    assert pidfd is not None
    try:
        assert supervise._wait(child, pidfd, timeout=0.01) is None
        assert child.stdin is not None
        child.stdin.close()  # EOF: the shell's read returns and it exits 7
        assert supervise._wait(child, pidfd, timeout=3600) == 7
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("code", [0, 3])
def test_without_a_pidfd_the_wait_falls_back_to_popen(code: int) -> None:
    child = subprocess.Popen(["sh", "-c", f"exit {code}"])
    assert supervise._wait(child, None, timeout=3600) == code
