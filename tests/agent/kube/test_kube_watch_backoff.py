"""Watching as client-go's reflector does (kubernetes/client-go 32ce75a7, tools/cache/reflector.go):
a very short watch backs off, watch timeouts are jittered in [t, 2t], and a relist after 410
lists at the last version seen before it falls back to the latest. Fake only: these are the
server's behaviours, injected on a test's schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from kubeapi import liqo_objects as L
from kubeapi.harness import Harness, run, running
from peerwall.agent.kube import Backoff
from peerwall.compile.state import SetKind
from peerwall.model.load import load_topology

HERE = Path(__file__).parent
SHADOW = "liqo.io/managed-by"


def objects() -> list[dict[str, object]]:
    return L.cluster_objects(load_topology((HERE / "seed-topology.yaml").read_text()), "c2")


def offloaded(h: Harness) -> set[str]:
    return {str(a) for a in h.state().peers["c1"].addresses(SetKind.OFFLOADED)}


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    attempts: list[int] = field(default_factory=list)

    def delay(self, failures: int, rng: random.Random) -> float:
        self.attempts.append(failures)
        return super().delay(failures, rng)


def pod_requests(fake: object, *, watch: bool) -> list[dict[str, str]]:
    return [
        q
        for path, q in fake.requests  # type: ignore[attr-defined]
        if path.endswith("/pods") and SHADOW in q.get("labelSelector", "")
        and (q.get("watch") == "1") == watch
    ]  # fmt: skip


def test_a_server_ending_every_watch_at_once_is_backed_off(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, objects()) as h:
            fake = h.fake
            assert fake is not None
            pods = h.reflector("pods", SHADOW)
            backoff = RecordingBackoff(initial=0.001, maximum=0.05)
            pods.backoff = backoff
            await h.all_watching()
            fake.short_watches = True
            fake.end_watches()
            await h.until(lambda: pods.short_watches >= 6, "six very short watches")
            # Each one more failure than the last: the delay doubles up to its bound, instead
            # of a new watch at once (538 in 2 s, issue 16).
            assert backoff.attempts[:6] == [1, 2, 3, 4, 5, 6]
            assert pods.lists == 1, "a short watch is retried from its version, not relisted"
            # A healthy stream again resets the count.
            fake.short_watches = False
            fake.create(L.shadow_pod("p20", "offloaded-c1", "10.244.0.20", "c1"))
            await h.until(lambda: "10.244.0.20" in offloaded(h), "healthy again")

    run(main())


def test_watch_timeouts_are_jittered_between_t_and_2t(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, objects(), timeout_seconds=300) as h:
            assert h.fake is not None
            await h.all_watching()
            asked = [int(q["timeoutSeconds"]) for _, q in h.fake.requests if q.get("watch") == "1"]
            assert len(asked) == len(h.source.reflectors)
            assert all(300 <= t <= 600 for t in asked), asked
            assert len(set(asked)) > 1, "the same timeout for every watch: they would end together"

    run(main())


def test_relist_after_gone_starts_at_the_last_version_seen(tmp_path: Path) -> None:
    async def main() -> None:
        async with running("fake", tmp_path, objects()) as h:
            fake = h.fake
            assert fake is not None
            pods = h.reflector("pods", SHADOW)
            await h.all_watching()
            seen = pods.resource_version
            assert pod_requests(fake, watch=False)[-1].get("resourceVersion") is None
            # The watch cache no longer reaches back that far, etcd still does.
            fake.drop_watches(partial=False)
            fake.delete(L.shadow_pod("p4", "offloaded-c1", "10.244.0.1", "c1"))
            fake.expire_watches()
            await h.until(lambda: pods.lists == 2, "relisted")
            assert pod_requests(fake, watch=False)[-1]["resourceVersion"] == seen
            await h.until(lambda: "10.244.0.1" not in offloaded(h), "deletion seen by the list")
            # Compacted in etcd as well: the list at that version is gone, the latest is listed.
            before = len(pod_requests(fake, watch=False))
            seen = pods.resource_version
            fake.drop_watches(partial=False)
            fake.create(L.shadow_pod("p21", "offloaded-c1", "10.244.0.21", "c1"))
            fake.compact()
            await h.until(lambda: pods.lists == 3, "relisted again")
            tried = [q.get("resourceVersion") for q in pod_requests(fake, watch=False)[before:]]
            assert tried == [seen, None]
            await h.until(lambda: "10.244.0.21" in offloaded(h), "listed the latest")

    run(main())
