"""The file source: a big topology is parsed in a child process (its peak never in the agent),
with the same result as in the agent; a bad one is refused there too, and nothing changes. A set
of inputs is loaded whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import weakref
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from fscalls import before_each_call, recorded_watches
from peerwall.agent import filesource, filewatch
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


def _three_and_a_change() -> tuple[dict[str, str], dict[str, str]]:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    line = next(x for x in text.splitlines(keepends=True) if "name: job," in x)
    old = {"topology.yaml": text, "values.yaml": values_text(SecurityMode.FULL_POD_TO_POD)}
    new = {
        "topology.yaml": text.replace(line, ""),
        "values.yaml": values_text(SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION),
    }
    return old, new


def test_a_switch_while_the_files_are_read_is_read_again_never_loaded_half(
    tmp_path: Path,
) -> None:
    """The inputs in a folder that changes all at once (kubelet's ConfigMap volume, the lab's
    ``inputs``): the agent still opens the files one after another, and a switch between the
    two opens gives a new values file beside the old topology. That read is dropped, never
    loaded; the next one loads the new version whole."""
    old, new = _three_and_a_change()
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


async def _next_load(source: FileSource, change: Callable[[], None]) -> str | None:
    """The digest the running source loads after ``change`` (the test's timeout if never)."""
    source.changed.clear()
    change()
    await source.changed.wait()
    return source.loaded_digest


@pytest.mark.parametrize("layout", ["configmap folder", "plain file"])
def test_a_change_is_loaded_when_its_folder_says_so_without_waiting_for_a_poll(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inotify wakes the source: with both polls an hour long, the running source loads a new
    version of its inputs (a ConfigMap-style switch of ``..data``, or a file written over in
    place) at once, and it cannot have been a poll. Then the folder is watched no more."""
    old, new = _three_and_a_change()
    folder = tmp_path / "inputs"
    if layout == "plain file":
        folder.mkdir()
        topology = folder / "topology.yaml"
        topology.write_text(old["topology.yaml"])
        inputs = FileInputs(topology, "C1")
        expected = inputs_digest([new["topology.yaml"], None, None])

        def change() -> None:
            topology.write_text(new["topology.yaml"])
    else:
        publish(str(folder), old)
        inputs = FileInputs(folder / "topology.yaml", "C1", folder / "values.yaml")
        expected = inputs_digest([new["topology.yaml"], new["values.yaml"], None])

        def change() -> None:
            publish(str(folder), new)

    source = FileSource(inputs, DesiredState("C1", "pwt-*", None), poll=3600, watched_poll=3600)
    watches = recorded_watches(monkeypatch)

    async def scenario() -> str | None:
        task = asyncio.create_task(source.run())
        await source.listed.wait()
        assert source.watched
        digest = await _next_load(source, change)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        (watch,) = watches
        assert watch is not None
        with pytest.raises(OSError):  # the watch's descriptor is closed with the source
            os.fstat(watch.fileno())
        return digest

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == expected


def test_without_inotify_the_source_polls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = _three_and_a_change()
    folder = tmp_path / "inputs"
    publish(str(folder), old)
    monkeypatch.setattr(filewatch, "watch", lambda paths: None)
    source = FileSource(
        FileInputs(folder / "topology.yaml", "C1", folder / "values.yaml"),
        DesiredState("C1", "pwt-*", None),
        poll=0.01,
        watched_poll=3600,
    )

    async def scenario() -> str | None:
        task = asyncio.create_task(source.run())
        await source.listed.wait()
        assert not source.watched
        digest = await _next_load(source, lambda: publish(str(folder), new))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return digest

    digest = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert digest == inputs_digest([new["topology.yaml"], new["values.yaml"], None])


def test_the_folders_watched_are_the_files_own_and_their_targets(tmp_path: Path) -> None:
    publish(str(tmp_path / "inputs"), {"topology.yaml": "x"})
    link = tmp_path / "inputs" / "topology.yaml"
    folders = filewatch.folders_of([link, None, tmp_path / "elsewhere" / "gateways.json"])
    assert folders[0] == tmp_path / "inputs"
    assert folders[1].parent == tmp_path / "inputs" and folders[1].name.startswith("..")
    assert folders[2] == tmp_path / "elsewhere"
    assert filewatch.watch([tmp_path / "missing" / "topology.yaml"]) is None


class _Cycle:
    """Garbage only the cyclic collector frees, as the agent makes between loads (its status
    written by ``json.dump``, its HTTP connections)."""

    def __init__(self) -> None:
        self.me = self


def test_mode_switches_leave_the_garbage_made_between_them_to_the_young_collections(
    tmp_path: Path,
) -> None:
    """The soak's agent grew ~20 MiB an hour: each load of its small topology (every mode
    switch) moved every young object to the oldest generation, the garbage cycles made since the
    last collection included, where only a full collection finds them, and the moved objects
    never count towards starting one. After 40 switches, a young collection frees it all."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    folder = str(tmp_path / "inputs")
    modes = [SecurityMode.FULL_POD_TO_POD, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION]
    source = FileSource(
        FileInputs(Path(folder, "topology.yaml"), "C1", Path(folder, "values.yaml")),
        DesiredState("C1", "pwt-*", None),
    )
    garbage = []
    for i in range(40):
        publish(folder, {"topology.yaml": text, "values.yaml": values_text(modes[i % 2])})
        garbage.append(weakref.ref(_Cycle()))
        assert source.load()
        assert source.mode is modes[i % 2]
    gc.collect(1)  # the young generations' collection, as the interpreter runs it
    assert [r for r in garbage if r() is not None] == []
