"""The agent's loop with a hand-driven source and the in-memory nft: fail-closed until synced,
bursts coalesced into one transaction, and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import urllib.request
from collections.abc import Sequence
from importlib import resources
from ipaddress import IPv4Address

import pytest

from agentloop import HandSource, started, until
from peerwall.agent import run
from peerwall.agent.desired import DesiredState
from peerwall.agent.run import FLOWS_INLINE_S, INLINE_ELEMENTS, Agent
from peerwall.compile import ctmark, names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.dataplane.conntrack import Cleared
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft
from peerwall.nft.netlink import SetEdit
from peerwall.settings import AgentSettings

FIRST = int(IPv4Address("10.244.16.0"))
"""Local pod addresses for bursts (inside C1's pod CIDR in three-clusters.yaml)."""


def get(agent: Agent, path: str) -> tuple[int, str]:
    assert agent.address is not None
    host, port = agent.address[:2]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_the_loop_end_to_end() -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    nft = FakeNft()
    desired = DesiredState("C1", "pwt-*", 12345)
    source = HandSource()
    agent = Agent(
        source, desired, nft, None, AgentSettings(metrics_address="127.0.0.1:0", coalesce=0.05)
    )

    async def scenario() -> None:
        task = asyncio.create_task(agent.run())
        await until(lambda: agent.address is not None)
        # Fail-closed: a table with no peers, not ready.
        table = nft.ruleset("inet", "peerwall")
        assert table is not None and not table.map(names.MAP_FORWARD).elements
        assert get(agent, "/readyz")[0] == 503
        assert get(agent, "/healthz")[0] == 200
        desired.load(state)
        source.listed.set()
        source.changed.set()
        await until(lambda: agent.ready)
        assert get(agent, "/readyz")[0] == 200
        full_then = agent.enforcer.table.counts.transactions["full"]
        # A burst of 100 pod events becomes one transaction.
        scripts = len(nft.scripts)
        for i in range(100):
            desired.contribute(
                f"pod/{i}", "C2", SetKind.BACKENDS, [IPv4Address(f"10.244.9.{i + 1}")]
            )
            source.changed.set()
        await until(lambda: len(nft.scripts) > scripts and not source.changed.is_set())
        await asyncio.sleep(0.1)
        assert len(nft.scripts) == scripts + 1
        assert (
            nft.scripts[-1].count("add element") == 1 and nft.scripts[-1].count("10.244.9.") == 100
        )
        assert agent.enforcer.table.counts.transactions["full"] == full_then == 1
        code, body = get(agent, "/metrics")
        assert code == 200
        assert 'peerwall_transactions_total{kind="elements"} 1.0' in body
        assert 'peerwall_set_elements{peer="C2",set="backends"}' in body
        assert "peerwall_event_to_kernel_seconds_count 2.0" in body
        assert 'peerwall_dropped_packets_total{hook="forward",peer="C2",reason="spoofed"}' in body
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_a_refused_step_is_counted_and_not_reported_enforced_until_the_whole_table() -> None:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    topology = load_topology(text, "three")
    full = gateway_state(topology, "C1", SecurityMode.FULL_POD_TO_POD)
    seg = gateway_state(topology, "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    nft = FakeNft()
    desired = DesiredState("C1", "pwt-*", 12345)
    source = HandSource()
    agent = Agent(source, desired, nft, None, AgentSettings(metrics_address="127.0.0.1:0"))
    reports: list[tuple[str | None, int, int]] = []
    """What each status write says: the inputs' digest, whole tables written, refusals."""
    agent._write_status = lambda: reports.append(  # type: ignore[method-assign]
        (
            agent.applied_digest,
            agent.enforcer.table.counts.transactions["full"],
            agent.enforcer.table.counts.apply_failures,
        )
    )

    async def scenario() -> None:
        task = asyncio.create_task(agent.run())
        await until(lambda: agent.address is not None)
        desired.load(full)
        source.loaded_digest = "full"
        source.listed.set()
        source.changed.set()
        await until(lambda: agent.applied_digest == "full")
        # A mode step (C2 narrowed to segregation) that the kernel refuses.
        nft.fail_next = "Error: Could not process rule: No such file or directory"
        desired.load(seg)
        source.loaded_digest = "seg"
        source.changed.set()
        await until(lambda: agent.applied_digest == "seg")
        code, body = get(agent, "/metrics")
        assert code == 200 and "peerwall_apply_failures_total 1.0" in body
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert ("full", 1, 1) in reports  # the refusal, reported under the previous inputs
    assert [r for r in reports if r[0] == "seg"] and all(
        whole == 2 for digest, whole, _ in reports if digest == "seg"
    ), reports
    assert agent.enforcer.table.counts.transactions["mode"] == 0
    assert nft.ruleset("inet", "peerwall") == build(seg)


def test_the_api_versions_reported_are_those_the_committed_table_was_built_from() -> None:
    """``source_versions`` (the Kubernetes source's resourceVersions) is what one waits on for a
    change of the API to be enforced: it is the source's as the step began, reported once the
    table is committed; a refused step keeps the previous ones until the whole table is in."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    topology = load_topology(text, "three")
    full = gateway_state(topology, "C1", SecurityMode.FULL_POD_TO_POD)
    seg = gateway_state(topology, "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    nft = FakeNft()
    source = HandSource()
    source.versions = {}  # type: ignore[attr-defined]
    desired = DesiredState("C1", "pwt-*", 12345)
    agent = Agent(source, desired, nft, None, AgentSettings(metrics_address=None))
    reports: list[tuple[dict[str, str] | None, SecurityMode | None]] = []
    """What each status write says, and the mode C2's peer then has in the kernel."""

    def written() -> None:
        table = nft.ruleset("inet", "peerwall")
        mode = None
        if table is not None and agent.ready:
            mode = SecurityMode.FULL_POD_TO_POD if build(full) == table else mode
            mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION if build(seg) == table else mode
        reports.append((agent.status().get("source_versions"), mode))

    agent._write_status = written  # type: ignore[method-assign]

    async def scenario() -> None:
        task = asyncio.create_task(agent.run())
        desired.load(full)
        source.versions = {"peeringsecurities": "5", "pods": "3"}  # type: ignore[attr-defined]
        source.listed.set()
        source.changed.set()
        await until(lambda: agent.applied_versions.get("peeringsecurities") == "5")
        nft.fail_next = "Error: Could not process rule: No such file or directory"
        desired.load(seg)
        source.versions = {"peeringsecurities": "7", "pods": "3"}  # type: ignore[attr-defined]
        source.changed.set()
        await until(lambda: agent.applied_versions.get("peeringsecurities") == "7")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert reports[0] == (None, None)  # fail-closed: no versions claimed
    five = {"peeringsecurities": "5", "pods": "3"}
    seven = {"peeringsecurities": "7", "pods": "3"}
    assert (five, SecurityMode.FULL_POD_TO_POD) in reports
    assert all(mode is SecurityMode.FULL_POD_TO_POD for v, mode in reports if v == five)
    assert [r for r in reports if r[0] == seven] and all(
        mode is SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION for v, mode in reports if v == seven
    ), reports


def test_a_burst_is_waited_for_until_a_quarter_of_the_window_passes_without_an_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The burst window is waited in quarters: a burst whose events stop is committed a quarter
    after its last one, one that goes on waits the whole window, a lone event not at all. The
    sleeps are recorded (no clock read): each quarter, the test says whether an event came."""
    source = HandSource()
    agent = Agent(
        source,
        DesiredState("C1", "pwt-*", None),
        FakeNft(),
        None,
        AgentSettings(burst_window=0.4, metrics_address=None),
    )
    real_sleep = asyncio.sleep
    slept: list[float] = []
    arrivals: list[bool] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if delay > 0 and arrivals and arrivals.pop(0):
            source.changed.set()  # an event of the burst came during this quarter
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    def drain(burst: bool, during: list[bool]) -> list[float]:
        slept.clear()
        arrivals[:] = during
        if burst:
            source.changed.set()  # another event in the loop's next turn
        else:
            source.changed.clear()
        asyncio.run(agent._drain())
        assert not source.changed.is_set()
        return slept

    assert drain(False, []) == [0]  # a lone event: one turn
    assert drain(True, [True, False]) == [0, 0.1, 0.1]  # ended in the second quarter
    assert drain(True, [True, True, True, True]) == [0, 0.1, 0.1, 0.1, 0.1]  # the whole window


def test_a_bursts_element_step_is_committed_in_the_loop_and_only_a_bigger_one_in_a_thread() -> None:
    """A worker thread beside a busy loop waits for the interpreter lock until the loop goes
    idle (``run.INLINE_ELEMENTS``): a burst's element step (hundreds of elements) is committed in
    the loop's own thread; only a step of more than ``INLINE_ELEMENTS`` elements goes to another."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    committed_in: list[tuple[int, int]] = []
    """(elements, thread) of each element batch."""

    class Recording(FakeNft):
        def edit_elements(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
            super().edit_elements(family, table, edits)
            n = sum(len(e.add) + len(e.delete) for e in edits)
            committed_in.append((n, threading.get_ident()))

    desired = DesiredState("C1", "pwt-*", 12345)
    source = HandSource()
    agent = Agent(source, desired, Recording(), None, AgentSettings(metrics_address=None))

    async def burst(start: int, count: int) -> None:
        for i in range(start, start + count):
            desired.contribute(f"pod/{i}", "C2", SetKind.BACKENDS, [IPv4Address(FIRST + i)])
            source.changed.set()
        await until(lambda: sum(n for n, _ in committed_in) == start + count)

    async def scenario() -> None:
        task = await started(agent, state)
        committed_in.clear()  # the whole table's sets, filled by element batches too
        await burst(0, 700)
        await burst(700, INLINE_ELEMENTS + 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    loop_thread = threading.get_ident()
    asyncio.run(scenario())
    assert committed_in[0] == (700, loop_thread)
    assert committed_in[1][0] == INLINE_ELEMENTS + 1 and committed_in[1][1] != loop_thread


def test_the_flows_a_step_forbids_are_cleared_in_the_loop_until_a_clearing_is_slow() -> None:
    """A worker thread beside a busy loop waits for the interpreter lock until the loop idles,
    and the step (and every step after it) waits for that thread: the flows a narrowing step
    forbids are cleared in the loop while a clearing is quick (``run.FLOWS_INLINE_S``), and in
    a worker thread once one was slow."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    cleared_in: list[int] = []
    """The thread of each clearing."""
    slow = [False]

    class Flows:
        def delete_where(self, reason, about=None, marks=None):  # type: ignore[no-untyped-def]
            cleared_in.append(threading.get_ident())
            if slow[0]:  # a big flow table: more CPU time than the bound (parsing its dump)
                end = time.thread_time() + 2 * FLOWS_INLINE_S
                while time.thread_time() < end:
                    pass
            return Cleared()

    desired = DesiredState("C1", "pwt-*", 12345)
    source = HandSource()
    agent = Agent(source, desired, FakeNft(), Flows(), AgentSettings(metrics_address=None))

    async def narrow(i: int) -> None:
        address = [IPv4Address(FIRST + i)]
        desired.contribute(f"pod/{i}", "C2", SetKind.BACKENDS, address)
        source.changed.set()
        await until(lambda: desired.pending_since is None)
        await agent.idle()
        done = len(cleared_in)
        desired.withdraw(f"pod/{i}")  # narrows C2: its flows are checked
        source.changed.set()
        await until(lambda: len(cleared_in) == done + 1)
        await agent.idle()

    async def scenario() -> None:
        task = await started(agent, state)
        await agent.idle()
        assert cleared_in[0] != threading.get_ident()  # the whole table's: size unknown
        cleared_in.clear()
        await narrow(0)
        slow[0] = True
        await narrow(1)  # in the loop, and slow
        await narrow(2)  # so in a thread
        slow[0] = False
        await narrow(3)  # quick again (in the thread)
        await narrow(4)  # so in the loop
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    loop_thread = threading.get_ident()
    asyncio.run(scenario())
    assert [t == loop_thread for t in cleared_in] == [True, True, False, False, True]


@pytest.mark.parametrize("owed_s", [60.0, 0.0])
def test_a_bursts_narrowing_steps_clear_their_flows_once_after_it(
    monkeypatch: pytest.MonkeyPatch, owed_s: float
) -> None:
    """While changes keep coming (a burst), a narrowing element step leaves its flows to a later
    step (``run.FLOWS_OWED_S`` after the first at most): one clearing after the burst, judged
    against every peer the burst narrowed, and the inputs not reported enforced before it. With
    no time allowed (0 s), each narrowing step clears its own."""
    monkeypatch.setattr(run, "FLOWS_OWED_S", owed_s)
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    cleared: list[frozenset[str]] = []
    """The peers each clearing judged."""

    class Flows:
        def delete_where(self, reason, about=None, marks=None):  # type: ignore[no-untyped-def]
            cleared.append(frozenset(m for m, _ in marks or ()))
            return Cleared()

    desired = DesiredState("C1", "pwt-*", 12345)
    source = HandSource()
    # A short window: steps come every few hundred loop turns (a burst is told by its turns).
    settings = AgentSettings(metrics_address=None, burst_window=0.0002)
    agent = Agent(source, desired, FakeNft(), Flows(), settings)
    counts = agent.enforcer.table.counts
    peers = ("C2", "C3")
    pods = 4000

    async def scenario() -> None:
        task = await started(agent, state)
        for i in range(pods):  # each pod backs a service reflected to C2 or C3
            desired.contribute(f"pod/{i}", peers[i % 2], SetKind.BACKENDS, [IPv4Address(FIRST + i)])
        source.changed.set()
        await until(lambda: desired.pending_since is None)
        await agent.idle()
        cleared.clear()
        agent.applied_digest = source.loaded_digest = "before"
        steps = counts.transactions["elements"]
        source.loaded_digest = "after"
        # The burst: a pod deleted a loop turn, until the loop made 3 steps or more in it.
        i = 0
        while counts.transactions["elements"] < steps + 3 or i < 20:
            assert i < pods, "the burst ended before the loop made 3 steps"
            desired.withdraw(f"pod/{i}")
            source.changed.set()
            i += 1
            await asyncio.sleep(0)
            if owed_s and cleared:  # nothing cleared while it lasts,
                pytest.fail("a narrowing step of the burst cleared its flows during it")
            if owed_s:  # nor the inputs reported enforced
                assert agent.applied_digest == "before"
        await until(lambda: desired.pending_since is None and not source.changed.is_set())
        await agent.idle()
        made = counts.transactions["elements"] - steps
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        judged = {m for c in cleared for m in c}
        assert judged >= {ctmark.from_peer(p) for p in peers}  # both peers the burst narrowed
        if owed_s:
            assert len(cleared) == 1  # once, after the burst
        else:
            assert len(cleared) == made  # each step its own
        assert agent.applied_digest == "after"

    asyncio.run(scenario())
