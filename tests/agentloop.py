"""For tests that run the agent's loop (``peerwall.agent.run.Agent``) by hand: a source whose
events come from the test, and a wait for what the loop is to make true."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peerwall.agent.run import Agent
    from peerwall.compile.state import GatewayState


class HandSource:
    """A source the test drives: it sets ``listed`` and ``changed`` after changing the desired
    state itself."""

    def __init__(self) -> None:
        self.listed = asyncio.Event()
        self.changed = asyncio.Event()
        self.loaded_digest: str | None = None

    async def run(self) -> None:
        await asyncio.Event().wait()  # events come from the test


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Return once ``condition()`` holds; fail after ``timeout`` seconds (a guard against waiting
    for ever, not a bound on how fast)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.002)


async def started(agent: Agent, state: GatewayState) -> asyncio.Task[None]:
    """The agent's loop, running, once it wrote its first table: ``state``, loaded by its
    (hand) source."""
    task = asyncio.create_task(agent.run())
    agent.desired.load(state)
    agent.source.listed.set()
    agent.source.changed.set()
    await until(lambda: agent.ready)
    return task
