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
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube import KubeConfig
from lightkube.config.client_adapter import AsyncClient, ConnectionParams

from peerwall.liqo import Kind

__all__ = [
    "ApiError",
    "Gone",
    "KubeApi",
    "Malformed",
    "NewHistory",
    "StreamBroken",
    "TooLarge",
    "WatchEvent",
]

log = logging.getLogger("peerwall.agent.kube")

Page = list[dict[str, Any]]
"""One page of a list's objects (named here: inside ``KubeApi`` ``list`` is its method)."""


class ApiError(Exception):
    """The API server answered with an error Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason


class Gone(ApiError):
    """410: the resourceVersion asked for was compacted; only a new list can resume."""


class TooLarge(Gone):
    """504 ``ResourceVersionTooLarge``: the server is behind the version asked for, which after
    a restart with a new history it may never reach; only a new list (of the latest) resumes."""


class NewHistory(Gone):
    """Versions went backwards (or an object changed identity without a deletion): the server
    has a new history, where our resourceVersion means nothing; only a new list resumes."""


class StreamBroken(Exception):
    """The watch stream ended in the middle of an event (a dropped connection)."""


class Malformed(ValueError):
    """An answer that is not what the protocol says (a list that is not a list, an ERROR event
    without a Status): never taken as the truth."""


def _too_large(status: Mapping[str, Any]) -> bool:
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    reasons = {c.get("reason") for c in causes or () if isinstance(c, dict)}
    return "ResourceVersionTooLarge" in reasons or "Too large resource version" in str(
        status.get("message", "")
    )


def _status_error(status: Mapping[str, Any]) -> ApiError:
    code = int(status.get("code") or 500)
    cls = Gone if code == 410 else TooLarge if code == 504 and _too_large(status) else ApiError
    return cls(code, str(status.get("reason", "")), str(status.get("message", "")))


def _named(obj: Any) -> bool:
    """An object the source can key: a mapping with a ``metadata`` mapping holding a name."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return isinstance(meta, dict) and isinstance(meta.get("name"), str) and bool(meta["name"])


def check_list(body: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The items and metadata of one list page, or ``Malformed``: a page that is not an object,
    whose metadata has no resourceVersion, whose items are not a list, or hold something other
    than named objects. Never an empty truth made of a broken answer."""
    if not isinstance(body, dict):
        raise Malformed(f"list answer is {type(body).__name__}, not an object")
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("resourceVersion"), str):
        raise Malformed(f"list answer without metadata.resourceVersion: {str(body)[:80]}")
    if not meta["resourceVersion"]:
        raise Malformed("list answer with an empty metadata.resourceVersion")
    items = body.get("items", [])
    if items is None:  # Go's nil slice: an empty list, from a well-formed answer
        items = []
    if not isinstance(items, list):
        raise Malformed(f"list answer whose items are {type(items).__name__}, not a list")
    bad = [i for i, o in enumerate(items) if not _named(o)]
    if bad:
        raise Malformed(f"list answer with {len(bad)} item(s) that are not objects (#{bad[0]})")
    return items, meta


@dataclass(frozen=True)
class WatchEvent:
    type: str
    """ADDED, MODIFIED, DELETED or BOOKMARK (ERROR is raised as ``ApiError``)."""
    object: dict[str, Any]


def _version(rv: Any) -> int | None:
    """A resourceVersion as a number, to see it go backwards; None if it is not one (they are
    opaque to clients: only etcd's, which are revisions, are compared)."""
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


class KubeApi:
    """List and watch any resource, given as a ``Kind``."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.malformed = 0
        """Answers not taken (malformed list pages and watch events), for a metric."""

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
        each: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every matching object and the list's resourceVersion (pages of ``limit`` objects,
        all from the snapshot of the first page). With ``resource_version`` the state is no
        older than that version, which the server may answer from its watch cache, or ``Gone``
        if it no longer has it; without, the latest (a quorum read). ``each`` maps every object
        as its page arrives."""
        items: list[dict[str, Any]] = []
        rv = ""
        async for page, page_rv in self.pages(
            kind,
            namespace=namespace,
            labels=labels,
            fields=fields,
            limit=limit,
            resource_version=resource_version,
            each=each,
        ):
            items.extend(page)
            rv = page_rv
        return items, rv

    async def pages(
        self,
        kind: Kind,
        *,
        namespace: str | None = None,
        labels: str | None = None,
        fields: str | None = None,
        limit: int = 500,
        resource_version: str = "",
        each: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> AsyncGenerator[tuple[Page, str], None]:
        """``list`` one page at a time, each with the list's resourceVersion: a reflector
        hands a page over before the next is asked for, so that no more than a page of objects
        is held at once (issue 21: a whole list held until its end leaves the heap at its size,
        fragmented, for good). A page is checked whole before it is yielded."""
        params = self._params(labels, fields)
        params["limit"] = str(limit)
        if resource_version:
            params["resourceVersion"] = resource_version
        rv = ""
        while True:
            resp = await self.http.get(kind.path(namespace), params=params)
            await self._check(resp)
            try:
                page, meta = check_list(resp.json())
            except ValueError as e:  # JSON that does not decode, or Malformed
                self.malformed += 1
                raise Malformed(f"{kind.plural}: {e}") from None
            rv = rv or meta["resourceVersion"]
            objects = list(map(each, page)) if each is not None else page
            del resp, page  # the page's whole objects go before it is handed over
            yield objects, rv
            cont = meta.get("continue")
            if not cont:
                return
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
        on_open: Callable[[], None] | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Events after ``resource_version``, bookmarks included, until the server ends the
        stream (after about ``timeout_seconds``). A 410 (as status or as ERROR event) raises
        ``Gone``, a 504 ``ResourceVersionTooLarge`` ``TooLarge``, versions going backwards
        ``NewHistory``; a stream cut in the middle of a line raises ``StreamBroken``. An event
        whose object is not a named object is skipped (logged, counted in ``malformed``); an
        ERROR event without a Status ends the stream. ``on_open`` is called once the server has
        accepted the watch."""
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
            if on_open is not None:
                on_open()
            last = _version(resource_version)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                    etype, obj = event["type"], event["object"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise StreamBroken(f"undecodable watch line {line[:80]!r}") from exc
                if etype == "ERROR":
                    if not isinstance(obj, dict):
                        self.malformed += 1
                        raise StreamBroken(f"ERROR event without a Status: {line[:80]!r}")
                    raise _status_error(obj)
                meta = obj.get("metadata") if isinstance(obj, dict) else None
                if not isinstance(meta, dict) or (etype != "BOOKMARK" and not _named(obj)):
                    self.malformed += 1
                    log.warning(
                        "%s: skipped a malformed %s event: %s", kind.plural, etype, line[:120]
                    )
                    continue
                now = _version(meta.get("resourceVersion"))
                if last is not None and now is not None and now < last:
                    raise NewHistory(
                        410, "NewHistory", f"resourceVersion went back from {last} to {now}"
                    )
                last = now if now is not None else last
                yield WatchEvent(etype, obj)
