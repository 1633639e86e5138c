"""An in-process Kubernetes API server for tests: the list/watch protocol, nothing else.

It speaks what a client of the real one sees: JSON lists with ``metadata.resourceVersion`` (paged
with ``limit``/``continue``), ``labelSelector`` and ``fieldSelector``, namespaced and
cluster-scoped paths of core and custom groups, and ``?watch=1&resourceVersion=N`` as a chunked
stream of ``{"type", "object"}`` lines: events after N, then live ones, with bookmarks when asked
(``allowWatchBookmarks``), ``DELETED`` when an object leaves a watch's selector and ``ADDED`` when
it enters it, and an ``ERROR`` event with a 410 ``Expired`` Status when N was compacted. One
resourceVersion counter covers every resource, as etcd's revision does.

Tests drive it directly: ``create``/``update``/``apply``/``delete`` objects (each validated: core
kinds with kubernetes-validate, custom ones against their CRD's schema), ``drop_watches`` (cut
every stream mid-message), ``compact`` (forget history), ``bookmark`` (send one to every watch).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from aiohttp import web

Obj = dict[str, Any]

HERE = Path(__file__).parent
REPO = HERE.parent.parent
CRD_FILES = (
    *sorted((HERE / "crds").glob("*.yaml")),
    REPO / "deploy" / "crds" / "peeringsecurity.yaml",
)
K8S_VERSION = "1.33"
CREATED = "2026-01-01T00:00:00Z"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    schema: Obj | None = field(default=None, compare=False, hash=False)
    """openAPIV3Schema for custom resources; core kinds are checked by kubernetes-validate."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def custom(self) -> bool:
        return self.schema is not None


CORE = (
    Resource("", "v1", "configmaps", "ConfigMap", True),
    Resource("", "v1", "namespaces", "Namespace", False),
    Resource("", "v1", "nodes", "Node", False),
    Resource("", "v1", "pods", "Pod", True),
    Resource("", "v1", "services", "Service", True),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
)


def crd_resources(files: Iterable[Path] = CRD_FILES) -> list[Resource]:
    out = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served", True):
                    out.append(
                        Resource(
                            spec["group"],
                            v["name"],
                            spec["names"]["plural"],
                            spec["names"]["kind"],
                            spec["scope"] == "Namespaced",
                            v["schema"]["openAPIV3Schema"],
                        )
                    )
    return out


# --- validation --------------------------------------------------------------------------------


class Invalid(ValueError):
    pass


