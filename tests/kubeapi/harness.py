"""A Kubernetes source running against the fake API server, or against a real cluster.

``backend`` is ``fake`` always, and ``real`` when ``KUBECONFIG`` names a disposable cluster and
``PEERWALL_KUBE_REAL=1`` (the tests create and delete Liqo objects, Nodes and Namespaces there; see
docs/kubernetes.md). Tests that inject faults (dropped streams, compaction, bookmarks) take the fake
directly. Nothing waits for a fixed time: ``until`` polls a condition with a generous timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubeapi.fake import CORE, CRD_FILES, FakeApiServer, Resource, crd_resources
from peerwall import liqo as L
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import Backoff, KubeApi, KubeSource
from peerwall.compile.names import tunnel_ifname
from peerwall.compile.state import CONNCHECK_PORT, GatewayState
from peerwall.settings import KubeSettings

T = TypeVar("T")
Obj = dict[str, Any]

REAL = os.environ.get("PEERWALL_KUBE_REAL") == "1" and bool(os.environ.get("KUBECONFIG"))
REAL_SKIP = (
    "real-cluster run: set KUBECONFIG to a disposable test cluster and PEERWALL_KUBE_REAL=1 "
    "(docs/kubernetes.md)"
)
TIMEOUT = 30.0
"""Generous: a condition that holds at all holds within milliseconds here."""


def run(coro: Awaitable[T], timeout: float = 120.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


class Cluster(Protocol):
    """Where a test writes objects: the fake's store, or a real API server."""

    async def create(self, obj: Obj) -> None: ...
    async def update(self, obj: Obj) -> None: ...
    async def apply(self, obj: Obj) -> None: ...
    async def delete(self, obj: Obj) -> None: ...


class FakeCluster:
    def __init__(self, fake: FakeApiServer) -> None:
        self.fake = fake

    async def create(self, obj: Obj) -> None:
        self.fake.create(obj)

    async def update(self, obj: Obj) -> None:
        self.fake.update(obj)

    async def apply(self, obj: Obj) -> None:
        self.fake.apply(obj)

    async def delete(self, obj: Obj) -> None:
        self.fake.delete(obj)


