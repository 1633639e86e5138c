"""The shape of a watched object, checked before ``LiqoJoin`` reads it.

The API server validates what it stores, but a CRD without a schema, an old CRD, a proxy or a
bug can hand the agent anything: a ``spec`` that is a string, labels that are a list, an IP that
is a number. The join and its readers (``objects``) read objects with plain ``dict.get`` chains,
so each field they read is listed here with its type; an object with a field of the wrong type is
refused with one line naming the object and the field, and handled as if it had been deleted (what
it contributed goes: an object we cannot read opens nothing). Values of the right type that mean nothing (an
IPv6 address, ``10.0.0.0/33``) are the join's to ignore, with a log line of its own.

Paths: ``a.b`` a key of a mapping, ``a[]`` every element of a list, ``a.*`` every value of a
mapping. A field that is absent or null passes, but for ``metadata`` (required) and ``spec`` and
``status`` (null refused).
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

COMMON: dict[str, type] = {
    "metadata": dict,
    "metadata.name": str,
    "metadata.namespace": str,
    "metadata.labels": dict,
    "metadata.labels.*": str,
    "metadata.annotations": dict,
    "metadata.annotations.*": str,
    "spec": dict,
    "status": dict,
}

_CIDRS = {
    "cidr": dict,
    "cidr.pod": list,
    "cidr.pod[]": str,
    "cidr.external": list,
    "cidr.external[]": str,
}

BY_KIND: dict[str, dict[str, type]] = {
    "ConfigMap": {"data": dict, "data.*": str},
    "Network": {"spec.cidr": str},
    "IP": {"spec.ip": str},
    "ForeignCluster": {"spec.clusterID": str},
    "Configuration": {
        "spec.remote": dict,
        "status.remote": dict,
        **{f"spec.remote.{k}": t for k, t in _CIDRS.items()},
        **{f"status.remote.{k}": t for k, t in _CIDRS.items()},
    },
    "PeeringSecurity": {
        "spec.clusterID": str,
        "spec.securityMode": str,
        "spec.securityAudit": bool,
    },
    "Pod": {
        "spec.nodeName": str,
        "status.phase": str,
        "status.podIP": str,
        "status.podIPs": list,
        "status.podIPs[]": dict,
        "status.podIPs[].ip": str,
    },
    "NamespaceOffloading": {
        "status.remoteNamespacesConditions": dict,
        "status.remoteNamespacesConditions.*": list,
        "status.remoteNamespacesConditions.*[]": dict,
        "status.remoteNamespacesConditions.*[].type": str,
        "status.remoteNamespacesConditions.*[].status": str,
    },
    "GatewayServer": {"spec.endpoint": dict, "spec.endpoint.ports": list},
    "GatewayClient": {"spec.endpoint": dict, "spec.endpoint.ports": list},
    "VirtualNode": {
        "spec.clusterID": str,
        "spec.vkOptionsTemplateRef": dict,
        "spec.vkOptionsTemplateRef.name": str,
        "spec.vkOptionsTemplateRef.namespace": str,
    },
    "VkOptionsTemplate": {
        "spec.reflectorsConfig": dict,
        "spec.reflectorsConfig.*": dict,
        "spec.extraArgs": list,
    },
    "EndpointSlice": {
        "addressType": str,
        "endpoints": list,
        "endpoints[]": dict,
        "endpoints[].addresses": list,
        "endpoints[].addresses[]": str,
        "endpoints[].nodeName": str,
    },
}

_NAMES: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
NOT_NULL = ("metadata", "spec", "status")
"""Present but null: refused too (the join reads ``obj.get("spec", {})``)."""


_Check = tuple[tuple[str, ...], type, bool]
"""A field's path as steps (``[]`` a step of its own), its type, and whether null is refused."""


def _checks(fields: Mapping[str, type]) -> tuple[_Check, ...]:
    return tuple(
        (tuple(path.replace("[]", ".[]").split(".")), want, path.endswith("[]"))
        for path, want in fields.items()
    )


# Split once, not on every event: ``problem`` runs for every object the agent is sent.
_COMMON_CHECKS = _checks(COMMON)
_CHECKS = {kind: _checks(COMMON | fields) for kind, fields in BY_KIND.items()}


def problem(kind: str, obj: Any) -> str | None:
    """The first field of ``obj`` (of kind ``kind``) that is not of the type the join reads,
    as ``"<path> is <type>, expected <type>"``; None if the object can be read."""
    if not isinstance(obj, Mapping):
        return f"the object is {type(obj).__name__}, expected a mapping"
    if not isinstance(obj.get("metadata"), Mapping):
        return "metadata is missing or not a mapping"
    for key in NOT_NULL:
        if key in obj and obj[key] is None:
            return f"{key} is null, expected a mapping"
    for steps, want, element in _CHECKS.get(kind, _COMMON_CHECKS):
        # A null element of a list is refused too; a null field is absent.
        found = _first_wrong(obj, steps, 0, want, element)
        if found is not None:
            where, value = found
            return f"{where[1:]} is {type(value).__name__}, expected {_NAMES[want]}"
    return None