def _unknown_fields(schema: Obj, value: Any, path: str) -> Iterator[str]:
    """Fields a structural schema does not declare (the API server would prune them silently;
    here they are a mistake in a test's object)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields") or path.endswith(".metadata"):
            return
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if props is not None and k in props:
                yield from _unknown_fields(props[k], v, f"{path}.{k}")
            elif isinstance(extra, dict):
                yield from _unknown_fields(extra, v, f"{path}.{k}")
            elif props is not None:
                yield f"{path}.{k}"
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            yield from _unknown_fields(schema["items"], v, f"{path}[{i}]")


def validate(res: Resource, obj: Obj) -> None:
    if obj.get("apiVersion") != res.api_version or obj.get("kind") != res.kind:
        raise Invalid(
            f"expected {res.api_version} {res.kind}, got {obj.get('apiVersion')} {obj.get('kind')}"
        )
    if res.schema is None:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise Invalid(f"{res.kind} {_name(obj)}: {exc.message}") from None
        return
    try:
        jsonschema.Draft7Validator(res.schema).validate(obj)
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path))
        raise Invalid(f"{res.kind} {_name(obj)}: {where}: {exc.message}") from None
    unknown = list(_unknown_fields(res.schema, obj, ""))
    if unknown:
        raise Invalid(f"{res.kind} {_name(obj)}: unknown fields {', '.join(unknown)}")


def _name(obj: Obj) -> str:
    m = obj.get("metadata", {})
    return f"{m.get('namespace')}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))


# --- selectors ---------------------------------------------------------------------------------

_REQ = re.compile(
    r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9_.-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$"
)


def _split(selector: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def label_matcher(selector: str | None) -> Any:
    reqs = []
    for part in _split(selector or ""):
        m = _REQ.match(part)
        if m is None:
            raise web.HTTPBadRequest(text=f"unable to parse requirement: {part!r}")
        neg, key, op, value, setop, values = m.groups()
        reqs.append((neg, key, op, value, setop, [v.strip() for v in (values or "").split(",")]))

    def matches(labels: dict[str, str]) -> bool:
        for neg, key, op, value, setop, values in reqs:
            has = key in labels
            if op in ("=", "=="):
                ok = has and labels[key] == value
            elif op == "!=":
                ok = not has or labels[key] != value
            elif setop == "in":
                ok = has and labels[key] in values
            elif setop == "notin":
                ok = not has or labels[key] not in values
            else:
                ok = not has if neg else has
            if not ok:
                return False
        return True

    return matches


FIELDS = {"metadata.name": ("name",), "metadata.namespace": ("namespace",)}


def field_matcher(selector: str | None) -> Any:
    reqs = []
    for part in _split(selector or ""):
        m = re.match(r"^\s*([a-zA-Z.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if m is None or m.group(1) not in FIELDS:
            raise web.HTTPBadRequest(text=f"field label not supported: {part!r}")
        reqs.append((FIELDS[m.group(1)][0], m.group(2), m.group(3)))

    def matches(obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        return all((meta.get(f) == v) == (op != "!=") for f, op, v in reqs)

    return matches


# --- the server --------------------------------------------------------------------------------


@dataclass
class Change:
    rv: int
    res: Resource
    type: str
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    res: Resource
    namespace: str | None
    labels: Any
    fields: Any
    bookmarks: bool
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)

    def selects(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return bool(self.labels(meta.get("labels") or {}) and self.fields(obj))

    def event_for(self, change: Change) -> Obj | None:
        """The event this watch sees for a change, if any (selectors apply to both states)."""
        was, now = self.selects(change.old), self.selects(change.obj)
        if change.type == "DELETED":
            return {"type": "DELETED", "object": change.obj} if was else None
        if was and now:
            return {"type": "MODIFIED", "object": change.obj}
        if now:
            return {"type": "ADDED", "object": change.obj}
        if was:
            return {"type": "DELETED", "object": change.obj}
        return None


class FakeApiServer:
    def __init__(
        self, *, validate_objects: bool = True, crd_files: Iterable[Path] = CRD_FILES
    ) -> None:
        self.resources = {
            (r.group, r.version, r.plural): r for r in (*CORE, *crd_resources(crd_files))
        }
        self.validate_objects = validate_objects
        self.rv = 1
        self.compacted = 0
        self.watch_horizon = 0
        """Watches from before this version get 410, lists at it still answer (a watch cache
        whose window is shorter than etcd's history)."""
        self.short_watches = False
        """End every watch stream at once, without an event (a server or proxy misbehaving)."""
        self.objects: dict[tuple[Resource, str | None, str], Obj] = {}
        self.history: list[Change] = []
        self.watchers: set[Watcher] = set()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._snapshots: dict[str, list[Obj]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        for w in list(self.watchers):
            w.queue.put_nowait(("end", None))
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    # --- test controls ---------------------------------------------------------------------

    def resource_of(self, obj: Obj) -> Resource:
        group, _, version = obj["apiVersion"].rpartition("/")
        for r in self.resources.values():
            if r.group == group and r.version == version and r.kind == obj["kind"]:
                return r
        raise Invalid(f"no resource serves {obj['apiVersion']} {obj['kind']}")

    def _key(self, res: Resource, obj: Obj) -> tuple[Resource, str | None, str]:
        meta = obj["metadata"]
        ns = meta.get("namespace") if res.namespaced else None
        if res.namespaced and not ns:
            raise Invalid(f"{res.kind} {meta.get('name')}: namespaced, but no namespace")
        return (res, ns, meta["name"])

    def _write(self, type_: str, obj: Obj) -> Obj:
        res = self.resource_of(obj)
        key = self._key(res, obj)
        old = self.objects.get(key)
        if type_ == "ADDED" and old is not None:
            raise Invalid(f"{res.kind} {_name(obj)} already exists")
        if type_ == "MODIFIED" and old is None:
            raise Invalid(f"{res.kind} {_name(obj)} not found")
        new = copy.deepcopy(obj)
        self.rv += 1
        meta = new["metadata"]
        meta["resourceVersion"] = str(self.rv)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"] if old else CREATED
        if self.validate_objects:
            validate(res, new)
        self.objects[key] = new
        self._publish(Change(self.rv, res, "ADDED" if old is None else "MODIFIED", new, old))
        return copy.deepcopy(new)

    def create(self, obj: Obj) -> Obj:
        return self._write("ADDED", obj)

    def update(self, obj: Obj) -> Obj:
        """Replace an object whole (spec and status, as a controller writing both would)."""
        return self._write("MODIFIED", obj)

    def apply(self, obj: Obj) -> Obj:
        """Create or replace."""
        res = self.resource_of(obj)
        return self._write("MODIFIED" if self._key(res, obj) in self.objects else "ADDED", obj)

    def get(self, obj: Obj) -> Obj | None:
        res = self.resource_of(obj)
        found = self.objects.get(self._key(res, obj))
        return copy.deepcopy(found) if found else None

    def delete(self, obj: Obj) -> Obj:
        """Delete the object ``obj`` names (its apiVersion, kind, name and namespace)."""
        res = self.resource_of(obj)
        old = self.objects.pop(self._key(res, obj), None)
        if old is None:
            raise Invalid(f"{res.kind} {_name(obj)} not found")
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._publish(Change(self.rv, res, "DELETED", gone, old))
        return gone

    def _publish(self, change: Change) -> None:
        self.history.append(change)
        for w in list(self.watchers):
            if w.res == change.res:
                event = w.event_for(change)
                if event is not None:
                    w.queue.put_nowait(("event", event))

    def compact(self) -> int:
        """Forget all history: a watch from any older resourceVersion now gets 410 Gone."""
        self.compacted = self.rv
        self.history.clear()
        return self.compacted

    def expire_watches(self) -> int:
        """Watches from any older resourceVersion now get 410 Gone; lists at one still answer."""
        self.watch_horizon = self.rv
        return self.watch_horizon

    def bookmark(self) -> int:
        """Send a BOOKMARK at the current resourceVersion to every watch that allows them."""
        sent = 0
        for w in list(self.watchers):
            if w.bookmarks:
                obj = {
                    "kind": w.res.kind,
                    "apiVersion": w.res.api_version,
                    "metadata": {"resourceVersion": str(self.rv)},
                }
                w.queue.put_nowait(("event", {"type": "BOOKMARK", "object": obj}))
                sent += 1
        return sent

    def end_watches(self) -> int:
        """End every watch stream cleanly, as the server's own timeout would."""
        n = len(self.watchers)
        for w in list(self.watchers):
            w.queue.put_nowait(("end", None))
        return n

    def drop_watches(self, *, partial: bool = True) -> int:
        """Cut every watch connection, in the middle of an event line if ``partial``."""
        n = len(self.watchers)
        for w in list(self.watchers):
            w.queue.put_nowait(("drop", partial))
        return n

    def watching(self, plural: str) -> int:
        return sum(1 for w in self.watchers if w.res.plural == plural)

    def lists(self, plural: str) -> int:
        """How many list requests (pages) were served for ``plural``."""
        return sum(
            1 for path, q in self.requests if path.endswith("/" + plural) and "watch" not in q
        )

    # --- HTTP ------------------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Resource, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise web.HTTPNotFound(text=f"no route {path}")
        ns = None
        if len(rest) == 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if len(rest) != 1 or (group, version, rest[0]) not in self.resources:
            raise web.HTTPNotFound(text=f"no resource at {path}")
        res = self.resources[(group, version, rest[0])]
        if ns is not None and not res.namespaced:
            raise web.HTTPNotFound(text=f"{res.plural} is not namespaced")
        return res, ns

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.path, query))
        if request.headers.get("Authorization") != "Bearer fake-token":
            return _status(401, "Unauthorized", "no or wrong bearer token")
        try:
            res, ns = self._route(request.path)
            labels = label_matcher(query.get("labelSelector"))
            fields = field_matcher(query.get("fieldSelector"))
        except web.HTTPException as exc:
            return _status(exc.status, exc.reason, exc.text or "")
        watcher = Watcher(res, ns, labels, fields, query.get("allowWatchBookmarks") == "true")
        if query.get("watch") in ("1", "true"):
            return await self._watch(request, watcher, query)
        return self._list(watcher, query)

    def _list(self, w: Watcher, query: dict[str, str]) -> web.Response:
        since = query.get("resourceVersion") or ""
        if since not in ("", "0"):
            # "Not older than" (or, paged, "exact") that version: gone once compacted; else the
            # current state, which is not older.
            if not since.isdigit():
                return _status(400, "BadRequest", f"invalid resourceVersion {since!r}")
            if int(since) < self.compacted:
                return _status(
                    410, "Expired", f"too old resource version: {since} ({self.compacted})"
                )
        cont = query.get("continue")
        if cont:
            token = json.loads(base64.b64decode(cont))
            items, rv, offset = self._snapshots[token["id"]], token["rv"], token["offset"]
        else:
            found = [(k, o) for k, o in self.objects.items() if k[0] == w.res and w.selects(o)]
            found.sort(key=lambda ko: (ko[0][1] or "", ko[0][2]))
            items = [copy.deepcopy(o) for _, o in found]
            rv, offset = self.rv, 0
        limit = int(query.get("limit") or 0) or len(items) or 1
        page = items[offset : offset + limit]
        meta: Obj = {"resourceVersion": str(rv)}
        if offset + limit < len(items):
            sid = uuid.uuid4().hex
            self._snapshots[sid] = items
            meta["continue"] = base64.b64encode(
                json.dumps({"id": sid, "rv": rv, "offset": offset + limit}).encode()
            ).decode()
        if not w.res.custom:
            # Lists of built-in kinds carry their items' kind once, at the top.
            page = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]
        body = {
            "kind": f"{w.res.kind}List",
            "apiVersion": w.res.api_version,
            "metadata": meta,
            "items": page,
        }
        return web.json_response(body)

    async def _watch(
        self, request: web.Request, w: Watcher, query: dict[str, str]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        since = query.get("resourceVersion") or "0"
        if not since.isdigit():
            await _line(
                resp,
                {
                    "type": "ERROR",
                    "object": _status_obj(400, "BadRequest", f"invalid resourceVersion {since!r}"),
                },
            )
            await resp.write_eof()
            return resp
        n = int(since)
        # Register first, then replay: no await in between, so no change falls in a gap.
        self.watchers.add(w)
        try:
            if n == 0:
                for (r, _, _), o in list(self.objects.items()):
                    if r == w.res and w.selects(o):
                        w.queue.put_nowait(("event", {"type": "ADDED", "object": o}))
            elif n < max(self.compacted, self.watch_horizon):
                oldest = max(self.compacted, self.watch_horizon)
                status = _status_obj(410, "Expired", f"too old resource version: {n} ({oldest})")
                await _line(resp, {"type": "ERROR", "object": status})
                await resp.write_eof()
                return resp
            else:
                for change in self.history:
                    if change.rv > n and change.res == w.res:
                        event = w.event_for(change)
                        if event is not None:
                            w.queue.put_nowait(("event", event))
            if self.short_watches:
                await resp.write_eof()
                return resp
            timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
            deadline = asyncio.get_running_loop().time() + timeout if timeout else None
            while True:
                left = (
                    None
                    if deadline is None
                    else max(0.0, deadline - asyncio.get_running_loop().time())
                )
                try:
                    what, value = await asyncio.wait_for(w.queue.get(), left)
                except TimeoutError:
                    break
                if what == "event":
                    await _line(resp, value)
                elif what == "drop":
                    if value:
                        await resp.write(b'{"type":"MODIFIED","object":{"kind":')
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                else:
                    break
            await resp.write_eof()
            return resp
        finally:
            self.watchers.discard(w)


async def _line(resp: web.StreamResponse, event: Obj) -> None:
    await resp.write(json.dumps(event).encode() + b"\n")


def _status_obj(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status_obj(code, reason, message), status=code)
