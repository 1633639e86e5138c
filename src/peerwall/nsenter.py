"""Enter a named network namespace for the current thread, and come back.

Python 3.11 has no ``os.setns``, so this calls libc's ``setns(2)``. A namespace switch affects only
the calling thread, and every socket or libnftables context created meanwhile stays bound to that
namespace for life: callers enter, create, and leave at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

from peerwall.errors import LabError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns into {what} failed: {os.strerror(err)}")


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body inside network namespace ``name`` (``None``: stay where we are)."""
    if name is None:
        yield
        return
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabError(f"network namespace {name!r} does not exist") from None
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(home, "the original namespace")
    finally:
        os.close(target)
        os.close(home)
