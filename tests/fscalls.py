"""Stop a writer between any two of its file-system calls, to look at the files as a reader
polling at that moment would see them (Python's audit events: ``sys.addaudithook``).

A hook runs before each call that creates, opens, renames, links or removes a file or folder,
so the files it sees are those left by the call before: every state a writer passes through is
seen, none is guessed at. A hook can never be removed, so one is installed once per process and
calls the callbacks of ``before_each_call`` only while that context is open.

The readers' side: ``recorded_watches`` keeps the inotify watches a reader was given.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from peerwall.agent import filewatch
from peerwall.agent.filewatch import FolderWatch

EVENTS = frozenset(
    {
        "open",
        "os.rename",  # os.rename and os.replace
        "os.remove",  # os.remove and os.unlink
        "os.symlink",
        "os.link",
        "os.mkdir",
        "os.rmdir",
        "os.chmod",
        "os.truncate",
        "shutil.rmtree",
        "tempfile.mkstemp",
        "tempfile.mkdtemp",
    }
)

_callbacks: list[Callable[[str, tuple[object, ...]], None]] = []
_state = threading.local()
_installed = False


def _hook(event: str, args: tuple[object, ...]) -> None:
    if not _callbacks or event not in EVENTS or getattr(_state, "inside", False):
        return
    _state.inside = True  # the callback's own reads are not the writer's steps
    try:
        for callback in list(_callbacks):
            callback(event, args)
    finally:
        _state.inside = False


@contextlib.contextmanager
def before_each_call(callback: Callable[[str, tuple[object, ...]], None]) -> Iterator[None]:
    """Call ``callback(event, args)`` before each file-system call of this thread's code
    (and any other thread's) while the context is open."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    _callbacks.append(callback)
    try:
        yield
    finally:
        _callbacks.remove(callback)


def recorded_watches(monkeypatch: pytest.MonkeyPatch) -> list[FolderWatch | None]:
    """Every inotify watch ``filewatch.watch`` gives from now on (None: it could not watch, and
    its caller polls), in order: a test can tell that a wake-up came from inotify."""
    watches: list[FolderWatch | None] = []
    real = filewatch.watch

    def recorded(paths: Iterable[Path | None]) -> FolderWatch | None:
        watches.append(real(paths))
        return watches[-1]

    monkeypatch.setattr(filewatch, "watch", recorded)
    return watches
