"""The lab changes an agent's inputs all at once: at no moment of ``write_inputs`` can an agent
read a set of inputs that is neither the old one nor the new one (a new topology with the old
mode, say), which it would enforce under a digest the lab never waits for.

Files only: no namespace, no agent process. The agent's own reading (``FileSource.read``, on the
paths of the agent's command line) is run before every file-system call the lab makes, so every
state the folder passes through is read."""

from __future__ import annotations

import os
import secrets
import threading
from importlib import resources
from pathlib import Path

import pytest

from fscalls import before_each_call, recorded_watches
from peerwall.agent.desired import DesiredState
from peerwall.agent.filesource import FileInputs, FileSource, inputs_digest
from peerwall.lab import agents
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology
from peerwall.settings import LabSettings

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def agent_source(plan: LabPlan, settings: LabSettings, cluster: str) -> FileSource:
    """The file source ``cluster``'s agent builds from its command line."""
    args = dict(
        a[2:].split("=", 1) for a in agents.agent_command(plan, settings, cluster) if "=" in a
    )
    assert args["source"].startswith("file:")
    inputs = FileInputs(
        Path(args["source"].removeprefix("file:")),
        cluster,
        Path(args["values"]),
        Path(args["gateways"]),
    )
    return FileSource(inputs, DesiredState(cluster, "pwt-*", None))


def test_an_agent_never_reads_half_of_a_change_of_inputs(tmp_path: Path) -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    plan = LabPlan(f"t{secrets.token_hex(3)}", load_topology(text, "three-clusters.yaml"))
    settings = LabSettings(state_dir=str(tmp_path / "labs"))
    line = next(x for x in text.splitlines(keepends=True) if "name: job," in x)
    without = text.replace(line, "")
    sources = {c.name: agent_source(plan, settings, c.name) for c in plan.topology.clusters}
    old = agents.write_inputs(plan, settings, FULL, text)
    seen: list[tuple[str, str, str]] = []

    def read_all(event: str, args: tuple[object, ...]) -> None:
        for cluster, source in sources.items():
            got = source.read()
            if got is not None:
                seen.append((cluster, inputs_digest(got[1]), f"before {event}{args[:1]}"))

    # A change of every input at once: topology, mode and (through the topology) nothing else.
    with before_each_call(read_all):
        new = agents.write_inputs(plan, settings, SEG, without)
    read_all("the end", ())
    assert all(old[c] != new[c] for c in old)
    assert len(seen) > 3 * len(sources), "the lab's writes were not seen"
    half = [(c, when) for c, digest, when in seen if digest not in (old[c], new[c])]
    assert half == [], f"an agent could read a half-written change: {half[:3]}"
    assert [d for c, d, _ in seen[-len(sources) :]] == [new[c] for c in sources]


def test_waiting_for_agents_wakes_when_a_status_is_replaced_not_by_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lab waits for its agents between looks at their status files; a status written by
    rename (as agents write it) ends the pause at once, and without one the pause lasts
    ``LOOK_EVERY``: here an hour, so only the wake-up can end the test's pause."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    plan = LabPlan(f"t{secrets.token_hex(3)}", load_topology(text, "three-clusters.yaml"))
    settings = LabSettings(state_dir=str(tmp_path / "labs"))
    agents.write_inputs(plan, settings, FULL, text)
    status = Path(agents._paths(plan, settings, "C1")["status"])
    status.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(agents, "LOOK_EVERY", 3600.0)
    watches = recorded_watches(monkeypatch)

    def write_status() -> None:
        tmp = status.with_suffix(".tmp")
        tmp.write_text('{"ready": true}')
        os.rename(tmp, status)

    with agents._status_changes(plan, settings, ["C1", "C2"]) as pause:
        writer = threading.Timer(0.2, write_status)
        writer.start()
        while not status.exists():  # the temporary file's creation wakes it too
            pause()
        writer.join()
    assert watches and watches[0] is not None  # woken by inotify, not a 20 ms poll
    assert agents.status(plan, settings, "C1") == {"ready": True}


def test_without_a_status_folder_to_watch_the_lab_polls(tmp_path: Path) -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    plan = LabPlan(f"t{secrets.token_hex(3)}", load_topology(text, "three-clusters.yaml"))
    settings = LabSettings(state_dir=str(tmp_path / "nowhere"))
    with agents._status_changes(plan, settings, ["C1"]) as pause:
        pause()  # a 20 ms sleep: returns although nothing can wake it
