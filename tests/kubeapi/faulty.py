"""A fake API server that answers badly on demand (issue 18.5): malformed list pages and watch
events, a list that fails on a later page, a restart with a new history (whose versions are
lower than the clients', or reused), watches that hang, and every request refused.

The protocol parts are the fake's (``fake.py``); this only overrides what a test breaks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubeapi.fake import FakeApiServer, Obj, Watcher, _status_obj


def too_large(asked: int, current: int) -> Obj:
    """What kube-apiserver answers for a version it does not have yet (after its wait)."""
    status = _status_obj(504, "Timeout", "Too large resource version")
    status["details"] = {
        "causes": [
            {
                "reason": "ResourceVersionTooLarge",
                "message": f"Too large resource version: {asked}, current: {current}",
            }
        ],
        "retryAfterSeconds": 1,
    }
    return status


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter."
)
"""kube-apiserver's 410 for a ``continue`` token of a compacted version (its message, shortened)."""


@dataclass
class PageFault:
    """The next request for a later page (one with ``continue``) of a list of ``plural`` whose
    label selector contains ``selector`` is answered ``status``; ``then`` runs as it is."""

    plural: str
    status: int
    selector: str
    then: Callable[[], None] | None

    def hits(self, plural: str, query: dict[str, str]) -> bool:
        return (
            plural == self.plural
            and bool(query.get("continue"))
            and self.selector in query.get("labelSelector", "")
        )

    def answer(self) -> web.Response:
        if self.then is not None:
            self.then()
        if self.status == 410:
            status = _status_obj(410, "Expired", CONTINUE_EXPIRED)
        else:
            status = _status_obj(self.status, "InternalError", "a later page refused by the test")
        return web.json_response(status, status=self.status)


class FaultyApiServer(FakeApiServer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.list_answers: dict[str, list[Any]] = {}
        self.checks_versions = True
        """False: a server that takes any version (as one whose history reuses versions)."""
        self.refuse: int | None = None
        """Answer every request with this HTTP status."""
        self.unreachable = False
        """Close every connection without an answer (an API server that is down)."""
        self.hung: list[Watcher] = []
        self.page_size: int | None = None
        """Serve at most this many items a page, whatever the client asks for (as a server
        may: a client follows ``continue`` until there is none)."""
        self.page_faults: list[PageFault] = []

    # --- faults ------------------------------------------------------------------------------

    def answer_lists(self, plural: str, *bodies: Any) -> None:
        """Serve ``bodies`` (any JSON) to the next list requests of ``plural``, one each."""
        self.list_answers.setdefault(plural, []).extend(bodies)

    def fail_page(
        self,
        plural: str,
        status: int,
        *,
        selector: str = "",
        then: Callable[[], None] | None = None,
    ) -> None:
        """Answer the next request for page 2 or later of a list of ``plural`` (whose label
        selector contains ``selector``) with ``status`` (410: the ``continue`` token expired,
        as kube-apiserver says once its version is compacted); ``then`` runs as that answer is
        made: what changes on the server before the client lists again."""
        self.page_faults.append(PageFault(plural, status, selector, then))

    def inject(self, plural: str, event: Any) -> int:
        """Send ``event`` (any JSON) to every open watch of ``plural``."""
        sent = 0
        for w in list(self.watchers):
            if w.res.plural == plural:
                w.queue.put_nowait(("event", event))
                sent += 1
        return sent

    def hang_watches(self) -> int:
        """Every open watch stays open and says nothing more (a hung proxy or connection)."""
        hung = list(self.watchers)
        self.watchers.clear()
        self.hung += hung
        return len(hung)

    def restart(self, *, deleted_meanwhile: Iterable[Obj] = (), reuse: bool = False) -> int:
        """Come back with a new history: every watch ends, the objects (less those deleted
        meanwhile) are renumbered from 1, and no old version means anything any more. With
        ``reuse``, the server then takes any version asked for (its numbers are reused)."""
        for obj in deleted_meanwhile:
            self.objects.pop(self._key(self.resource_of(obj), obj), None)
        self.drop_watches(partial=False)
        self.history.clear()
        self.compacted = 0
        self.rv = 1
        for key, obj in list(self.objects.items()):
            self.rv += 1
            renumbered = copy.deepcopy(obj)
            renumbered["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = renumbered
        self.checks_versions = not reuse
        return self.rv

    # --- HTTP --------------------------------------------------------------------------------

    async def stop(self) -> None:
        for w in self.hung:
            w.queue.put_nowait(("end", None))
        await super().stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.unreachable:
            self.requests.append((request.path, dict(request.query)))
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the API server is down (test)")
        if self.refuse is not None:
            self.requests.append((request.path, dict(request.query)))
            return web.json_response(
                _status_obj(self.refuse, "InternalError", "refused by the test"),
                status=self.refuse,
            )
        return await super()._handle(request)

    def _ahead(self, query: dict[str, str]) -> web.Response | None:
        asked = query.get("resourceVersion") or "0"
        if self.checks_versions and asked.isdigit() and int(asked) > self.rv:
            return web.json_response(too_large(int(asked), self.rv), status=504)
        return None

    def _list(self, w: Watcher, query: dict[str, str]) -> web.Response:
        pending = self.list_answers.get(w.res.plural)
        if pending:
            return web.json_response(pending.pop(0))
        fault = next((f for f in self.page_faults if f.hits(w.res.plural, query)), None)
        if fault is not None:
            self.page_faults.remove(fault)
            return fault.answer()
        if self.page_size is not None:
            asked = int(query.get("limit") or 0) or self.page_size
            query = {**query, "limit": str(min(asked, self.page_size))}
        return self._ahead(query) or super()._list(w, query)

    async def _watch(
        self, request: web.Request, w: Watcher, query: dict[str, str]
    ) -> web.StreamResponse:
        return self._ahead(query) or await super()._watch(request, w, query)