def _first_wrong(
    value: Any, steps: tuple[str, ...], i: int, want: type, element: bool
) -> tuple[str, Any] | None:
    """The first place ``steps[i:]`` reaches (depth first) whose value is not a ``want``, as
    (its path from here, each step with a leading ``.`` or as ``[n]``; the value); None if every
    place is right. A step through a value of the wrong type reaches nothing (that value's own
    path reports it). The path is built only for the place found."""
    if i == len(steps):
        if (value is not None or element) and not isinstance(value, want):
            return "", value
        return None
    step = steps[i]
    if step == "[]":
        if isinstance(value, list):
            for n, v in enumerate(value):
                if (found := _first_wrong(v, steps, i + 1, want, element)) is not None:
                    return f"[{n}]{found[0]}", found[1]
    elif step == "*":
        if isinstance(value, Mapping):
            for k, v in value.items():
                if (found := _first_wrong(v, steps, i + 1, want, element)) is not None:
                    return f".{k}{found[0]}", found[1]
    elif (
        isinstance(value, Mapping)
        and step in value
        and (found := _first_wrong(value[step], steps, i + 1, want, element)) is not None
    ):
        return f".{step}{found[0]}", found[1]
    return None


def skeleton(obj: Any) -> dict[str, Any]:
    """What is left of an unreadable object to delete it by: its name and namespace, if they
    are strings."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    out = {k: meta[k] for k in ("name", "namespace") if isinstance(meta.get(k), str)}
    return {"metadata": out}


# --- what is kept of an object -------------------------------------------------------------------

KEPT_META = ("metadata.resourceVersion", "metadata.uid")
"""Read by the reflector (``watch``): the version an object is at, and its identity."""
UNIQUE_META = ("name", "resourceVersion", "uid")
"""Kept as they come: no two objects of a kind share them."""
TYPE_ONLY = ("spec", "status")
"""Checked for their type only when no field of the kind below them is read."""

_Tree = dict[str, "_Tree"]


def _tree(paths: Iterable[str]) -> _Tree:
    root: _Tree = {}
    for path in paths:
        node = root
        for step in path.replace("[]", ".[]").split("."):
            node = node.setdefault(step, {})
    return root


_TREES: dict[str, _Tree] = {}


def _tree_of(kind: str) -> _Tree:
    tree = _TREES.get(kind)
    if tree is None:
        tree = _TREES[kind] = _tree([*COMMON, *BY_KIND.get(kind, {}), *KEPT_META])
    return tree


def kept(kind: str, obj: Any) -> Any:
    """What the source keeps of an object of kind ``kind``: the fields ``problem`` checks (which
    are every field the join reads) and ``KEPT_META``; ``spec`` and ``status`` as empty mappings
    when nothing in them is read. Everything else goes (containers, conditions, managed fields:
    most of a pod's bytes), and strings are interned (labels, namespaces and node names repeat
    in every pod). A value of an unexpected type is kept as it is, so ``problem`` finds the same
    fault in what is kept as in the object; the join, reading only these fields, sees the same
    object. Mappings of strings outside lists (labels, annotations, a pod's ``spec.nodeName``)
    are shared by every object that has the same one (``_shared``): the pods of one workload
    hold one labels mapping."""
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for key, sub in _tree_of(kind).items():
        if key not in obj:
            continue
        value = obj[key]
        if key in TYPE_ONLY and not sub:
            out[key] = {} if isinstance(value, Mapping) else value
        elif key == "metadata" and isinstance(value, Mapping):
            # Unique (its name, uid, version): neither shared nor its strings interned, which
            # would only grow the interpreter's table; its labels and annotations are.
            meta = {k: value[k] for k in UNIQUE_META if k in value}
            rest = {k: t for k, t in sub.items() if k not in UNIQUE_META}
            meta.update(_pruned(value, rest, share=False))
            out[key] = meta
        else:
            out[key] = _kept(value, sub)
    _status_ip(out)
    return out


class _Shared(dict[str, str]):
    """A mapping held by every kept object that has an equal one. Never written: the join and
    the reflector only read what they are handed."""

    __slots__ = ("__weakref__",)


_SHARED: weakref.WeakValueDictionary[tuple[tuple[str, str], ...], _Shared] = (
    weakref.WeakValueDictionary()
)
"""Gone with the last object that holds it."""


def _shared(value: dict[str, Any]) -> dict[str, Any]:
    if not all(isinstance(v, str) for v in value.values()):
        return value
    key = tuple(value.items())
    found = _SHARED.get(key)
    if found is None:
        found = _SHARED[key] = _Shared(value)
    return found


def _pruned(
    value: Mapping[str, Any], tree: _Tree, in_list: bool = False, share: bool = True
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key in value:
            out[sys.intern(key)] = _kept(value[key], sub, in_list)
    # Not inside a list: a list's elements (a pod's IPs, a slice's endpoints) seldom repeat.
    return _shared(out) if share and not in_list else out


def _status_ip(kept: dict[str, Any]) -> None:
    """A pod's ``status.podIP`` is its first ``podIPs`` entry: one string for both."""
    status = kept.get("status")
    if isinstance(status, dict) and isinstance(ips := status.get("podIPs"), list) and ips:
        first = ips[0]
        if isinstance(first, dict) and first.get("ip") == status.get("podIP"):
            status["podIP"] = first["ip"]


def _kept(value: Any, tree: _Tree, in_list: bool = False) -> Any:
    if not tree:  # a field read whole
        return value if in_list else _interned(value)
    if "[]" in tree:
        if not isinstance(value, list):
            return value
        return [_kept(v, tree["[]"], True) for v in value]
    if "*" in tree:
        if not isinstance(value, Mapping):
            return value
        out = {
            (sys.intern(k) if isinstance(k, str) else k): _kept(v, tree["*"], in_list)
            for k, v in value.items()
        }
        return out if in_list else _shared(out)
    return _pruned(value, tree, in_list) if isinstance(value, Mapping) else value


def _interned(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, list):
        return [_interned(v) for v in value]
    if isinstance(value, Mapping):
        return {_interned(k): _interned(v) for k, v in value.items()}
    return value
