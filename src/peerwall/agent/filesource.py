"""The file source: a topology file (and a values file, and the peer gateways' addresses) that
the agent re-reads when they change.

The source looks at the files' stamps (a stat each) when inotify says their folders changed
(``filewatch``) and, in case a change is not seen that way, every ``watched_poll`` seconds; where
inotify cannot watch them, every ``poll`` seconds (it works on any filesystem). The
inputs are one set: a new topology read with the old values (or gateways) is a state nobody
meant, which the agent would enforce. Writers should change them all at once, as kubelet does a
ConfigMap's folder (the files are symlinks through ``..data``, switched by one rename; the lab
does the same, ``lab.atomic_folder``). The files are still opened one after another, so a read
counts only if no file was replaced meanwhile (the same stat before and after): otherwise they
are read again at the next poll, and a set is only ever loaded whole. A file that does not load
is logged and ignored: the agent keeps enforcing the last good state (or stays fail-closed if
there never was one), so a typo never opens anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import pickle
import subprocess
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

from peerwall.agent import filewatch
from peerwall.agent.desired import DesiredState
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import API_PORT, CONNCHECK_PORT, GatewayState, SetKind
from peerwall.errors import PeerwallError
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.settings import max_input_bytes
from peerwall.values import audit_from_values, mode_from_values

log = logging.getLogger("peerwall.agent.file")


@dataclass(frozen=True)
class FileInputs:
    topology: Path
    cluster: str
    values: Path | None = None
    """A Helm-style values file whose ``networking.securityMode`` is the global default."""
    gateways: Path | None = None
    """JSON ``{"<peer>": "<address>"}``: each peer gateway's tunnel address (the link's needs)."""
    default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD
    """The global default when the values file sets none (``--set`` wins over both)."""
    forced_mode: SecurityMode | None = None
    """From ``--set networking.securityMode``: wins over the values file."""
    forced_audit: bool | None = None
    """From ``--set networking.securityAudit``: wins over the values file (default: false)."""
    tunnel_pattern: str = "pwt-*"
    api_port: int = API_PORT
    conncheck_port: int | None = CONNCHECK_PORT


def inputs_digest(texts: Sequence[str | None]) -> str:
    """What the lab compares with the agent's status to know the agent applied its files."""
    h = hashlib.sha256()
    for t in texts:
        h.update(b"\0" if t is None else t.encode() + b"\1")
    return h.hexdigest()[:16]


class FileSource:
    def __init__(
        self,
        inputs: FileInputs,
        desired: DesiredState,
        poll: float = 0.05,
        watched_poll: float = 5.0,
    ) -> None:
        self.inputs = inputs
        self.desired = desired
        self.poll = poll
        self.watched_poll = watched_poll
        self.watched = False
        """Whether inotify watches the inputs' folders (then ``watched_poll`` is the interval: a
        look in case a change was not reported, and each wake-up of an idle agent costs CPU)."""
        self.listed = asyncio.Event()
        self.changed = asyncio.Event()
        self.loaded_digest: str | None = None
        """Digest of the inputs the desired state now reflects."""
        self._stamps: tuple[object, ...] | None = None
        self.topology: Topology | None = None
        """The topology the desired state now reflects (names and explanations of drops)."""
        self.mode = inputs.default_mode
        """The global default mode it was read with."""
        self._read_error: str | None = None

    def _paths(self) -> list[Path | None]:
        i = self.inputs
        return [i.topology, i.values, i.gateways]

    def _stamp(self) -> tuple[object, ...]:
        out: list[object] = []
        for p in self._paths():
            if p is None:
                out.append(None)
                continue
            try:
                st = os.stat(p)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append("missing")
        return tuple(out)

    def read(self) -> tuple[tuple[object, ...], list[str | None]] | None:
        """The files' stamps and texts, all of one moment; ``None`` if a file was replaced while
        they were read (a writer switched versions in the middle). Raises ``OSError`` if a file
        cannot be read (a missing one that stays missing included)."""
        before = self._stamp()
        try:
            texts = [None if p is None else p.read_text(encoding="utf-8") for p in self._paths()]
        except FileNotFoundError:
            if self._stamp() != before:
                return None  # an old version's file, removed after the switch
            raise
        return (before, texts) if self._stamp() == before else None

    def load(self) -> bool:
        """Read the files and update the desired state; False (logged) if they do not load, or
        were replaced while read (then they are read again at the next poll)."""
        read = self.read()
        if read is None:
            log.info("inputs replaced while they were read: reading them again")
            return False
        self._stamps, texts = read
        del read
        digest = inputs_digest(texts)
        big = len(texts[0] or "") > CHILD_PARSE_CHARS
        # Parsing a big topology peaks at ~3 KiB per pod (the parsed data, the schema's objects
        # and the resolved topology together), 3x what the agent then keeps: in a process of
        # its own, the agent never holds that peak, nor the scattered heap it leaves behind.
        # A small topology is kept (drops are named and explained with it); a big one is not:
        # its drops carry addresses only.
        outcome = (
            _in_child(self.inputs, texts) if big else _compact_state(self.inputs, texts, keep=True)
        )
        del texts
        if isinstance(outcome, str):
            log.error("inputs not loaded, keeping the last good state: %s", outcome)
            return False
        state, mode, members, topology = outcome
        self.desired.cluster = state.cluster
        self.desired.load(state, members=members)
        self.topology, self.mode = topology, mode
        self.loaded_digest = digest
        log.info(
            "loaded %s (cluster %s, default mode %s%s)",
            self.inputs.topology,
            state.cluster,
            mode.value,
            ", parsed in a child process" if big else "",
        )
        return True

    async def run(self) -> None:
        folders = filewatch.watch(self._paths())
        woken = asyncio.Event()
        if folders is not None:
            asyncio.get_running_loop().add_reader(folders.fileno(), _wake, folders, woken)
        self.watched = folders is not None
        try:
            while True:
                # Cleared before the files are looked at: a change during the look wakes the
                # next wait at once.
                woken.clear()
                self._look()
                # Files not read yet (missing, or unreadable for a reason that is not theirs)
                # are tried again soon: their folder may say nothing when they become readable.
                soon = folders is None or self._stamps is None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self.poll if soon else self.watched_poll)
        finally:
            if folders is not None:
                asyncio.get_running_loop().remove_reader(folders.fileno())
                folders.close()

    def _look(self) -> None:
        """Load the inputs if their stamps changed since the last load."""
        if self._stamp() != self._stamps:
            try:
                ok = self.load()
            except OSError as e:
                # Not the files' fault (no descriptor left, say): read them again next poll.
                if str(e) != self._read_error:
                    log.error("cannot read the inputs (retrying): %s", e)
                self._read_error, self._stamps = str(e), None
                ok = False
            else:
                self._read_error = None
            if ok:
                self.listed.set()
                self.changed.set()


