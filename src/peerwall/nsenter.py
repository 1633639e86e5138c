"""Enter a named network namespace for the current thread, and come back.

Python 3.11 has no ``os.setns``, so this calls libc's ``setns(2)``. A namespace switch affects only
the calling thread, and every socket or libnftables context created meanwhile stays bound to that
namespace for life: callers enter, create, and leave at once.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from peerwall.errors import LabError

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000

# The C library the interpreter itself runs on (its symbols are the program's): finding it by name
# (``ctypes.util.find_library``) would run ``ldconfig -p`` in every process that imports this.
_libc = ctypes.CDLL(None, use_errno=True)


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns into {what} failed: {os.strerror(err)}")


_cache = threading.local()


@contextmanager
def kept_open() -> Iterator[None]:
    """Keep namespace files open while the body enters the same namespaces many times (a probe
    run creates a socket in one of a few hundred namespaces per probe). Closed at the end, so a
    deleted namespace is not kept alive by us."""
    if getattr(_cache, "fds", None) is not None:
        yield
        return
    _cache.fds = {}
    try:
        yield
    finally:
        for fd in _cache.fds.values():
            os.close(fd)
        _cache.fds = None


def _open(path: str, name: str) -> tuple[int, bool]:
    """(fd, whether the caller must close it)."""
    fds: dict[str, int] | None = getattr(_cache, "fds", None)
    if fds is not None and path in fds:
        return fds[path], False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise LabError(f"network namespace {name!r} does not exist") from None
    if fds is not None:
        fds[path] = fd
        return fd, False
    return fd, True


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body inside network namespace ``name`` (``None``: stay where we are)."""
    if name is None:
        yield
        return
    target, close_target = _open(netns_path(name), name)
    home, close_home = _open("/proc/thread-self/ns/net", "the original namespace")
    try:
        _setns(target, name)
        try:
            yield
        finally:
            _setns(home, "the original namespace")
    finally:
        if close_target:
            os.close(target)
        if close_home:
            os.close(home)
