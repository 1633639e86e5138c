"""The agents in the lab: crash safety, drift repair, and what they report (issue 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest

from labkit import LabUp, seed_topology
from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode
from peerwall.policy import Verdict, expect
from peerwall.settings import LabSettings, ProbeSettings

BACKENDS = SetKind.BACKENDS

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def pid_of(plan, cluster: str) -> int:  # type: ignore[no-untyped-def]
    with open(
        os.path.join(os.environ["PEERWALL_STATE_DIR"], plan.name, "agents", f"{cluster}.pid")
    ) as f:
        return int(f.read())


def test_sigkill_in_the_middle_of_work_never_opens_anything(lab_up: LabUp, seed_text: str) -> None:
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, SEG)
    settings = LabSettings()
    never = {
        (s, d)
        for s, d, v in expect(topology, SEG).table.cells()
        if v is Verdict.NO and expect(topology, FULL).table[s, d] is Verdict.NO
    }
    seen_open: list[tuple[str, str, str]] = []
    stop = threading.Event()
    runs = [0]

    def prober() -> None:
        while not stop.is_set():
            observed = observe_lab(plan, SEG.value, probe=ProbeSettings(timeout=0.3))
            runs[0] += 1
            for s, d in never:
                v = observed.table[s, d]
                if v not in (Verdict.NO,):
                    seen_open.append((s, d, v.value))

    thread = threading.Thread(target=prober)
    thread.start()
    try:
        for i in range(6):
            mode = FULL if i % 2 == 0 else SEG
            digests = agents.write_inputs(plan, settings, mode, seed_text)
            time.sleep(0.005 * i)  # somewhere in the middle of the agent's work
            for cluster in ("C1", "C2"):
                os.kill(pid_of(plan, cluster), signal.SIGKILL)
            agents.stop(plan, settings)  # reaps them
            agents.start(plan, settings)
            converged = agents.wait(plan, settings, digests)
            assert set(converged.statuses) == {"C1", "C2"}
    finally:
        stop.set()
        thread.join()
    assert runs[0] >= 2
    assert not seen_open, seen_open[:10]
    # And it converged: the last mode is enforced exactly.
    last = SEG  # i = 5
    final = observe_lab(plan, last.value, probe=ProbeSettings(timeout=0.5))
    assert not expect(topology, last).table.compare(final.table)


def test_drift_is_repaired_within_the_resync_interval(lab_up: LabUp, seed_text: str) -> None:
    plan = lab_up(seed_topology(seed_text), seed_text, SEG, agent_resync_interval=1)
    settings = LabSettings()
    gw = plan.gateway_ns("C1")
    for damage in (
        ["flush", "table", "inet", "peerwall"],
        ["delete", "element", "inet", "peerwall", names.peer_set("C2", BACKENDS), "{ 10.244.0.2 }"],
    ):
        before = agents.status(plan, settings, "C1") or {}
        subprocess.run(["ip", "netns", "exec", gw, "nft", *damage], check=True)
        # (No check that the drift shows: nftables' notification may have had it repaired
        # already, see tests/security/test_table_events.py.)
        deadline = time.monotonic() + 10  # generous: the interval is 1 s
        while labs.gateway_drift(plan, SEG)["C1"]:
            assert time.monotonic() < deadline, "not repaired"
            time.sleep(0.1)

        def repairs() -> int:
            return int((agents.status(plan, settings, "C1") or {}).get("repairs", 0))

        while repairs() <= before.get("repairs", 0):  # the status follows the repair
            assert time.monotonic() < deadline, "the repair was not counted"
            time.sleep(0.05)
        with open(
            os.path.join(os.environ["PEERWALL_STATE_DIR"], plan.name, "agents", "C1.log")
        ) as f:
            log = f.read()
        assert "drift:" in log and "repaired" in log
