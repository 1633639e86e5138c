"""The watch protocol under faults the fake API server injects: dropped streams, compaction (410),
bookmarks, objects that come and go unseen. Fake only: a real API server does these on its own
schedule, not on a test's."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from kubeapi import liqo_objects as L
from kubeapi.harness import Harness, run, running
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology
from peerwall.model.topology import Topology

HERE = Path(__file__).parent
SHADOW = "liqo.io/managed-by"


def seed() -> Topology:
    return load_topology((HERE / "seed-topology.yaml").read_text())


def ip(s: str) -> IPv4Address:
    return IPv4Address(s)


def offloaded(h: Harness) -> frozenset[IPv4Address]:
    return h.state().peers["c1"].addresses(SetKind.OFFLOADED)


def shadow(name: str, addr: str) -> dict[str, object]:
    return L.shadow_pod(name, "offloaded-c1", addr, "c1")


def test_watch_dropped_mid_stream_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2")) as h:
            assert h.fake is not None
            pods = h.reflector("pods", SHADOW)
            await h.all_watching()
            # Cut every stream in the middle of a line; what happens before the reconnect must
            # arrive after it, in order.
            h.fake.drop_watches(partial=True)
            h.fake.create(shadow("p10", "10.244.0.10"))
            h.fake.create(shadow("p11", "10.244.0.11"))
            h.fake.delete(shadow("p11", "10.244.0.11"))
            await h.until(
                lambda: offloaded(h) == {ip("10.244.0.1"), ip("10.244.0.10")}, "events replayed"
            )
            assert pods.watches >= 2, "the stream was resumed"
            assert pods.lists == 1, "resumed from its resourceVersion, no relist"
            # And the resumed stream carries live events.
            h.fake.create(shadow("p12", "10.244.0.12"))
            await h.until(lambda: ip("10.244.0.12") in offloaded(h), "live event after reconnect")

    run(main())


def test_gone_relists_and_withdraws_what_was_deleted_meanwhile(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2")) as h:
            assert h.fake is not None and offloaded(h) == {ip("10.244.0.1")}
            pods = h.reflector("pods", SHADOW)
            await h.all_watching()
            h.fake.drop_watches()
            h.fake.delete(shadow("p4", "10.244.0.1"))
            h.fake.create(shadow("p13", "10.244.0.13"))
            h.fake.compact()  # the deletion is in no history any more: only a list can tell
            await h.until(lambda: offloaded(h) == {ip("10.244.0.13")}, "relist withdrew p4")
            assert pods.lists == 2
            # Every watch was compacted away: each relists (once; not all at the same moment).
            slices = h.reflector("endpointslices")
            await h.until(lambda: slices.lists == 2, "endpointslices relisted")

    run(main())


def test_bookmarks_advance_the_resource_version_and_spare_a_relist(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2")) as h:
            fake = h.fake
            assert fake is not None
            pods = h.reflector("pods", SHADOW)
            await h.all_watching()
            listed_at = pods.resource_version
            # Changes the pod watch does not select move the server's version on...
            fake.create(L.namespace("unrelated"))
            fake.create(L.pod("plain", "unrelated", "10.244.0.50"))
            assert fake.bookmark() > 0
            await h.until(lambda: pods.resource_version == str(fake.rv), "bookmark received")
            assert int(pods.resource_version or 0) > int(listed_at or 0)
            # ...so that after compaction the watch resumes where the bookmark left it.
            fake.compact()
            fake.drop_watches(partial=False)
            fake.create(shadow("p14", "10.244.0.14"))
            await h.until(lambda: ip("10.244.0.14") in offloaded(h), "resumed after compaction")
            assert pods.bookmarks >= 1
            assert pods.lists == 1, "no relist: the bookmark's version was not compacted"

    run(main())


def test_object_deleted_before_it_was_seen(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2")) as h:
            fake = h.fake
            assert fake is not None
            await h.all_watching()
            # Created and deleted while the stream is down: replayed as ADDED then DELETED.
            fake.drop_watches()
            fake.create(shadow("p15", "10.244.0.15"))
            fake.delete(shadow("p15", "10.244.0.15"))
            # Created and deleted, then compacted: the relist never shows it at all.
            fake.create(shadow("p16", "10.244.0.16"))
            fake.delete(shadow("p16", "10.244.0.16"))
            fake.create(shadow("p17", "10.244.0.17"))
            await h.until(lambda: ip("10.244.0.17") in offloaded(h), "later event applied")
            assert offloaded(h) == {ip("10.244.0.1"), ip("10.244.0.17")}
            assert h.desired.contributions("pod/offloaded-c1/p15") == {}
            fake.drop_watches()
            fake.create(shadow("p18", "10.244.0.18"))
            fake.delete(shadow("p18", "10.244.0.18"))
            fake.compact()
            fake.create(shadow("p19", "10.244.0.19"))
            await h.until(lambda: ip("10.244.0.19") in offloaded(h), "relisted")
            assert offloaded(h) == {ip("10.244.0.1"), ip("10.244.0.17"), ip("10.244.0.19")}

    run(main())


def test_not_synced_until_every_list_is_done(tmp_path: Path) -> None:
    """An API server that refuses one resource keeps the source unsynced (the agent fail-closed),
    and the reflector retries until it answers."""

    async def main() -> None:
        async with running("fake", tmp_path, L.cluster_objects(seed(), "c2"), synced=False) as h:
            fake = h.fake
            assert fake is not None
            slices = h.reflector("endpointslices")
            others = [r for r in h.source.reflectors if r is not slices]
            # The source has not run yet: its first endpointslices list meets a 404, and so do its
            # retries, until the fake serves the resource again.
            key = ("discovery.k8s.io", "v1", "endpointslices")
            saved = fake.resources.pop(key)
            tries = lambda: sum(1 for p, _ in fake.requests if p.endswith("/endpointslices"))  # noqa: E731
            await h.until(
                lambda: all(r.listed.is_set() for r in others) and tries() >= 3, "retries"
            )
            assert not h.source.listed.is_set()
            fake.resources[key] = saved
            await h.until(h.source.listed.is_set, "synced once it answers")
            assert h.state().peers["c1"].addresses(SetKind.OFFLOADED) == {ip("10.244.0.1")}

    run(main())
