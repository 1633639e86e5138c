"""The Kubernetes API as the source needs it: paged lists and watch streams, as plain JSON.

lightkube gives the connection: kubeconfig or in-cluster service account, authentication (tokens,
rotated token files, exec plugins, client certificates) and TLS, as an ``httpx`` client. The
list/watch protocol is driven here rather than through lightkube's ``watch()``, which on
``410 Gone`` silently resumes from "now": objects deleted meanwhile would never be reported, and
their addresses would stay allowed. Objects stay plain dicts: most of what is read are Liqo's
custom resources, and a dict is what both core and custom kinds have in common.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import KubeConfig
from lightkube.config.client_adapter import AsyncClient, ConnectionParams

from peerwall.agent.kube.liqo import Kind

__all__ = ["ApiError", "Gone", "KubeApi", "StreamBroken", "WatchEvent"]


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason


class Gone(ApiError):
    """410: the resourceVersion asked for was compacted; only a new list can resume."""


class StreamBroken(Exception):
    """The watch stream ended in the middle of an event (a dropped connection)."""


def _status_error(status: Mapping[str, Any]) -> ApiError:
    code = int(status.get("code") or 500)
    cls = Gone if code == 410 else ApiError
    return cls(code, str(status.get("reason", "")), str(status.get("message", "")))


@dataclass(frozen=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR is raised as ``ApiError``)."""
    object: dict[str, Any]


class KubeApi:
    """List and watch any resource, given as a ``Kind``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @classmethod
    def from_config(
        cls, kubeconfig: str | Path | None = None, context: str | None = None
    ) -> KubeApi:
        """From a kubeconfig file; without one, in-cluster config, else ``$KUBECONFIG``."""
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
        single = config.get(context)
        if single is None:
            raise ValueError(f"kubeconfig has no context {context or '(current)'}")
        # Watches need no read timeout of their own: each sets one from its server-side timeout.
        return cls(AsyncClient(single, ConnectionParams(timeout=httpx.Timeout(30.0))))

    async def aclose(self) -> None:
        await self.http.aclose()

    @staticmethod
    def _params(labels: str | None, fields: str | None) -> dict[str, str]:
        params = {}
        if labels:
            params["labelSelector"] = labels
        if fields:
            params["fieldSelector"] = fields
        return params

    async def _check(self, resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        await resp.aread()
        try:
            status = resp.json()
        except ValueError:
            status = {}
        if not isinstance(status, dict) or status.get("kind") != "Status":
            status = {"code": resp.status_code, "reason": resp.reason_phrase, "message": resp.text}
        raise _status_error(status)

    async def list(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
        limit: int = 500,
        resource_version: str = "",
    ) -> tuple[list[dict[str, Any]], str]:
        """Every matching object and the list's resourceVersion (pages of ``limit`` objects,
        all from the snapshot of the first page). With ``resource_version`` the state is no
        older than that version, which the server may answer from its watch cache, or ``Gone``
        if it no longer has it; without, the latest (a quorum read)."""
        params = self._params(labels, fields)
        params["limit"] = str(limit)
        if resource_version:
            params["resourceVersion"] = resource_version
        items: list[dict[str, Any]] = []
        rv = ""
        while True:
            resp = await self.http.get(kind.path(namespace), params=params)
            await self._check(resp)
            body = resp.json()
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))
            cont = meta.get("continue")
            if not cont:
                return items, rv
            params["continue"] = cont

    async def watch(
        self,
        kind: Kind,
        resource_version: str,
        *,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Events after ``resource_version``, bookmarks included, until the server ends the
        stream (after about ``timeout_seconds``). A 410 (as status or as ERROR event) raises
        ``Gone``; a stream cut in the middle of a line raises ``StreamBroken``."""
        params = self._params(labels, fields)
        params.update(
            watch="1",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
        )
        # A silent half-open connection must not hang the watch forever: the server ends the
        # stream itself after timeoutSeconds, so waiting much longer than that means it's gone.
        timeout = httpx.Timeout(30.0, read=timeout_seconds + 30.0)
        async with self.http.stream(
            "GET", kind.path(namespace), params=params, timeout=timeout
        ) as resp:
            await self._check(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                    etype, obj = event["type"], event["object"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise StreamBroken(f"undecodable watch line {line[:80]!r}") from exc
                if etype == "ERROR":
                    raise _status_error(obj)
                yield WatchEvent(etype, obj)