def _wake(folders: filewatch.FolderWatch, woken: asyncio.Event) -> None:
    folders.drain()
    woken.set()


CHILD_PARSE_CHARS = 1 << 20
"""A topology text longer than this (~9,000 pods) is parsed in a child process: its start
(~0.5 s) is paid only where the parse's peak would outweigh the agent's own memory."""

Members = dict[str, dict[SetKind, "array[int]"]]
"""Peer -> set -> its addresses as ints: what a child hands back (compact to send)."""


CompactState = tuple[GatewayState, SecurityMode, Members, Topology | None]


def _compact_state(
    inputs: FileInputs, texts: list[str | None], keep: bool = False
) -> CompactState | str:
    """The gateway's state from the files' texts: its declarations, its mode, its sets as int
    arrays, and (``keep``) the topology; or the error text. Runs in the agent or in a child
    process (``FileSource.load``)."""
    topology_text, values_text, gateways_text = texts
    assert topology_text is not None
    try:
        topology = load_topology(topology_text, str(inputs.topology), max_bytes=max_input_bytes())
        del topology_text, texts  # tens of MB at 100,000s of pods: not kept past parsing
        mode = _mode(inputs, values_text)
        audit = _audit(inputs, values_text)
        gateways = {peer: IPv4Address(a) for peer, a in json.loads(gateways_text or "{}").items()}
        if inputs.cluster not in topology.cluster_by_name:
            raise PeerwallError(f"{inputs.topology}: no cluster {inputs.cluster!r}")
        state = gateway_state(
            topology,
            inputs.cluster,
            mode,
            api_port=inputs.api_port,
            tunnel_pattern=inputs.tunnel_pattern,
            gateways=gateways,
            conncheck_port=inputs.conncheck_port,
            audit=audit,
        )
    except (PeerwallError, ValueError, TypeError, AttributeError) as e:
        return str(e)
    members = {
        name: {k: array("I", sorted(map(int, peer.addresses(k)))) for k in SetKind}
        for name, peer in state.peers.items()
    }
    bare = {name: replace(peer, members={}) for name, peer in state.peers.items()}
    return replace(state, peers=bare), mode, members, topology if keep else None


def _in_child(inputs: FileInputs, texts: list[str | None]) -> CompactState | str:
    """``_compact_state`` in a child process (``python -m peerwall.agent.filesource``), waited
    for; its input and answer are pickles on its standard input and output."""
    done = subprocess.run(
        [sys.executable, "-m", "peerwall.agent.filesource"],
        input=pickle.dumps((inputs, texts)),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return f"{inputs.topology}: parsing in a child process failed: {why[0]}"
    outcome: CompactState | str = pickle.loads(done.stdout)
    return outcome


def _mode(inputs: FileInputs, values_text: str | None) -> SecurityMode:
    if inputs.forced_mode is not None:
        return inputs.forced_mode
    if values_text is None or inputs.values is None:
        return inputs.default_mode
    return mode_from_values(values_text, str(inputs.values)) or inputs.default_mode


def _audit(inputs: FileInputs, values_text: str | None) -> bool:
    if inputs.forced_audit is not None:
        return inputs.forced_audit
    if values_text is None or inputs.values is None:
        return False
    return audit_from_values(values_text, str(inputs.values)) or False


if __name__ == "__main__":  # the child of ``_in_child``
    sys.stdout.buffer.write(pickle.dumps(_compact_state(*pickle.loads(sys.stdin.buffer.read()))))
