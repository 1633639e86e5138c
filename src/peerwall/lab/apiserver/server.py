"""An in-process Kubernetes API server: the emulated clusters' API (tests, ``peerwall liqo emulate``).

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

It authenticates and authorizes as a real one does, so that a client that works here has the
rights it needs and no more: every request carries a bearer token (``fake-token`` is an admin in
``system:masters``; ``service_account_token`` mints one per ServiceAccount), and is allowed only if
the Roles, ClusterRoles (aggregated ones filled) and bindings the fake holds allow it
(``peerwall.lab.apiserver.rbac``), with Kubernetes' escalation check on RBAC writes. Clients write too: get one
object, create (POST), replace (PUT), patch (merge, strategic as merge, server-side apply as a
merge) and delete, with the discovery documents ``kubectl`` reads first. With ``tls=True`` it
serves HTTPS with a certificate of its own test CA (``ca_file``); ``netns`` puts its socket in a
network namespace, where a process reaches it at 127.0.0.1 as a pod reaches its API server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import re
import shutil
import socket
import ssl
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from aiohttp import web

from peerwall.lab.apiserver.pki import Pki, make_pki
from peerwall.lab.apiserver.rbac import RBAC_GROUP, Policy, Request, User

Obj = dict[str, Any]

HERE = Path(__file__).parent
CRD_FILES = tuple(sorted((HERE / "crds").glob("*.yaml")))
"""Liqo's CRDs (``crds/README.md``) and peerwall's own (a copy of ``deploy/crds``, checked equal by
``tests/agent/kube/test_kube_fake.py``)."""
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
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True),
    Resource(RBAC_GROUP, "v1", "clusterroles", "ClusterRole", False),
    Resource(RBAC_GROUP, "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    Resource(RBAC_GROUP, "v1", "roles", "Role", True),
    Resource(RBAC_GROUP, "v1", "rolebindings", "RoleBinding", True),
)
RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
ADMIN = User("kubernetes-admin", frozenset({"system:masters", "system:authenticated"}))


def crd_resources(files: Iterable[Path] = CRD_FILES) -> list[Resource]:
    out: list[Resource] = []
    for f in files:
        out += _crd_file_resources(f.read_text())
    return out


@cache
def _crd_file_resources(text: str) -> tuple[Resource, ...]:
    """The served versions of the CRDs in one file's ``text``, parsed once per process: every
    fake server reads the same ~1 MB of CRDs (0.24 s of CPU each time, with libyaml), and a lab's
    API servers, the tests' in-process ones and their harness make many. Keyed by the text, so
    a file written anew is parsed anew. Nothing writes to a schema once parsed."""
    out = []
    # libyaml where present: VirtualNode's CRD alone is 700 kB (0.6 s in pure Python).
    for doc in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
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
    return tuple(out)


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
            core_validator(obj["kind"], obj["apiVersion"]).validate(obj)
        except jsonschema.ValidationError as exc:
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


@cache
def core_validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """The validator ``kubernetes_validate.validate(obj, K8S_VERSION, strict=True)`` checks a core
    object of ``kind`` with, built as it builds it (the same schema files of the same version,
    Draft 2020-12, its ``_definitions`` as the registry) but once per process: the library reads
    and parses the kind's schema and the 1 MB of definitions again on every call, ~10 ms of CPU
    per object created. ``tests/agent/kube/test_kube_fake.py`` checks both give the same
    verdicts and messages."""
    from referencing import Registry
    from referencing import Resource as Document

    utils = kubernetes_validate.utils
    want = utils.major_minor(K8S_VERSION)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= want][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    # rbac.authorization.k8s.io/v1 -> rbac-v1, as the library names its files.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", want)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(
            version=want, kind=kind, api_version=api_version
        ) from None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", want)
    registry = Document.from_contents(definitions) @ (Document.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


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
        self,
        *,
        validate_objects: bool = True,
        crd_files: Iterable[Path] = CRD_FILES,
        tls: bool = False,
        netns: str | None = None,
        binds: Sequence[tuple[str | None, str, int]] = (),
        pki_dir: Path | None = None,
    ) -> None:
        """``binds``: more sockets to serve on, each (network namespace or None for this one,
        address, port); ``pki_dir``: keep the CA and certificate there (made once, reused by a
        later server: kubeconfigs and ServiceAccount volumes stay valid), naming every bound
        address."""
        self.tls = tls
        self.netns = netns
        self.binds = tuple(binds)
        self.pki_dir = pki_dir
        self.ca_file: Path | None = None
        self._pki_dir: str | None = None
        self.tokens: dict[str, User] = {"fake-token": ADMIN}
        self.policy = Policy()
        self.denied: list[str] = []
        """The message of every request refused (401 or 403), in order."""
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
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        ctx = None
        if self.tls:
            ips = [a for _, a, _ in self.binds if a != "127.0.0.1"]
            if self.pki_dir is not None and (self.pki_dir / "server.crt").exists():
                pki = Pki(
                    self.pki_dir / "ca.crt",
                    self.pki_dir / "server.crt",
                    self.pki_dir / "server.key",
                )
            elif self.pki_dir is not None:
                pki = make_pki(self.pki_dir, ips)
            else:
                self._pki_dir = tempfile.mkdtemp(prefix="fake-kube-pki-")
                pki = make_pki(Path(self._pki_dir), ips)
            self.ca_file = pki.ca_cert
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(pki.cert, pki.key)
        sock = self._socket()
        site = web.SockSite(self._runner, sock, ssl_context=ctx)
        await site.start()
        for netns, address, port in self.binds:
            more = self._socket(netns, address, port)
            await web.SockSite(self._runner, more, ssl_context=ctx).start()
        port = sock.getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        return self.url

    def _socket(
        self, netns: str | None = None, address: str = "127.0.0.1", port: int = 0
    ) -> socket.socket:
        """Bound in ``netns`` (default: the server's own) if given: the socket stays there while
        the server runs here."""
        netns = netns or self.netns
        entered: Any = contextlib.nullcontext()
        if netns is not None:
            from peerwall.nsenter import entered as enter_netns

            entered = enter_netns(netns)
        with entered:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def stop(self) -> None:
        for w in list(self.watchers):
            w.queue.put_nowait(("end", None))
        if self._runner is not None:
            await self._runner.cleanup()
        if self._pki_dir is not None:
            shutil.rmtree(self._pki_dir, ignore_errors=True)

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- identities --------------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str) -> str:
        """A bearer token of the ServiceAccount (the ServiceAccount object is not required, as
        with a projected token of a deleted one: RBAC alone decides)."""
        token = f"sa-{namespace}-{name}-{uuid.uuid4().hex}"
        self.tokens[token] = User.service_account(namespace, name)
        return token

    def service_account_volume(self, directory: Path, namespace: str, name: str) -> Path:
        """What Kubernetes mounts at /var/run/secrets/kubernetes.io/serviceaccount in a pod of
        that ServiceAccount: ``token``, ``ca.crt`` and ``namespace``."""
        assert self.ca_file is not None, "a pod's API server speaks TLS: start with tls=True"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(self.service_account_token(namespace, name))
        (directory / "ca.crt").write_bytes(self.ca_file.read_bytes())
        (directory / "namespace").write_text(namespace)
        return directory

    def kubeconfig(self, path: Path, token: str = "fake-token") -> Path:
        cluster: Obj = {"server": self.url}
        if self.ca_file is not None:
            cluster["certificate-authority"] = str(self.ca_file)
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": cluster}],
                    "users": [{"name": "fake", "user": {"token": token}}],
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
        if res.kind in RBAC_KINDS:
            self.policy.put(new)
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
        if res.kind in RBAC_KINDS:
            self.policy.remove(old)
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

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) of a resource path."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise web.HTTPNotFound(text=f"no route {path}")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not 1 <= len(rest) <= 3 or (group, version, rest[0]) not in self.resources:
            raise web.HTTPNotFound(text=f"no resource at {path}")
        res = self.resources[(group, version, rest[0])]
        if ns is not None and not res.namespaced:
            raise web.HTTPNotFound(text=f"{res.plural} is not namespaced")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        return res, ns, name, sub

    def _discovery(self, path: str) -> Obj | None:
        """The legacy discovery documents (what kubectl reads to find a resource's path)."""
        parts = [p for p in path.split("/") if p]
        groups: dict[str, list[str]] = {}
        for r in self.resources.values():
            groups.setdefault(r.group, [])
            if r.version not in groups[r.group]:
                groups[r.group].append(r.version)
        if parts == ["version"]:
            return {"major": "1", "minor": K8S_VERSION.split(".")[1], "gitVersion": "v1.33.0"}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in sorted(groups.items())
                    if g
                ],
            }
        if parts == ["api", "v1"]:
            group, version = "", "v1"
        elif len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []):
            group, version = parts[1], parts[2]
        else:
            return None
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }
                for r in self.resources.values()
                if (r.group, r.version) == (group, version)
            ],
        }

    def _authenticate(self, request: web.Request) -> User | None:
        auth = request.headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    def _deny(self, code: int, reason: str, message: str) -> web.Response:
        self.denied.append(message)
        return _status(code, reason, message)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append((request.path, query))
        user = self._authenticate(request)
        if user is None:
            return self._deny(401, "Unauthorized", "Unauthorized")
        if request.method == "GET":
            doc = self._discovery(request.path)
            if doc is not None:
                return web.json_response(doc)
        try:
            res, ns, name, sub = self._route(request.path)
            if sub is not None:
                raise web.HTTPNotFound(text=f"no subresource {sub} of {res.plural}")
            labels = label_matcher(query.get("labelSelector"))
            fields = field_matcher(query.get("fieldSelector"))
        except web.HTTPException as exc:
            return _status(exc.status, exc.reason, exc.text or "")
        watching = query.get("watch") in ("1", "true")
        verb = {
            "GET": "get" if name else ("watch" if watching else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }.get(request.method)
        if verb is None or (name is None) != (verb in ("create", "list", "watch")):
            return _status(405, "MethodNotAllowed", f"{request.method} {request.path}")
        # A list or watch selecting one name is authorized as that name (resourceNames rules).
        selected = re.fullmatch(r"metadata\.name==?([^,]+)", query.get("fieldSelector", ""))
        authz_name = name or (selected.group(1) if selected else None)
        req = Request(verb, res.group, res.plural, ns, authz_name)
        if not self.policy.allows(user, req):
            return self._deny(403, "Forbidden", _forbidden(user, req))
        if verb in ("list", "watch"):
            watcher = Watcher(res, ns, labels, fields, query.get("allowWatchBookmarks") == "true")
            if watching:
                return await self._watch(request, watcher, query)
            return self._list(watcher, query)
        assert name is not None or verb == "create"
        try:
            if verb == "get":
                return web.json_response(self._get(res, ns, str(name)))
            if verb == "delete":
                gone = self.delete(self._get(res, ns, str(name)))
                return web.json_response(gone)
            body = await self._body(request)
            if verb == "patch":
                current = self._find(res, ns, str(name))
                if current is None and "apply-patch" not in (request.content_type or ""):
                    raise _NotFound(res, str(name))
                body = _merge_patch(current or {}, body)
            meta = body.setdefault("metadata", {})
            if res.namespaced and meta.setdefault("namespace", ns) != ns:
                raise Invalid(f"the namespace of the object ({meta['namespace']}) does not "
                              f"match the namespace on the request ({ns})")  # fmt: skip
            if name is not None and meta.get("name") != name:
                raise Invalid(f"the name of the object ({meta.get('name')}) does not match the "
                              f"name on the URL ({name})")  # fmt: skip
            if body.get("kind") in RBAC_KINDS:
                why = self.policy.may_write(user, body)
                if why is not None:
                    return self._deny(403, "Forbidden", why)
            if verb == "update":
                current = self._get(res, ns, str(name))
                want = meta.get("resourceVersion")
                if want and want != current["metadata"]["resourceVersion"]:
                    return _status(409, "Conflict", f"{_name(body)}: the object has been modified")
            exists = self._find(res, ns, meta.get("name", "")) is not None
            if verb == "create" and exists:
                return _status(
                    409, "AlreadyExists", f'{res.plural} "{meta.get("name")}" already exists'
                )
            written = self.apply(body) if verb != "create" else self.create(body)
            return web.json_response(written, status=201 if verb == "create" else 200)
        except _NotFound as exc:
            return _status(404, "NotFound", str(exc))
        except Invalid as exc:
            return _status(422, "Invalid", str(exc))

    def _find(self, res: Resource, ns: str | None, name: str) -> Obj | None:
        found = self.objects.get((res, ns if res.namespaced else None, name))
        return copy.deepcopy(found) if found is not None else None

    def _get(self, res: Resource, ns: str | None, name: str) -> Obj:
        found = self._find(res, ns, name)
        if found is None:
            raise _NotFound(res, name)
        return found

    @staticmethod
    async def _body(request: web.Request) -> Obj:
        text = await request.text()
        try:
            body = json.loads(text) if "yaml" not in request.content_type else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise Invalid(f"undecodable body: {exc}") from None
        if not isinstance(body, dict):
            raise Invalid("the body is not an object")
        return body

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


class _NotFound(Exception):
    def __init__(self, res: Resource, name: str) -> None:
        what = f"{res.plural}.{res.group}" if res.group else res.plural
        super().__init__(f'{what} "{name}" not found')


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; a strategic merge patch's directives (keys starting with $)
    are dropped, which makes it a merge patch (enough for the objects tests write)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _forbidden(user: User, req: Request) -> str:
    """As the API server words it (``k8s.io/apiserver`` ``forbiddenMessage``)."""
    res = f"{req.resource}.{req.group}" if req.group else req.resource
    name = f' "{req.name}"' if req.name else ""
    where = f' in the namespace "{req.namespace}"' if req.namespace else " at the cluster scope"
    return (
        f'{res}{name} is forbidden: User "{user.name}" cannot {req.verb} resource '
        f'"{req.resource}" in API group "{req.group}"{where}'
    )


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
