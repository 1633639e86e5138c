"""The Kubernetes source never trusts a broken answer (issue 18.5), against the fake API server.

Malformed watch events are skipped (logged, counted) and the watch goes on; a malformed list is
an error, the last good state stays and the list is retried, never an empty truth that would
drop a narrowing PeeringSecurity; a list that fails on a later page is not taken for a list (not
synced, blind) and the relist that follows leaves nothing stale of the pages already handed over; a 504 ``ResourceVersionTooLarge`` and versions going backwards
(a restarted API server with a new history) force a relist, which withdraws what was deleted
meanwhile; a watch silent past the quiet timeout is restarted; how long the source has been
blind is in ``/status`` and a metric.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from faultkit import FaultRecord

from kubeapi import liqo_objects as L
from kubeapi.faulty import FaultyApiServer
from kubeapi.harness import Harness, run, running
from peerwall.agent.run import Agent
from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.nft.fake import FakeNft
from peerwall.settings import AgentSettings, KubeSettings

SEED = Path(__file__).parent.parent / "agent" / "kube" / "seed-topology.yaml"
SHADOW = "liqo.io/managed-by"
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD


def seed() -> Topology:
    return load_topology(SEED.read_text())


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def offloaded(h: Harness) -> frozenset[IPv4Address]:
    return h.state().peers["c1"].addresses(SetKind.OFFLOADED)


def shadow(name: str, addr: str) -> dict[str, object]:
    return L.shadow_pod(name, "offloaded-c1", addr, "c1")


def narrowed() -> list[dict[str, object]]:
    """The seed's c2 with the global default FullPodToPod, and a PeeringSecurity that narrows
    its peer c1 to segregation: losing that object would open FullPodToPod to c1."""
    return [*L.cluster_objects(seed(), "c2"), L.peering_security("c1", SEG.value)]


def mode(h: Harness) -> SecurityMode:
    return h.state().peers["c1"].mode


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ADDED", "object": "oops"},
        {"type": "MODIFIED", "object": None},
        {"type": "DELETED", "object": {"metadata": []}},
        {"type": "ERROR", "object": "the server says no"},
    ],
    ids=["string", "null", "no-name", "error-string"],
)
def test_a_malformed_watch_event_is_skipped_and_the_watch_goes_on(
    tmp_path: Path, event: object, caplog: pytest.LogCaptureFixture, fault: FaultRecord
) -> None:
    """a malformed Kubernetes watch event"""

    async def main() -> None:
        server = FaultyApiServer()
        async with running("fake", tmp_path, narrowed(), server=server) as h:
            await h.all_watching()
            before = offloaded(h)
            assert server.inject("pods", event) > 0
            server.create(shadow("p30", "10.244.0.30"))
            fault.recovered(await timed(h, lambda: ip("10.244.0.30") in offloaded(h)))
            assert offloaded(h) == before | {ip("10.244.0.30")}
            assert not any(t.done() for t in h.tasks), "the source stopped"
            assert h.source.malformed >= 1
            assert "malformed" in caplog.text or "ERROR event without a Status" in caplog.text

    run(main())


@pytest.mark.parametrize(
    "answer",
    [[], {"items": [None]}, {"metadata": [], "items": []}, {"metadata": {}, "items": []}],
    ids=["list", "null-item", "metadata-list", "no-version"],
)
def test_a_malformed_list_keeps_the_last_good_state_and_is_retried(
    tmp_path: Path, answer: object, fault: FaultRecord
) -> None:
    """a malformed Kubernetes list answer"""

    async def main() -> None:
        server = FaultyApiServer()
        async with running(
            "fake", tmp_path, narrowed(), KubeSettings(default_mode=FULL), server=server
        ) as h:
            await h.all_watching()
            security = h.reflector("peeringsecurities")
            assert mode(h) is SEG
            server.answer_lists("peeringsecurities", answer)
            server.create(L.namespace("unrelated"))  # a version beyond every watch's...
            server.compact()  # ...then compacted: every watch relists, PeeringSecurity's gets `answer`
            server.drop_watches(partial=False)
            seen: set[SecurityMode] = set()
            started = asyncio.get_running_loop().time()
            while security.lists < 2:  # watched at every step the loop takes
                seen.add(mode(h))
                await asyncio.sleep(0)
            seen.add(mode(h))
            fault.recovered(asyncio.get_running_loop().time() - started)
            assert seen == {SEG}, "a broken list was taken as an empty truth"
            assert h.source.malformed == 1
            assert not server.list_answers["peeringsecurities"], "the bad answer was served"

    run(main())


@pytest.mark.parametrize(
    ("when", "status"),
    [("first-list", 500), ("first-list", 410), ("relist", 500), ("relist", 410)],
)
def test_a_list_failing_on_a_later_page_leaves_nothing_stale(
    tmp_path: Path, when: str, status: int, fault: FaultRecord
) -> None:
    """a Kubernetes list failing on its second page

    An agent (on the in-memory nft) runs the source; the server serves one pod a page (a-new,
    m-old, n-keep, p4) and fails page 2 of the shadow pods' list, on the first list or on a
    relist. As it fails, a-new (handed over by page 1) and m-old are deleted and z-late
    created. The failed list is not taken for a list, and the one after it leaves the table
    exactly the server's: nothing stale (a-new, m-old), nothing missing (z-late)."""

    async def main() -> None:
        server = FaultyApiServer()
        server.page_size = 1
        first = when == "first-list"
        objects = [*L.cluster_objects(seed(), "c2"), shadow("m-old", "10.244.0.71")]
        objects.append(shadow("n-keep", "10.244.0.72"))
        if first:
            objects.append(shadow("a-new", "10.244.0.70"))
        async with running("fake", tmp_path, objects, server=server, run_source=False) as h:
            nft = FakeNft()
            agent = Agent(h.source, h.desired, nft, None, AgentSettings(metrics_address=None))
            at_failure: list[tuple[bool, bool, bool]] = []
            failed_at = 0.0

            def meanwhile() -> None:
                nonlocal failed_at
                failed_at = asyncio.get_running_loop().time()
                pods = h.reflector("pods", SHADOW)
                at_failure.append((h.source.listed.is_set(), agent.ready, pods.blind_since is None))
                server.delete(shadow("a-new", "10.244.0.70"))
                server.delete(shadow("m-old", "10.244.0.71"))
                server.create(shadow("z-late", "10.244.0.79"))

            def enforced() -> set[IPv4Address]:
                table = nft.ruleset("inet", "peerwall")
                name = names.peer_set("c1", SetKind.OFFLOADED)
                if table is None or name not in {s.name for s in table.sets}:
                    return set()
                return {IPv4Address(str(e)) for e in table.set(name).elements}

            if first:
                server.fail_page("pods", status, selector=SHADOW, then=meanwhile)
            # The agent runs the source: polled here, the source's ``changed`` is the agent's.
            h.tasks.append(asyncio.create_task(agent.run()))
            if not first:
                await polled(lambda: len(server.watchers) == len(h.source.reflectors))
                await polled(lambda: agent.ready)
                assert enforced() == {ip("10.244.0.1"), ip("10.244.0.71"), ip("10.244.0.72")}
                server.fail_page("pods", status, selector=SHADOW, then=meanwhile)
                # Not watching when a-new comes: the relist, not a watch event, hands it over.
                server.drop_watches(partial=False)
                server.create(shadow("a-new", "10.244.0.70"))
                server.expire_watches()
            expected = {ip("10.244.0.1"), ip("10.244.0.72"), ip("10.244.0.79")}
            pods = h.reflector("pods", SHADOW)
            await polled(
                lambda: (
                    bool(at_failure)
                    and agent.ready
                    and pods.blind_since is None
                    and enforced() == expected
                )
            )
            fault.recovered(asyncio.get_running_loop().time() - failed_at)
            # When the page failed, the source did not claim the list it had not finished: on
            # a first list, not synced and the agent not ready (fail-closed); on a relist, the
            # selection blind (the agent keeps enforcing the last good state).
            assert at_failure == [(not first, not first, False)]
            assert not server.page_faults, "the fault was not served"
            assert offloaded(h) == expected == enforced()
            assert set(pods.store) == {f"offloaded-c1/{n}" for n in ("n-keep", "p4", "z-late")}

    run(main())


