"""The lab changes an agent's inputs all at once: at no moment of ``write_inputs`` can an agent
read a set of inputs that is neither the old one nor the new one (a new topology with the old
mode, say), which it would enforce under a digest the lab never waits for.

Files only: no namespace, no agent process. The agent's own reading (``FileSource.read``, on the
paths of the agent's command line) is run before every file-system call the lab makes, so every
state the folder passes through is read."""

from __future__ import annotations

import secrets
from importlib import resources
from pathlib import Path

from fscalls import before_each_call
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
