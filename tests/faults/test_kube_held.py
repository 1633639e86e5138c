"""The Kubernetes faults that held in the issue's first trial, driven again: the API server down,
answering 500 or 429 to everything, every watch expired (410 Gone after a compaction), and every
stream dropped in the middle of a line. Against the fake API server (the source's protocol; no
packets: the lab's agents read files), each with a narrowing change made while the fault lasts
(the offloaded pod p4 deleted: its address must leave the peer's allowed set).

Asserted for each: while the fault lasts the source never widens (the allowed set stays within
what it was), and once the fault ends (for 410: once the source relists) it converges to the
narrowed state without anyone acting. Recovery, recorded: from the end of the fault to the
narrowed state.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faultkit import FaultRecord

from kubeapi import liqo_objects as L
from kubeapi.faulty import FaultyApiServer
from kubeapi.harness import Harness, run, running
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology
from peerwall.model.topology import Topology

SEED = Path(__file__).parent.parent / "agent" / "kube" / "seed-topology.yaml"
FAULTS = ["outage", "500", "429", "410", "dropped-streams"]
FAULT_SECONDS = 2.0
"""How long each fault lasts: long enough for every reflector to retry through it."""


def seed() -> Topology:
    return load_topology(SEED.read_text())


def offloaded(h: Harness) -> frozenset[str]:
    return frozenset(str(a) for a in h.state().peers["c1"].addresses(SetKind.OFFLOADED))


@pytest.mark.parametrize("kind", FAULTS)
def test_the_source_rides_out_an_api_fault_and_converges(
    tmp_path: Path, kind: str, fault: FaultRecord
) -> None:
    """Kubernetes API fault during a narrowing change"""

    async def main() -> None:
        server = FaultyApiServer(tls=True)
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2"), server=server) as h:
            before = offloaded(h)
            assert before == {"10.244.0.1"}
            await h.all_watching()
            p4 = L.shadow_pod("p4", "offloaded-c1", "10.244.0.1", "c1")
            if kind == "outage":
                server.unreachable = True
            elif kind in ("500", "429"):
                server.refuse = int(kind)
            server.drop_watches(partial=kind == "dropped-streams")
            server.delete(p4)  # narrowing, while the fault lasts
            if kind == "410":
                server.compact()  # the deletion is in no history: only a relist can tell
            loop = asyncio.get_running_loop()
            started = loop.time()
            while loop.time() - started < FAULT_SECONDS:
                assert offloaded(h) <= before, f"widened during the fault: {offloaded(h)}"
                await asyncio.sleep(0.02)
            server.unreachable = False
            server.refuse = None
            ended = loop.time()
            while offloaded(h):
                assert offloaded(h) <= before
                assert loop.time() - ended < 120, "did not converge after the fault"
                await asyncio.sleep(0.01)
            # A fault that lets the change through at once has no window after the fault.
            fault.recovered(loop.time() - ended)
            assert offloaded(h) == frozenset()
            # And the source is live again: a new event arrives.
            server.create(L.shadow_pod("p30", "offloaded-c1", "10.244.0.30", "c1"))
            await h.until(lambda: offloaded(h) == {"10.244.0.30"}, "live after the fault")

    run(main())