async def polled(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds, without touching the source's events (an agent waits
    on them); the timeout guards against waiting for ever, it is no bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def test_a_restarted_api_server_with_lower_versions_forces_a_relist(
    tmp_path: Path, fault: FaultRecord
) -> None:
    """an API server restarted with a new history (504 ResourceVersionTooLarge)"""

    async def main() -> None:
        server = FaultyApiServer()
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2"), server=server) as h:
            await h.all_watching()
            pods = h.reflector("pods", SHADOW)
            for i in range(5):  # versions move on, beyond what the new history will count
                server.create(shadow(f"p4{i}", f"10.244.0.4{i}"))
            await h.until(lambda: len(offloaded(h)) == 6, "pods seen")
            # Restarted from a backup, p40 deleted in the downtime: every watch asks for a
            # version the server does not have (504 ResourceVersionTooLarge).
            server.restart(deleted_meanwhile=[shadow("p40", "10.244.0.40")])
            fault.recovered(await timed(h, lambda: ip("10.244.0.40") not in offloaded(h)))
            assert pods.lists >= 2
            assert len(offloaded(h)) == 5

    run(main())


def test_versions_going_backwards_force_a_relist(tmp_path: Path, fault: FaultRecord) -> None:
    """an API server restarted with a new history that reuses versions"""

    async def main() -> None:
        server = FaultyApiServer()
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2"), server=server) as h:
            await h.all_watching()
            pods = h.reflector("pods", SHADOW)
            for i in range(5):
                server.create(shadow(f"p5{i}", f"10.244.0.5{i}"))
            server.create(L.namespace("busy"))
            for i in range(20):  # versions move well beyond the count of objects
                server.update(L.namespace("busy", {"n": str(i)}))
            await h.until(lambda: len(offloaded(h)) == 6, "pods seen")
            assert server.bookmark() > 0  # as each minute: every watch is at the latest version
            await h.until(lambda: pods.resource_version == str(server.rv), "bookmark seen")
            # A new history that reuses versions: the server takes any version, replays nothing
            # (its history is new), and its next events carry versions lower than ours.
            watches = pods.watches
            pod_watches = sum(r.spec.kind.plural == "pods" for r in h.source.reflectors)
            server.restart(deleted_meanwhile=[shadow("p50", "10.244.0.50")], reuse=True)
            await h.until(
                lambda: pods.watches > watches and server.watching("pods") == pod_watches,
                "the pod watches back, at their old versions",
            )
            server.create(shadow("p59", "10.244.0.59"))
            fault.recovered(await timed(h, lambda: ip("10.244.0.50") not in offloaded(h)))
            await h.until(lambda: ip("10.244.0.59") in offloaded(h), "the new pod too")
            assert pods.lists >= 2

    run(main())


