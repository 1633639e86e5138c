"""List-then-watch of one resource selection, kept going through dropped streams and 410s.

The protocol (as client-go's reflector): list, remember the list's resourceVersion, watch from it
with bookmarks; every event moves the resourceVersion on, so a dropped stream resumes exactly
where it stopped and nothing is lost or seen twice. When the server has compacted that version
(410 Gone) only a new list can resume: the objects it no longer holds were deleted while we were
not watching, and are reported deleted. Failures back off exponentially, bounded and jittered, so
that a restarting API server is not hit by every agent at once.

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
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from peerwall.agent.kube.client import ApiError, Gone, KubeApi, NewHistory, StreamBroken
from peerwall.agent.kube.liqo import Kind
from peerwall.agent.kube.model import key_of

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


def _newer_history(held: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Why ``now`` cannot follow ``held`` in one history (None if it can)."""
    a, b = _rv(held), _rv(now)
    if a.isdigit() and b.isdigit() and int(b) < int(a):
        return f"{key_of(now)} went back from resourceVersion {a} to {b}"
    uid_a, uid_b = held.get("metadata", {}).get("uid"), now.get("metadata", {}).get("uid")
    if uid_a and uid_b and uid_a != uid_b:
        return f"{key_of(now)} changed uid without a deletion"
    return None


class Reflector:
    """Keeps ``store`` equal to the selection on the server, calling ``on_apply`` for each object
    added or changed and ``on_remove`` for each one deleted (with its last known state)."""

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
        self.rng = rng or random.Random()
        self.store: dict[str, dict[str, Any]] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        """Set once the first list has been handed over."""
        self.lists = 0
        self.watches = 0
        self.bookmarks = 0
        self.quiet_timeout = quiet_timeout
        self.silent_restarts = 0
        self.blind_since: float | None = time.monotonic()
        """``time.monotonic()`` since when no list or open watch has followed the selection
        (None: followed now). Blind from the start until the first list."""
        self._delivered = 0

    async def run(self) -> None:
        failures = 0
        while True:
            self._delivered = 0
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                failures = 0  # the server ended the stream (its timeout): just watch again
            except Gone:
                self._blind()
                log.info(
                    "%s: resourceVersion %s expired (410 Gone): relisting",
                    self.spec,
                    self.resource_version,
                )
                self.resource_version = None
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
            # One object the model cannot digest must not stop the watch of every other one.
            log.exception("%s: handling %s failed", self.spec, key_of(obj))

    async def _list(self) -> None:
        s = self.spec
        items, rv = await self.api.list(
            s.kind, namespace=s.namespace, labels=s.labels, fields=s.fields
        )
        self.lists += 1
        fresh = {key_of(o): o for o in items}
        gone = [o for k, o in self.store.items() if k not in fresh]
        changed = [
            o for k, o in fresh.items() if k not in self.store or _rv(self.store[k]) != _rv(o)
        ]
        self.store = fresh
        self.resource_version = rv
        self._seeing()
        for o in gone:
            self._call(self.on_remove, o)
        for o in changed:
            self._call(self.on_apply, o)
        if self.lists == 1:
            log.info("%s: listed %d at resourceVersion %s", s, len(items), rv)
        else:
            log.info(
                "%s: relisted %d at resourceVersion %s: %d changed, %d deleted while not watching",
                s, len(items), rv, len(changed), len(gone),
            )  # fmt: skip
        self.synced.set()

    async def _watch(self) -> None:
        """Follow one watch stream to its end."""
        s = self.spec
        assert self.resource_version is not None
        self.watches += 1
        stream = self.api.watch(
            s.kind,
            self.resource_version,
            namespace=s.namespace,
            labels=s.labels,
            fields=s.fields,
            timeout_seconds=self.timeout_seconds,
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
        if etype in ("ADDED", "MODIFIED") and (held := self.store.get(key_of(obj))):
            why = _newer_history(held, obj)
            if why is not None:
                raise NewHistory(410, "NewHistory", why)
        if etype == "BOOKMARK":
            self.bookmarks += 1
        elif etype in ("ADDED", "MODIFIED"):
            self.store[key_of(obj)] = obj
            self._call(self.on_apply, obj)
        elif etype == "DELETED":
            # Also for an object never seen (created and deleted while not watching): the
            # model forgets what it does not know without complaint.
            self.store.pop(key_of(obj), None)
            self._call(self.on_remove, obj)
        else:
            log.warning("%s: unknown watch event type %r", self.spec, etype)
            return
        self.resource_version = _rv(obj) or self.resource_version