class RealCluster:
    """Writes through the API of a real cluster; status goes through the status subresource."""

    def __init__(self, api: KubeApi) -> None:
        self.http = api.http
        self.resources = [*CORE, *crd_resources()]
        self.created: list[Obj] = []

    def _res(self, obj: Obj) -> Resource:
        for r in self.resources:
            if r.api_version == obj["apiVersion"] and r.kind == obj["kind"]:
                return r
        raise ValueError(f"unknown kind {obj['apiVersion']} {obj['kind']}")

    def _path(self, obj: Obj, name: bool = True) -> str:
        r = self._res(obj)
        base = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        ns = obj["metadata"].get("namespace")
        path = f"{base}/namespaces/{ns}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        return f"{path}/{obj['metadata']['name']}" if name else path

    async def setup(self) -> None:
        for f in CRD_FILES:
            import yaml

            for crd in yaml.safe_load_all(f.read_text()):
                if crd:
                    resp = await self.http.post(
                        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd
                    )
                    if resp.status_code not in (201, 409):
                        resp.raise_for_status()
        for crd in [r for r in self.resources if r.custom]:
            name = f"{crd.plural}.{crd.group}"
            for _ in range(100):
                got = (
                    await self.http.get(
                        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                    )
                ).json()
                conds = (got.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                    break
                await asyncio.sleep(0.1)

    async def _write_status(self, obj: Obj, current: Obj) -> None:
        if "status" not in obj or obj["kind"] in ("Namespace", "Node"):
            return
        body = {**current, "status": obj["status"]}
        resp = await self.http.put(self._path(obj) + "/status", json=body)
        resp.raise_for_status()

    async def create(self, obj: Obj) -> None:
        body = _real_body(obj)
        resp = await self.http.post(self._path(obj, name=False), json=body)
        resp.raise_for_status()
        self.created.append(obj)
        await self._write_status(obj, resp.json())

    async def update(self, obj: Obj) -> None:
        current = (await self.http.get(self._path(obj))).raise_for_status().json()
        body = _real_body(obj)
        body["metadata"] = {
            **body["metadata"],
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
        resp = await self.http.put(self._path(obj), json=body)
        resp.raise_for_status()
        await self._write_status(obj, resp.json())

    async def apply(self, obj: Obj) -> None:
        meta = obj["metadata"]
        if meta.get("namespace") == "default" and meta["name"] == "kubernetes":
            return  # the cluster's own API service: never touched
        if (await self.http.get(self._path(obj))).status_code == 404:
            await self.create(obj)
        elif obj["kind"] in ("Namespace", "Node"):
            # Existing ones keep everything but gain the labels a test needs.
            patch = {"metadata": {"labels": meta.get("labels") or {}}}
            headers = {"Content-Type": "application/merge-patch+json"}
            resp = await self.http.patch(self._path(obj), json=patch, headers=headers)
            resp.raise_for_status()
        else:
            await self.update(obj)
            self.created.append(obj)

    async def delete(self, obj: Obj) -> None:
        resp = await self.http.delete(self._path(obj), params={"gracePeriodSeconds": "0"})
        if resp.status_code != 404:
            resp.raise_for_status()

    async def cleanup(self) -> None:
        # Namespaces stay: one being deleted would block the next test's identical one.
        for obj in reversed(self.created):
            if obj["kind"] != "Namespace":
                await self.delete(obj)


def _real_body(obj: Obj) -> Obj:
    body = {k: v for k, v in obj.items() if k != "status"}
    if obj["kind"] == "Service":
        # The real EndpointSlice controller would fight the slices a test writes for a Service
        # with a selector; it leaves those of selector-less Services alone.
        body["spec"] = {k: v for k, v in obj["spec"].items() if k != "selector"}
    return body


@dataclass
class Harness:
    cluster: Cluster
    source: KubeSource
    desired: DesiredState
    fake: FakeApiServer | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def state(self) -> GatewayState:
        return self.desired.snapshot()

    async def until(
        self, condition: Callable[[], bool], what: str = "condition", timeout: float = TIMEOUT
    ) -> None:
        """Wait until ``condition()`` holds (checked after every event the source handles)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; state: {self.state()}")
            self.source.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.source.changed.wait(), 0.05)

    async def all_watching(self) -> None:
        """Every reflector has listed and holds a watch open (so that a fault hits them all)."""
        fake = self.fake
        assert fake is not None
        await self.until(
            lambda: len(fake.watchers) == len(self.source.reflectors), "every watch open"
        )

    def reflector(self, plural: str, labels_contain: str = "") -> Any:
        return next(
            r
            for r in self.source.reflectors
            if r.spec.kind.plural == plural and labels_contain in (r.spec.labels or "")
        )


def fast_backoff() -> Backoff:
    return Backoff(initial=0.01, maximum=0.2)


@contextlib.asynccontextmanager
async def running(
    backend: str,
    tmp_path: Path,
    objects: Iterable[Obj] = (),
    settings: KubeSettings | None = None,
    *,
    synced: bool = True,
    timeout_seconds: int = 300,
    quiet_timeout: float = 90.0,
    server: FakeApiServer | None = None,
    run_source: bool = True,
) -> AsyncIterator[Harness]:
    """Objects created, then a source started on them (and synced, unless told not to wait).
    ``server``: the fake to run (a subclass that injects faults), for the fake backend.
    ``run_source=False``: the source is made, not run (an ``Agent`` the test starts runs it)."""
    settings = settings or KubeSettings()
    if settings.peer is None:
        # One source for every peer, as in the lab's gateways: a tunnel each. (On Liqo's one
        # liqo-tunnel per gateway pod, the source refuses two peers: one agent per peer, --peer.)
        settings = replace(settings, tunnel=tunnel_ifname)
    fake = None
    if backend == "fake":
        # As a real API server: HTTPS, a CA bundle, a token.
        fake = server or FakeApiServer(tls=True)
        await fake.start()
        kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
        api = KubeApi.from_config(kubeconfig)
        cluster: Cluster = FakeCluster(fake)
    else:
        api = KubeApi.from_config(os.environ["KUBECONFIG"])
        real = RealCluster(api)
        await real.setup()
        cluster = real
    try:
        for obj in objects:
            await cluster.apply(obj)
        desired = DesiredState("unknown", L.TUNNEL_PATTERN, CONNCHECK_PORT)
        source = KubeSource(
            api,
            desired,
            settings,
            backoff=fast_backoff(),
            timeout_seconds=timeout_seconds,
            quiet_timeout=quiet_timeout,
        )
        h = Harness(cluster, source, desired, fake)
        if run_source:
            h.tasks.append(asyncio.create_task(source.run()))
        try:
            if synced and run_source:
                await asyncio.wait_for(source.listed.wait(), TIMEOUT)
            yield h
        finally:
            for task in h.tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        if isinstance(cluster, RealCluster):
            await cluster.cleanup()
        await api.aclose()
        if fake is not None:
            await fake.stop()
