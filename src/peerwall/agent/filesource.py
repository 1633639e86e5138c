"""The file source: a topology file (and a values file, and the peer gateways' addresses) that
the agent re-reads when they change.

Files are polled (a stat every ``poll`` seconds: cheap, and it works on any filesystem); writers
should replace them atomically (write, then rename), as the lab does. A file that does not load is
logged and ignored: the agent keeps enforcing the last good state (or stays fail-closed if there
never was one), so a typo never opens anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from peerwall.agent.desired import DesiredState
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import API_PORT, CONNCHECK_PORT
from peerwall.errors import PeerwallError
from peerwall.model import SecurityMode, load_topology
from peerwall.values import mode_from_values

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
    def __init__(self, inputs: FileInputs, desired: DesiredState, poll: float = 0.05) -> None:
        self.inputs = inputs
        self.desired = desired
        self.poll = poll
        self.synced = asyncio.Event()
        self.changed = asyncio.Event()
        self.loaded_digest: str | None = None
        """Digest of the inputs the desired state now reflects."""
        self._stamps: tuple[object, ...] | None = None
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

    def load(self) -> bool:
        """Read the files and update the desired state; False (logged) if they do not load."""
        texts: list[str | None] = []
        for p in self._paths():
            texts.append(None if p is None else p.read_text(encoding="utf-8"))
        topology_text, values_text, gateways_text = texts
        assert topology_text is not None
        try:
            topology = load_topology(topology_text, str(self.inputs.topology))
            mode = self._mode(values_text)
            gateways = {
                peer: IPv4Address(a) for peer, a in json.loads(gateways_text or "{}").items()
            }
            if self.inputs.cluster not in topology.cluster_by_name:
                raise PeerwallError(f"{self.inputs.topology}: no cluster {self.inputs.cluster!r}")
            state = gateway_state(
                topology,
                self.inputs.cluster,
                mode,
                api_port=self.inputs.api_port,
                tunnel_pattern=self.inputs.tunnel_pattern,
                gateways=gateways,
                conncheck_port=self.inputs.conncheck_port,
            )
        except (PeerwallError, ValueError, TypeError, AttributeError) as e:
            log.error("inputs not loaded, keeping the last good state: %s", e)
            return False
        self.desired.cluster = state.cluster
        self.desired.load(state)
        self.loaded_digest = inputs_digest(texts)
        log.info(
            "loaded %s (cluster %s, default mode %s)",
            self.inputs.topology,
            state.cluster,
            mode.value,
        )
        return True

    def _mode(self, values_text: str | None) -> SecurityMode:
        if self.inputs.forced_mode is not None:
            return self.inputs.forced_mode
        if values_text is None or self.inputs.values is None:
            return self.inputs.default_mode
        return mode_from_values(values_text, str(self.inputs.values)) or self.inputs.default_mode

    async def run(self) -> None:
        while True:
            stamp = self._stamp()
            if stamp != self._stamps:
                self._stamps = stamp
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
                    self.synced.set()
                    self.changed.set()
            await asyncio.sleep(self.poll)
