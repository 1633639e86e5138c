"""The file source: a big topology is parsed in a child process (its peak never in the agent),
with the same result as in the agent; a bad one is refused there too, and nothing changes."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pytest

from peerwall.agent import filesource
from peerwall.agent.desired import DesiredState
from peerwall.agent.filesource import FileInputs, FileSource


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
