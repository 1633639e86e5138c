"""What a running lab records on disk, and the lock that keeps two commands from changing it.

Each lab has a folder ``<state_dir>/<name>/``: ``state.json`` (where its topology came from, the
global default mode), ``topology.yaml`` (the text it runs), ``inputs/`` (what its agents read,
changed all at once: ``lab.atomic_folder``), the agents' logs and PIDs. ``<state_dir>/<name>.lock`` is held (``flock``) by whichever command is changing
the lab, and names its PID; a second command fails at once with that PID instead of tripping over
half-built namespaces; the lock file goes away with the lab.

Files are written and read only in folders that no other user can change: a state folder (and
the owners folder) must be a real directory owned by root (or the user running), writable by no
one else, in a parent that is either the same or sticky (``/tmp``); a temporary file is created
with ``O_EXCL | O_NOFOLLOW`` and renamed over the target, and files are read with
``O_NOFOLLOW``: a symlink planted by someone else is an error, never followed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from peerwall.errors import LabError
from peerwall.lab.netns import list_namespaces
from peerwall.lab.plan import LabPlan, check_lab_name
from peerwall.model import load_topology
from peerwall.model.topology import Topology
from peerwall.settings import LabSettings

STATE_FILE = "state.json"
TOPOLOGY_FILE = "topology.yaml"
OWNERS = "/run/peerwall/owners"
"""Machine-wide, like the namespaces themselves: ``<name>`` holds the state folder that owns lab
``name``, and ``<name>.lock`` is its lock, whatever state folder a command uses."""


@dataclass(frozen=True)
class LabState:
    """What ``lab up`` records so that later commands (probe, status, apply) know the lab."""

    name: str
    source: str
    mode: str
    """The global default mode (``networking.securityMode``)."""
    generation: int = 1
    """Bumped by every change of topology or mode; agents report the generation they applied."""
    audit: bool = False
    """The global default of auditing segregation (``networking.securityAudit``)."""
    shape: str = "simple"
    """``simple``: one gateway per cluster, agents on the file source; ``liqo``: Liqo v1's shape
    (``lab.liqo``): a gateway per peer, agents on the Kubernetes source."""

    def folder(self, settings: LabSettings) -> str:
        return lab_folder(self.name, settings)

    def topology_text(self, settings: LabSettings) -> str:
        try:
            return read_file(os.path.join(self.folder(settings), TOPOLOGY_FILE))
        except FileNotFoundError:
            raise LabError(f"lab {self.name}: its topology file is missing") from None

    def topology(self, settings: LabSettings) -> Topology:
        # Errors name the file that is wrong: the lab's copy, not the file it was copied from.
        copy = os.path.join(self.folder(settings), TOPOLOGY_FILE)
        return load_topology(
            self.topology_text(settings), f"{copy} (lab {self.name}'s copy of {self.source})"
        )

    def plan(self, settings: LabSettings) -> LabPlan:
        return LabPlan(self.name, self.topology(settings))


def lab_folder(name: str, settings: LabSettings) -> str:
    return os.path.join(settings.state_dir, check_lab_name(name))


def check_folder(path: str) -> None:
    """Refuse a folder another user could change (see the module's docstring): ``LabError``.
    A folder that does not exist yet passes (``make_folder`` creates it safely)."""
    me = os.geteuid()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise LabError(f"{path}: not a directory (a symlink?): refusing it as a state folder")
    if st.st_uid not in (0, me):
        raise LabError(
            f"{path}: owned by uid {st.st_uid}, not root: another user could plant files or "
            "symlinks there; use a state folder of root's (PEERWALL_STATE_DIR)"
        )
    if st.st_mode & stat.S_IWOTH or (st.st_mode & stat.S_IWGRP and st.st_gid != 0):
        raise LabError(
            f"{path}: writable by others (mode {stat.filemode(st.st_mode)}): refusing it as a "
            "state folder (chmod go-w, or use another PEERWALL_STATE_DIR)"
        )
    parent = os.lstat(os.path.dirname(os.path.abspath(path)) or "/")
    if parent.st_uid not in (0, me) and not parent.st_mode & stat.S_ISVTX:
        raise LabError(
            f"{path}: its parent folder is owned by uid {parent.st_uid}, who could replace it"
        )


def make_folder(path: str) -> None:
    """Create ``path`` (mode 0755) and its missing parents, then check it (``check_folder``)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    check_folder(path)


def write_file(path: str, text: str) -> None:
    """Write ``path`` atomically (a crash leaves the old one) without following any link: the
    temporary file is new (``O_EXCL | O_NOFOLLOW``, as ``mkstemp`` opens it), then renamed."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_file(path: str) -> str:
    """Read ``path``; a symlink there is an error (``OSError`` ELOOP), never followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read()


def load_state(name: str, settings: LabSettings | None = None) -> LabState:
    settings = settings or LabSettings()
    check_folder(settings.state_dir)
    path = os.path.join(lab_folder(name, settings), STATE_FILE)
    try:
        data: dict[str, Any] = json.loads(read_file(path))
        return LabState(**data)
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} is up (run: peerwall lab up -f FILE)") from None
    except (json.JSONDecodeError, TypeError, OSError) as e:
        raise LabError(f"lab {name}: its state file {path} is unreadable ({e})") from None


