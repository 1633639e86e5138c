"""What a running lab records on disk, and the lock that keeps two commands from changing it.

Each lab has a folder ``<state_dir>/<name>/``: ``state.json`` (where its topology came from, the
global default mode), ``topology.yaml`` (the text it runs, which its agents read), the agents'
logs and PIDs. ``<state_dir>/<name>.lock`` is held (``flock``) by whichever command is changing
the lab, and names its PID; a second command fails at once with that PID instead of tripping over
half-built namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
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

    def folder(self, settings: LabSettings) -> str:
        return lab_folder(self.name, settings)

    def topology_text(self, settings: LabSettings) -> str:
        try:
            with open(os.path.join(self.folder(settings), TOPOLOGY_FILE), encoding="utf-8") as f:
                return f.read()
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


def load_state(name: str, settings: LabSettings | None = None) -> LabState:
    settings = settings or LabSettings()
    path = os.path.join(lab_folder(name, settings), STATE_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        return LabState(**data)
    except FileNotFoundError:
        raise LabError(f"no lab named {name!r} is up (run: peerwall lab up -f FILE)") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise LabError(f"lab {name}: its state file {path} is unreadable ({e})") from None


def save_state(state: LabState, settings: LabSettings, topology_text: str | None = None) -> None:
    """Write the state (and the topology, if given) atomically: a crash leaves the old one."""
    folder = state.folder(settings)
    os.makedirs(folder, exist_ok=True)
    if topology_text is not None:
        _write(os.path.join(folder, TOPOLOGY_FILE), topology_text)
    _write(os.path.join(folder, STATE_FILE), json.dumps(asdict(state)))
    os.makedirs(OWNERS, exist_ok=True)
    _write(os.path.join(OWNERS, state.name), os.path.abspath(settings.state_dir))


def owner(name: str) -> str | None:
    """The state folder that owns lab ``name``, if one does."""
    try:
        with open(os.path.join(OWNERS, check_lab_name(name)), encoding="utf-8") as f:
            folder = f.read().strip()
    except FileNotFoundError:
        return None
    return folder if os.path.isfile(os.path.join(folder, name, STATE_FILE)) else None


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_state(name: str, settings: LabSettings) -> None:
    shutil.rmtree(lab_folder(name, settings), ignore_errors=True)
    path = os.path.join(OWNERS, name)
    with contextlib.suppress(FileNotFoundError):
        with open(path, encoding="utf-8") as f:
            mine = f.read().strip() == os.path.abspath(settings.state_dir)
        if mine:
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


@contextlib.contextmanager
def locked(name: str, settings: LabSettings) -> Iterator[None]:
    """Hold lab ``name``'s lock for the block, or fail naming the process that holds it."""
    os.makedirs(OWNERS, exist_ok=True)
    path = os.path.join(OWNERS, f"{check_lab_name(name)}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 32, 0).decode().strip() or "unknown"
            raise LabError(
                f"lab {name} is being changed by PID {holder}; try again when it is done"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
