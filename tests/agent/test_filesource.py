"""The file source: a big topology is parsed in a child process (its peak never in the agent),
with the same result as in the agent; a bad one is refused there too, and nothing changes. A set
of inputs is loaded whole or not at all."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pytest

from fscalls import before_each_call
from peerwall.agent import filesource
from peerwall.agent.desired import DesiredState
from peerwall.agent.filesource import FileInputs, FileSource, inputs_digest
from peerwall.lab.agents import values_text
from peerwall.lab.atomic_folder import publish
from peerwall.model import SecurityMode


def loaded(path: Path, child: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, DesiredState]:
    monkeypatch.setattr(filesource, "CHILD_PARSE_CHARS", 0 if child else 1 << 40)
    desired = DesiredState("C1", "pwt-*", None)
    ok = FileSource(FileInputs(path, "C1"), desired).load()
    return ok, desired


def test_a_topology_parsed_in_a_child_gives_the_same_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "three.yaml"
    path.write_text(
        resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    )
    ok_here, here = loaded(path, False, monkeypatch)
    ok_child, child = loaded(path, True, monkeypatch)
    assert ok_here and ok_child
    assert child.snapshot() == here.snapshot()
    assert any(child.snapshot().peers[p].members for p in child.peers)  # not trivially empty


def test_a_bad_topology_in_a_child_is_refused_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("clusters:\n  - {name: C1, podCIDR: 10.244.0.0/33}\n")
    with caplog.at_level(logging.ERROR, logger="peerwall.agent.file"):
        ok, desired = loaded(path, True, monkeypatch)
    assert not ok and desired.peers == ()
    assert "clusters[0].podCIDR" in caplog.text


def test_a_switch_while_the_files_are_read_is_read_again_never_loaded_half(
    tmp_path: Path,
) -> None:
    """The inputs in a folder that changes all at once (kubelet's ConfigMap volume, the lab's
    ``inputs``): the agent still opens the files one after another, and a switch between the
    two opens gives a new values file beside the old topology. That read is dropped, never
    loaded; the next one loads the new version whole."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    line = next(x for x in text.splitlines(keepends=True) if "name: job," in x)
    old = {"topology.yaml": text, "values.yaml": values_text(SecurityMode.FULL_POD_TO_POD)}
    new = {
        "topology.yaml": text.replace(line, ""),
        "values.yaml": values_text(SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION),
    }
    folder = str(tmp_path / "inputs")
    publish(folder, old)
    values = Path(folder, "values.yaml")
    source = FileSource(
        FileInputs(Path(folder, "topology.yaml"), "C1", values),
        DesiredState("C1", "pwt-*", None),
    )
    switched = []

    def switch_before_the_values_are_opened(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and not switched and args[0] == str(values):
            switched.append(True)
            publish(folder, new)

    with before_each_call(switch_before_the_values_are_opened):
        first = source.load()
    assert switched, "the values file was not opened through its path"
    assert (first, source.loaded_digest) == (False, None)
    assert source.load()
    assert source.loaded_digest == inputs_digest([new["topology.yaml"], new["values.yaml"], None])
    assert source.mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
