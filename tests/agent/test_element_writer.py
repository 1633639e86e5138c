"""The element writer process (``dataplane.element_writer``) under the real agent loop, on the
real kernel: a burst's batch goes to the writer and its answer makes the step (nothing counts as
applied before it), a refusal it carries back goes through the table's one fallback policy (the
whole table), and when the writer dies the agent commits in its own process and converges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from importlib import resources
from ipaddress import IPv4Address

import pytest

from agentloop import HandSource, until
from peerwall.agent import run
from peerwall.agent.desired import DesiredState
from peerwall.agent.run import WRITER_ELEMENTS, Agent
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import SetKind
from peerwall.dataplane.element_writer import ElementWriter
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.model import SecurityMode, load_topology
from peerwall.settings import AgentSettings

pytestmark = pytest.mark.lab

FIRST = int(IPv4Address("10.244.16.0"))
"""Local pod addresses for bursts (inside C1's pod CIDR in three-clusters.yaml)."""
BURST = WRITER_ELEMENTS + 68
"""A burst big enough to go to the writer."""
SET = names.peer_set("C2", SetKind.BACKENDS)


def kernel_equals_desired(nft: LibNft, desired: DesiredState) -> bool:
    """The kernel's sets equal the desired table's, read until two reads agree: a listing is a
    netlink dump in chunks, and a big set's hash table grown by the kernel in the background
    between two chunks can make one listing miss some elements and repeat others."""
    want = {s.name: s for s in build(desired.snapshot()).sets}
    last = None
    for _ in range(20):
        live = read_table(nft, "inet", "peerwall")
        sets = None if live is None else {s.name: s for s in live.sets}
        if sets == last:
            break
        last = sets
    return last == want


Scenario = Callable[[Agent, HandSource, ElementWriter], Awaitable[None]]
"""What a test does with the running agent, its source and the writer it started with."""


def run_agent(netns: str, scenario: Scenario) -> None:
    """Start the agent (a whole table of three-clusters.yaml's C1, the writer running), run
    ``scenario``, stop the agent; its writer must be gone afterwards."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    state = gateway_state(
        load_topology(text, "three"), "C1", SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    )
    desired = DesiredState("C1", state.tunnel_pattern, state.conncheck_port)
    source = HandSource()
    pids: list[int] = []

    async def main() -> None:
        with LibNft(netns) as nft:
            agent = Agent(source, desired, nft, None, AgentSettings(metrics_address=None))
            task = asyncio.create_task(agent.run())
            desired.load(state)
            source.listed.set()
            source.changed.set()
            try:
                await until(lambda: agent.ready and agent.writer is not None and agent.writer.ready)
                writer = agent.writer
                assert writer is not None
                pids.append(writer.pid)
                # A batch task: woken by a batch, it does not preempt the agent that wrote it.
                assert os.sched_getscheduler(writer.pid) == os.SCHED_BATCH
                await scenario(agent, source, writer)
                await until(lambda: desired.pending_since is None and not source.changed.is_set())
                await agent.idle()
                assert kernel_equals_desired(nft, desired)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert agent.writer is None

    asyncio.run(main())
    for pid in pids:  # reaped: no process of that pid is left (not even a zombie)
        assert not os.path.exists(f"/proc/{pid}")


def burst(agent: Agent, source: HandSource, start: int, count: int) -> None:
    for i in range(start, start + count):
        agent.desired.contribute(f"pod/{i}", "C2", SetKind.BACKENDS, [IPv4Address(FIRST + i)])
    source.changed.set()


def test_a_bursts_batch_goes_to_the_writer_and_counts_as_applied_only_once_answered(
    netns: str,
) -> None:
    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        added, elements = counts.elements_added, counts.transactions["elements"]
        agent.applied_digest = source.loaded_digest = "before"
        os.kill(writer.pid, signal.SIGSTOP)  # the batch waits in the channel
        try:
            source.loaded_digest = "after"
            burst(agent, source, 0, BURST)
            await until(lambda: agent.writing)
            for _ in range(20):  # turns of the loop: nothing is applied without the answer
                await asyncio.sleep(0)
            assert counts.elements_added == added and counts.transactions["elements"] == elements
            assert agent.applied_digest == "before"
        finally:
            os.kill(writer.pid, signal.SIGCONT)
        await until(lambda: not agent.writing)
        assert writer.batches == 1
        assert counts.elements_added == added + BURST
        assert counts.transactions["elements"] == elements + 1
        assert agent.applied_digest == "after"
        # A lone event is committed in the agent's process (``WRITER_ELEMENTS``).
        burst(agent, source, BURST, 1)
        await until(lambda: counts.elements_added == added + BURST + 1)
        assert writer.batches == 1

    run_agent(netns, scenario)


def test_a_refusal_the_writer_carries_back_makes_the_whole_table_be_written(netns: str) -> None:
    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        burst(agent, source, 0, BURST)
        await until(lambda: writer.batches == 1 and not agent.writing)
        full = counts.transactions["full"]
        # Someone deletes an element behind the agent's back: the agent's delete is refused.
        nft = agent.enforcer.table.nft
        nft.run(f"delete element inet peerwall {SET} {{ {IPv4Address(FIRST)} }}\n")
        for i in range(BURST):
            agent.desired.withdraw(f"pod/{i}")
        source.changed.set()
        await until(lambda: counts.apply_failures == 1)
        assert writer.batches == 2  # the refusal came back from the writer
        await until(lambda: counts.transactions["full"] == full + 1)
        assert agent.writer is writer  # a refusal is not the writer's death

    run_agent(netns, scenario)


def test_when_the_writer_dies_the_agent_commits_in_its_own_process(netns: str) -> None:
    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        os.kill(writer.pid, signal.SIGKILL)
        await until(lambda: agent.writer is None)  # noticed while idle
        added, failures = counts.elements_added, counts.apply_failures
        burst(agent, source, 0, BURST)
        await until(lambda: counts.elements_added == added + BURST)
        assert counts.apply_failures == failures and writer.batches == 0

    run_agent(netns, scenario)


def test_when_the_writer_dies_with_a_batch_the_whole_table_is_written(netns: str) -> None:
    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        full = counts.transactions["full"]
        os.kill(writer.pid, signal.SIGSTOP)
        burst(agent, source, 0, BURST)
        await until(lambda: agent.writing)
        os.kill(writer.pid, signal.SIGKILL)  # the batch's fate is unknown
        await until(lambda: agent.writer is None)
        await until(lambda: counts.transactions["full"] == full + 1)
        assert counts.apply_failures == 1
        added = counts.elements_added
        burst(agent, source, BURST, BURST)  # and later bursts are committed here
        await until(lambda: counts.elements_added == added + BURST)

    run_agent(netns, scenario)


def test_a_writer_that_does_not_answer_is_killed_and_the_whole_table_written(
    netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "WRITER_TIMEOUT_S", 0.05)

    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        full = counts.transactions["full"]
        os.kill(writer.pid, signal.SIGSTOP)  # stuck: never answers
        burst(agent, source, 0, BURST)
        await until(lambda: agent.writer is None)
        assert writer.process.returncode == -signal.SIGKILL
        await until(lambda: counts.transactions["full"] == full + 1)
        assert counts.apply_failures == 1

    run_agent(netns, scenario)


def test_a_step_bigger_than_the_channels_buffer_goes_through_the_writer_whole(
    netns: str,
) -> None:
    """20,000 addresses: a 320 KB frame (more than the socket pair's buffer: written as the
    writer reads it) and a netlink datagram of several messages (the send buffer grown)."""

    async def scenario(agent: Agent, source: HandSource, writer: ElementWriter) -> None:
        counts = agent.enforcer.table.counts
        added = counts.elements_added
        burst(agent, source, 0, 20_000)
        await until(lambda: counts.elements_added == added + 20_000)
        assert writer.batches == 1 and counts.apply_failures == 0

    run_agent(netns, scenario)
