"""Wake-ups for the file source: inotify(7) on the folders that hold its inputs.

The file source compares the files' stamps whenever it wakes; inotify only tells it when to
look. Without it the source must poll often to see a change soon, and every agent pays that
while idle (a stat of each input 20 times a second). Folders, not files, are watched: the
inputs are replaced by renames (kubelet's ConfigMap volume switches ``..data``; an editor
writes a new file over the old), which a watch on the old file would never see. Where inotify
cannot be had (no inotify, the per-user watch limit reached), ``watch`` returns None and the
source polls as before.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

_CHANGES = (
    0x002  # IN_MODIFY
    | 0x004  # IN_ATTRIB
    | 0x008  # IN_CLOSE_WRITE
    | 0x040  # IN_MOVED_FROM
    | 0x080  # IN_MOVED_TO
    | 0x100  # IN_CREATE
    | 0x200  # IN_DELETE
    | 0x400  # IN_DELETE_SELF
    | 0x800  # IN_MOVE_SELF
)
_IN_IGNORED = 0x8000
"""A watch removed by the kernel (its folder deleted or on an unmounted filesystem)."""
_IN_Q_OVERFLOW = 0x4000
_EVENT_HEAD = 16  # struct inotify_event: wd, mask, cookie, len
_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # IN_NONBLOCK, IN_CLOEXEC


class FolderWatch:
    """One inotify descriptor watching some folders for any change of what they hold."""

    def __init__(self, fd: int, folders: tuple[Path, ...]) -> None:
        self._fd = fd
        self.folders = folders

    def fileno(self) -> int:
        return self._fd

    def drain(self) -> None:
        """Read every queued event (the caller looks at the files themselves). A folder whose
        watch the kernel dropped (deleted, then perhaps made again) is watched again."""
        lost = False
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset + _EVENT_HEAD <= len(data):
                mask = int.from_bytes(data[offset + 4 : offset + 8], "little")
                length = int.from_bytes(data[offset + 12 : offset + 16], "little")
                lost |= bool(mask & (_IN_IGNORED | _IN_Q_OVERFLOW))
                offset += _EVENT_HEAD + length
        if lost:
            _add(self._fd, self.folders)

    def close(self) -> None:
        os.close(self._fd)


def _add(fd: int, folders: Iterable[Path]) -> int:
    """Watch the folders that exist; how many are watched."""
    watched = 0
    for folder in folders:
        if _libc.inotify_add_watch(fd, os.fsencode(folder), _CHANGES) >= 0:
            watched += 1
    return watched


def folders_of(paths: Iterable[Path | None]) -> tuple[Path, ...]:
    """The folders whose changes can change the files at ``paths``: each one's own folder, and
    its target's folder if it is a symlink elsewhere (a ConfigMap's file points into ``..data``,
    whose switch is a rename in the file's own folder; a link elsewhere changes there)."""
    out: dict[Path, None] = {}
    for p in paths:
        if p is None:
            continue
        out[Path(os.path.abspath(p)).parent] = None
        out[Path(os.path.realpath(p)).parent] = None
    return tuple(out)


def watch(paths: Iterable[Path | None]) -> FolderWatch | None:
    """A watch on the folders of ``paths``, or None where inotify cannot watch them all."""
    folders = folders_of(paths)
    fd = _libc.inotify_init1(_FLAGS)
    if fd < 0:
        return None
    if _add(fd, folders) < len(folders):
        # A folder missing now, or the watch limit reached (ENOSPC): polling sees what a
        # partial watch would miss.
        os.close(fd)
        return None
    return FolderWatch(fd, folders)


__all__ = ["FolderWatch", "folders_of", "watch"]
