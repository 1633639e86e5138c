"""A deleted table is repaired on nftables' notification, not at the next resync (issue 14.5).

The agents here read their tables back once an hour (``agent_resync_interval=3600``) and the test
never asks them to (no SIGUSR1): only the notification that another process changed the table can
bring it back. A connection attempted while the table was gone does not survive the repair.

The agent tells its own commits from others' by the netlink socket that committed
(``dataplane.nftevents``), so a process that merely shares its name is an intruder like any other.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path

import pytest

from hostile import connect, echo_server, nft, roundtrip
from labkit import LabUp, frozen_agent, table_back, tables_as_built
from peerwall.lab import agents
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode, load_topology
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


@pytest.fixture(scope="module")
def three_lab(module_lab_up: LabUp) -> LabPlan:
    """One three-cluster lab for the module's tests (tests/conftest.py's SHARED_MODULES runs them
    on one xdist worker): each deletes C1's table and waits until the agent has put it back and
    counted the repair (counts compared with their value before, not with zero), so the next
    finds the lab as it was built; and still no resync for an hour."""
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return module_lab_up(load_topology(text, "three"), text, SEG, agent_resync_interval=3600)


@pytest.fixture
def three(three_lab: LabPlan) -> LabPlan:
    return tables_as_built(three_lab)


def cut(sock: socket.socket) -> bool:
    try:
        return roundtrip(sock, b"still there?") != b"still there?"
    except OSError:
        return True


def repairs(plan: object, cluster: str) -> int:
    return int((agents.status(plan, LabSettings(), cluster) or {}).get("repairs", 0))  # type: ignore[arg-type]


def wait_repaired(plan: object, before: int) -> None:
    """The agent's status counts the repair (it follows the table's return)."""
    deadline = time.monotonic() + 60  # a guard against waiting for ever, not a bound
    while repairs(plan, "C1") <= before:
        assert time.monotonic() < deadline, "the repair was not counted"
        time.sleep(0.01)


def test_a_deleted_table_comes_back_on_the_event_and_cuts_what_was_made_meanwhile(
    three: LabPlan,
) -> None:
    # C1 and C3 do not overlap: with C1's table gone, local3 (C3) reaches tool (C1), which
    # segregation forbids.
    plan = three
    gw = plan.gateway_ns("C1")
    with echo_server(plan.pod_ns("tool")):
        # The window held open (the agent stopped) so that a connection surely gets through.
        before = repairs(plan, "C1")
        with frozen_agent(plan, "C1"):
            nft(gw, "delete", "table", "inet", "peerwall")
            sneaked = connect(plan, "local3", "tool", timeout=0.5)
            assert roundtrip(sneaked, b"in") == b"in"
        with sneaked:
            table_back(plan, "C1")
            wait_repaired(plan, before)
            assert cut(sneaked)
        # The agent running: whatever a connection attempted right after the deletion did, once
        # the table is back it carries nothing.
        for attempt in range(5):
            before = repairs(plan, "C1")
            nft(gw, "delete", "table", "inet", "peerwall")
            try:
                sock = connect(plan, "local3", "tool", timeout=0.5)
            except OSError:
                sock = None
            table_back(plan, "C1")
            wait_repaired(plan, before)
            if sock is not None:
                with sock:
                    assert cut(sock), f"attempt {attempt}"


def test_a_process_of_the_agents_own_name_is_noticed(three: LabPlan, tmp_path: Path) -> None:
    """``nft`` run under the agent's process name deletes the table while the agent is stopped,
    so that it has exited when the agent reads the notification: the agent used to take such a
    commit for its own (same name, no such process) and leave the table deleted until the
    resync, an hour away here. The commit came through another socket than the agent's: the
    table is repaired on the notification."""
    plan = three
    status = agents.status(plan, LabSettings(), "C1") or {}
    comm = Path(f"/proc/{status['pid']}/comm").read_text().strip()
    impostor = tmp_path / comm
    impostor.symlink_to(shutil.which("nft") or "nft")
    gw = plan.gateway_ns("C1")
    before = repairs(plan, "C1")
    with frozen_agent(plan, "C1"):
        subprocess.run(
            ["ip", "netns", "exec", gw, str(impostor), "delete", "table", "inet", "peerwall"],
            check=True,
        )
    table_back(plan, "C1")
    wait_repaired(plan, before)
