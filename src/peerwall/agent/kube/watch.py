"""List-then-watch of one resource selection, kept going through dropped streams and 410s.

The protocol (as client-go's reflector): list, remember the list's resourceVersion, watch from it
with bookmarks; every event moves the resourceVersion on, so a dropped stream resumes exactly
where it stopped and nothing is lost or seen twice. When the server has compacted that version
(410 Gone) only a new list can resume: the objects it no longer holds were deleted while we were
not watching, and are reported deleted. Failures back off exponentially, bounded and jittered, so
that a restarting API server is not hit by every agent at once.

Three habits of client-go's reflector (kubernetes/client-go 32ce75a7 ``tools/cache/reflector.go``):
each watch asks for a timeout drawn uniformly in [t, 2t] (``minWatchTimeout``, 5 min), so that the
watches of many agents started together do not all end and reconnect together; a watch that the
server ends in under a second without a single event counts as a failure and backs off
(``VeryShortWatchError``), so that a server closing every stream at once is not asked again
hundreds of times a second; and a relist after 410 first lists at the last version seen
(``relistResourceVersion``: "no older than", which the API server can serve from its watch cache)
and only if that version is gone too lists the latest (a quorum read from etcd).

No broken answer is trusted (issue 18): a malformed list is an error that keeps the last good
state (``client.check_list``); a malformed watch event is skipped, counted; a 504
``ResourceVersionTooLarge`` or any sign of a new history (versions going backwards, an object
older than the copy held, or the same name with another uid without a deletion) forces a relist;
a watch silent for longer than ``quiet_timeout`` (the API server sends a bookmark about every
minute) is restarted. ``blind_since`` says since when this selection has not been followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from peerwall.agent.kube.client import (
    ApiError,
    Gone,
    KubeApi,
    NewHistory,
    StreamBroken,
    TooLarge,
)
from peerwall.agent.kube.held import Held, pack, unpack, version
from peerwall.agent.kube.objects import key_of
from peerwall.agent.kube.shape import kept
from peerwall.liqo import Kind

log = logging.getLogger("peerwall.agent.kube")

Handler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (from 1): uniform in [d/2, d], d = min(maximum, initial·factor^(n-1))."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0

    def delay(self, failures: int, rng: random.Random) -> float:
        d = min(self.maximum, self.initial * self.factor ** max(0, failures - 1))
        return rng.uniform(d / 2, d)


SHORT_WATCH = 1.0
"""Seconds: a watch ended by the server sooner than this, with no event, is a failure."""


@dataclass(frozen=True)
class WatchSpec:
    """One selection of one resource: what a reflector lists and watches."""

    kind: Kind
    namespace: str | None = None
    labels: str | None = None
    fields: str | None = None

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        sel = ",".join(s for s in (self.labels, self.fields) if s)
        return f"{self.kind.plural}{where}{f' [{sel}]' if sel else ''}"


def _rv(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


QUIET_TIMEOUT = 90.0
"""Seconds a watch may stay silent: the API server sends a bookmark about every minute
(``allowWatchBookmarks``), so a longer silence is a hung connection, not a quiet cluster."""


class Silent(StreamBroken):
    """No event nor bookmark for longer than the quiet timeout: the stream hangs."""


def _held(obj: dict[str, Any]) -> Held:
    return pack(_rv(obj), obj.get("metadata", {}).get("uid"))


def _skeleton(key: str) -> dict[str, Any]:
    """An object found gone at a relist, as handed to ``on_remove``: its name and namespace, all
    a deletion needs (the join forgets an object by its key; ``shape.skeleton`` is the same
    for a refused object)."""
    ns, _, name = key.rpartition("/")
    return {"metadata": {"name": name, "namespace": ns} if ns else {"name": name}}


def _newer_history(held: Held, now: dict[str, Any]) -> str | None:
    """Why ``now`` cannot follow ``held`` in one history (None if it can)."""
    (a, uid_a), (b, uid_b) = unpack(held), (_rv(now), now.get("metadata", {}).get("uid"))
    if a.isdigit() and b.isdigit() and int(b) < int(a):
        return f"{key_of(now)} went back from resourceVersion {a} to {b}"
    if uid_a and uid_b and uid_a != uid_b:
        return f"{key_of(now)} changed uid without a deletion"
    return None


class Reflector:
    """Follows the selection on the server, calling ``on_apply`` for each object added or
    changed and ``on_remove`` for each one deleted: with its last state for a watch's deletion,
    with only its name and namespace for one found gone at a relist.

    Objects are handed over as ``shape.kept`` makes them: only the fields the join reads. The
    reflector itself keeps no object, only ``store``: key -> (resourceVersion, uid), what
    a relist diffs and a new history is told by, as client-go's reflector needs only its
    store's keys and versions, packed in one object each (``held.pack``; the join keeps what it
    derives; issue 21: the agent's memory per enforced address)."""

    def __init__(
        self,
        api: KubeApi,
        spec: WatchSpec,
        on_apply: Handler,
        on_remove: Handler,
        *,
        backoff: Backoff | None = None,
        timeout_seconds: int = 300,
        rng: random.Random | None = None,
        quiet_timeout: float = QUIET_TIMEOUT,
    ) -> None:
        self.api = api
        self.spec = spec
        self.on_apply = on_apply
        self.on_remove = on_remove
        self.backoff = backoff or Backoff()
        self.timeout_seconds = timeout_seconds
        """The shortest server-side timeout a watch asks for; each asks for one in [t, 2t]."""
        self.rng = rng or random.Random()
        self._kept = functools.partial(kept, spec.kind.kind)
        self.store: dict[str, Held] = {}
        self.resource_version: str | None = None
        self.listed = asyncio.Event()
        """Set once the first list has been handed over."""
        self.lists = 0
        self.watches = 0
        self.bookmarks = 0
        self.short_watches = 0
        self.quiet_timeout = quiet_timeout
        self.silent_restarts = 0
        self.blind_since: float | None = time.monotonic()
        """``time.monotonic()`` since when no list or open watch has followed the selection
        (None: followed now). Blind from the start until the first list."""
        self._delivered = 0
        self._relist = True
        """The next pass lists first (at ``resource_version``, if any is known)."""
        self._new_history = False
        """The next list is of a new history: every object in it is applied again."""
        self._fresh: dict[str, Held] = {}
        """What the list under way has found so far (the next ``store``)."""
        self._changed = 0
        """How many objects the list under way handed over."""

    async def run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            self._delivered = 0
            try:
                if self._relist:
                    await self._list()
                started = loop.time()
                await self._watch()
                if self._delivered == 0 and loop.time() - started < SHORT_WATCH:
                    # Not the server's timeout: something ends every stream at once.
                    self.short_watches += 1
                    failures += 1
                    log.warning(
                        "%s: very short watch: closed within %.0fs without any event",
                        self.spec,
                        SHORT_WATCH,
                    )
                    await self._sleep(failures, "watch again")
                    continue
                failures = 0  # the server ended the stream (its timeout): just watch again
            except Gone as exc:
                self._blind()
                if isinstance(exc, TooLarge | NewHistory):
                    # A new history: our resourceVersion means nothing there, and an object's
                    # version may be reused for other content. List the latest, take it whole.
                    log.warning(
                        "%s: %s at resourceVersion %s: relisting the latest",
                        self.spec,
                        exc,
                        self.resource_version,
                    )
                    self.resource_version = None
                    self._new_history = True
                else:
                    log.info(
                        "%s: resourceVersion %s expired (410 Gone): relisting",
                        self.spec,
                        self.resource_version,
                    )
                self._relist = True
                # Relist at once; but a 410 again before any event means the server compacts
                # faster than we list: back off rather than hammer it.
                failures = 0 if self._delivered else failures + 1
                if failures > 1:
                    await self._sleep(failures - 1, "relist")
            except (httpx.HTTPError, ApiError, StreamBroken, OSError, ValueError) as exc:
                self._blind()
                # A stream that delivered events before breaking was healthy: retry soon.
                failures = 1 if self._delivered else failures + 1
                denied = isinstance(exc, ApiError) and exc.code in (401, 403)
                log.log(
                    logging.ERROR if denied else logging.WARNING,
                    "%s: %s: %s",
                    self.spec,
                    type(exc).__name__,
                    exc or "connection lost",
                )
                await self._sleep(failures, "retry")

    def _blind(self) -> None:
        if self.blind_since is None:
            self.blind_since = time.monotonic()

    def _seeing(self) -> None:
        self.blind_since = None

    async def _sleep(self, failures: int, what: str) -> None:
        delay = self.backoff.delay(failures, self.rng)
        log.info("%s: %s in %.2fs (attempt %d)", self.spec, what, delay, failures)
        await asyncio.sleep(delay)

    def _call(self, handler: Handler, obj: dict[str, Any]) -> None:
        try:
            handler(obj)
        except Exception:
            # One object the join cannot digest must not stop the watch of every other one.
            log.exception("%s: handling %s failed", self.spec, key_of(obj))

    async def _list(self) -> None:
        s = self.spec
        try:
            # At the last version seen first; the first list, with none, is a quorum read.
            rv = await self._take_pages(self.resource_version or "")
        except Gone:
            if not self.resource_version:
                raise
            log.info(
                "%s: resourceVersion %s is gone for a list too: listing the latest",
                s,
                self.resource_version,
            )
            self.resource_version = None
            rv = await self._take_pages("")
        self.lists += 1
        self._relist = False
        fresh, self._fresh = self._fresh, {}
        gone = [k for k in self.store if k not in fresh]
        self._new_history = False
        self.store = fresh
        self.resource_version = rv
        self._seeing()
        for k in gone:
            self._call(self.on_remove, _skeleton(k))
        if self.lists == 1:
            log.info("%s: listed %d at resourceVersion %s", s, len(fresh), rv)
        else:
            log.info(
                "%s: relisted %d at resourceVersion %s: %d changed, %d deleted while not watching",
                s, len(fresh), rv, self._changed, len(gone),
            )  # fmt: skip
        self.listed.set()

    async def _take_pages(self, resource_version: str) -> str:
        """List into ``_fresh``, handing each page's new or changed objects over as it comes
        (the list's resourceVersion returned). Those already handed over when a page fails stay
        applied: they are the server's state. ``store`` takes them in then (it holds what the
        join was handed), and the relist that follows a failure diffs against it; it becomes
        the list only once the whole list is in."""
        s = self.spec
        self._fresh = {}
        self._changed = 0
        rv = ""
        pages = self.api.pages(
            s.kind,
            namespace=s.namespace,
            labels=s.labels,
            fields=s.fields,
            resource_version=resource_version,
            each=self._kept,
        )
        try:
            async with contextlib.aclosing(pages):
                async for objects, page_rv in pages:
                    rv = page_rv
                    objects.reverse()
                    while objects:
                        # Each object is dropped as soon as it is handed over (issue 21: what
                        # the join derives from it reuses its memory).
                        o = objects.pop()
                        k = key_of(o)
                        self._fresh[k] = now = _held(o)
                        had = self.store.get(k)
                        if self._new_history or had is None or version(had) != version(now):
                            self._changed += 1
                            self._call(self.on_apply, o)
        except BaseException:
            # A later page failed: what the earlier ones handed over is applied, so the store
            # must hold it, or an object new in them and deleted before the next list would
            # never be found gone (and stay enforced for good).
            self.store.update(self._fresh)
            self._fresh = {}
            raise
        return rv

    async def _watch(self) -> None:
        """Follow one watch stream to its end."""
        s = self.spec
        assert self.resource_version is not None
        self.watches += 1
        timeout = self.timeout_seconds + int(self.rng.random() * self.timeout_seconds)
        stream = self.api.watch(
            s.kind,
            self.resource_version,
            namespace=s.namespace,
            labels=s.labels,
            fields=s.fields,
            timeout_seconds=timeout,
            on_open=self._seeing,
        )
        async with contextlib.aclosing(stream):
            while True:
                heard = time.monotonic()
                try:
                    async with asyncio.timeout(self.quiet_timeout):
                        event = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    self.silent_restarts += 1
                    self.blind_since = heard  # blind since the last word, not since now
                    raise Silent(
                        f"silent for {self.quiet_timeout:g}s (no event, no bookmark): restarting"
                    ) from None
                self._handle(event.type, event.object)

    def _handle(self, etype: str, obj: dict[str, Any]) -> None:
        self._delivered += 1
        if etype != "BOOKMARK":
            obj = self._kept(obj)
        if etype in ("ADDED", "MODIFIED") and (held := self.store.get(key_of(obj))):
            why = _newer_history(held, obj)
            if why is not None:
                raise NewHistory(410, "NewHistory", why)
        if etype == "BOOKMARK":
            self.bookmarks += 1
        elif etype in ("ADDED", "MODIFIED"):
            self.store[key_of(obj)] = _held(obj)
            self._call(self.on_apply, obj)
        elif etype == "DELETED":
            # Also for an object never seen (created and deleted while not watching): the
            # join forgets what it does not know without complaint.
            self.store.pop(key_of(obj), None)
            self._call(self.on_remove, obj)
        else:
            log.warning("%s: unknown watch event type %r", self.spec, etype)
            return
        self.resource_version = _rv(obj) or self.resource_version
