"""The demo: a topology brought up in namespaces, probed under each mode, torn down.

The orchestration lives here, below the CLI; the CLI only renders what each step yields.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from peerwall.lab import build as labs
from peerwall.lab.netns import list_namespaces
from peerwall.lab.probing import observe_lab
from peerwall.lab.state import lab_folder, locked
from peerwall.model import SecurityMode, Topology
from peerwall.policy import Comparison, TruthTable, expect
from peerwall.settings import LabSettings, ProbeSettings
from peerwall.verify.observe import Observed

Say = Callable[[str], None]


@dataclass(frozen=True)
class ModeRun:
    mode: SecurityMode
    expected: TruthTable
    observed: Observed
    wrong: Comparison
    differs_from_full: set[tuple[str, str]]
    """Observed cells that differ from the observed FullPodToPod table (empty for it)."""


def fresh_name() -> str:
    """A lab name of the demo's own (``demo`` and 8 hex digits), so that two demos on one
    machine never share a lab; one whose namespaces exist is never chosen."""
    while True:
        name = f"demo{secrets.token_hex(4)}"
        if not list_namespaces(f"pw-{name}-"):
            return name


def run(
    name: str,
    topology: Topology,
    text: str,
    source: str,
    modes: Sequence[SecurityMode],
    *,
    lab: LabSettings | None = None,
    probe: ProbeSettings = ProbeSettings(),
    say: Say = lambda _m: None,
    progress: Callable[[str], Callable[[int, int], None] | None] = lambda _label: None,
) -> Iterator[ModeRun]:
    """Yield one ``ModeRun`` per mode; the lab is removed when the iteration ends, however.

    The lab's lock is held from before it is built until it is removed, and an existing lab of
    that name is refused, never replaced: nobody else changes or removes it mid-probe."""
    lab = lab or LabSettings()
    with locked(name, lab):
        yield from _run(name, topology, text, source, modes, lab, probe, say, progress)


def _run(
    name: str,
    topology: Topology,
    text: str,
    source: str,
    modes: Sequence[SecurityMode],
    lab: LabSettings,
    probe: ProbeSettings,
    say: Say,
    progress: Callable[[str], Callable[[int, int], None] | None],
) -> Iterator[ModeRun]:
    plan = labs.up(name, topology, text, source, modes[0], lab, progress=say, replace=False)
    full: TruthTable | None = None
    try:
        for mode in modes:
            if mode is not modes[0]:  # `up` already enforced the first one
                done = labs.set_mode(name, mode, lab)
                say(f"switched to {mode.value} in {done.seconds * 1000:.0f} ms")
            observed = observe_lab(
                plan,
                mode.value,
                lab,
                probe,
                progress(f"probing under {mode.value}"),
                lab_folder(name, lab),
            )
            expected = expect(topology, mode).table
            if mode is SecurityMode.FULL_POD_TO_POD:
                full = observed.table
            highlight = (
                observed.table.differing(full)
                if full is not None and mode is not SecurityMode.FULL_POD_TO_POD
                else set()
            )
            yield ModeRun(mode, expected, observed, expected.compare(observed.table), highlight)
    finally:
        labs.down(name, lab)