def save_state(state: LabState, settings: LabSettings, topology_text: str | None = None) -> None:
    """Write the state (and the topology, if given) atomically: a crash leaves the old one."""
    make_folder(settings.state_dir)
    folder = state.folder(settings)
    make_folder(folder)
    if topology_text is not None:
        write_file(os.path.join(folder, TOPOLOGY_FILE), topology_text)
    write_file(os.path.join(folder, STATE_FILE), json.dumps(asdict(state)))
    make_folder(OWNERS)
    write_file(os.path.join(OWNERS, state.name), os.path.abspath(settings.state_dir))


def owner(name: str) -> str | None:
    """The state folder that owns lab ``name``, if one does."""
    try:
        folder = read_file(os.path.join(OWNERS, check_lab_name(name))).strip()
    except FileNotFoundError:
        return None
    return folder if os.path.isfile(os.path.join(folder, name, STATE_FILE)) else None


def remove_state(name: str, settings: LabSettings) -> None:
    shutil.rmtree(lab_folder(name, settings), ignore_errors=True)
    path = os.path.join(OWNERS, name)
    with contextlib.suppress(FileNotFoundError):
        if read_file(path).strip() == os.path.abspath(settings.state_dir):
            os.unlink(path)


@dataclass(frozen=True)
class LabListing:
    """A lab as ``lab status`` finds it: its state, or why it has none."""

    name: str
    state: LabState | None
    problem: str | None = None


def list_labs(settings: LabSettings | None = None) -> list[LabListing]:
    """Every lab with a state folder, and every orphan: namespaces ``pw-<name>-…`` with no state
    here nor in the state folder that owns the name (a ``lab up`` killed before it recorded
    anything). Labs of other state folders are theirs, and not listed."""
    settings = settings or LabSettings()
    names: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        names |= {
            e
            for e in os.listdir(settings.state_dir)
            if os.path.isdir(os.path.join(settings.state_dir, e))
        }
    orphans = set()
    for ns in list_namespaces("pw-"):
        parts = ns.split("-", 2)
        if len(parts) == 3 and parts[1] and parts[1] not in names and owner(parts[1]) is None:
            with contextlib.suppress(LabError):
                check_lab_name(parts[1])
                orphans.add(parts[1])
    out = []
    for name in sorted(names | orphans):
        if name in orphans:
            out.append(
                LabListing(
                    name,
                    None,
                    f"broken: namespaces pw-{name}-… without a state in {settings.state_dir} (a "
                    f"killed lab up?); run: peerwall lab down --name {name}",
                )
            )
            continue
        try:
            out.append(LabListing(name, load_state(name, settings)))
        except LabError as e:
            out.append(LabListing(name, None, f"broken: {e}"))
    return out


_HELD: dict[str, int] = {}
"""The labs whose lock this process holds, and how many blocks hold it: a command that holds a
lock for a whole run (the demo) calls steps that take it again, and flock is per open file, so a
second ``flock`` of the same file from this process would fail as if another process held it."""


@contextlib.contextmanager
def locked(name: str, settings: LabSettings) -> Iterator[None]:
    """Hold lab ``name``'s lock for the block, or fail naming the process that holds it. When
    the lab is gone at the end of the block (``lab down``, a failed ``lab up``), its lock file
    goes too: removed while still held, and a command that opened it meanwhile sees that its
    file is no longer the lock's and takes the new one.

    Re-entrant within a process: an inner block of the holder goes through."""
    check_lab_name(name)
    if name in _HELD:
        _HELD[name] += 1
        try:
            yield
        finally:
            _HELD[name] -= 1
        return
    make_folder(OWNERS)
    check_folder(settings.state_dir)
    path = os.path.join(OWNERS, f"{check_lab_name(name)}.lock")
    fd = _lock(path, name)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        _HELD[name] = 1
        try:
            yield
        finally:
            del _HELD[name]
    finally:
        if owner(name) is None and not os.path.isdir(lab_folder(name, settings)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        os.close(fd)  # closing releases the lock


def _lock(path: str, name: str) -> int:
    """Open and lock ``path`` (no link followed); retry if it was removed while we waited."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode().strip() or "unknown"
            os.close(fd)
            raise LabError(
                f"lab {name} is being changed by PID {holder}; try again when it is done"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # removed by the holder we waited for: lock the file that is there now