def test_a_silent_watch_is_restarted_and_misses_nothing(tmp_path: Path, fault: FaultRecord) -> None:
    """a hung watch (no event, no bookmark)"""

    async def main() -> None:
        server = FaultyApiServer()
        # The quiet timeout stands for the bookmark interval (a minute in a real cluster).
        async with running(
            "fake", tmp_path, L.cluster_objects(seed(), "c2"), server=server, quiet_timeout=0.5
        ) as h:
            await h.all_watching()
            pods = h.reflector("pods", SHADOW)
            assert server.hang_watches() > 0
            server.delete(shadow("p4", "10.244.0.1"))
            fault.recovered(await timed(h, lambda: ip("10.244.0.1") not in offloaded(h)))
            assert pods.silent_restarts >= 1
            assert pods.lists == 1, "resumed from its version: nothing to relist"

    run(main())


def test_blind_time_is_in_status_and_metrics(tmp_path: Path, fault: FaultRecord) -> None:
    """an API server refusing every request (500)"""

    async def main() -> None:
        server = FaultyApiServer()
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2"), server=server) as h:
            desired = h.desired
            agent = Agent(
                h.source, desired, FakeNft(), None, AgentSettings(metrics_address="127.0.0.1:0")
            )
            # The harness already runs the source; the agent only reports on it here.
            assert agent.status()["source_blind_seconds"] == 0
            server.refuse = 500
            server.drop_watches(partial=False)
            # Past 0.201: the status rounds to milliseconds, and 0.2004 would read 0.2.
            await h.until(lambda: h.source.blind_seconds() > 0.201, "blind")
            assert agent.status()["source_blind_seconds"] > 0.2
            text = _metrics(agent)
            assert _value(text, "peerwall_source_blind_seconds") > 0.2
            server.refuse = None
            fault.recovered(await timed(h, lambda: h.source.blind_seconds() == 0))
            assert json.loads(json.dumps(agent.status()))["source_blind_seconds"] == 0

    run(main())


async def timed(h: Harness, condition: Callable[[], bool]) -> float:
    """``h.until(condition)``, and how long it took (for the fault suite's record)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await h.until(condition, "recovery")
    return loop.time() - started


def _metrics(agent: Agent) -> str:
    from prometheus_client import generate_latest

    return generate_latest(agent.metrics.registry).decode()


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
