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

from collections.abc import Iterator, Mapping
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
    for path, want in (COMMON | BY_KIND.get(kind, {})).items():
        element = path.endswith("[]")  # a null element of a list is refused too
        for where, value in _walk(obj, path.replace("[]", ".[]").split("."), ""):
            if (value is not None or element) and not isinstance(value, want):
                return f"{where} is {type(value).__name__}, expected {_NAMES[want]}"
    return None


def _walk(value: Any, steps: list[str], where: str) -> Iterator[tuple[str, Any]]:
    """(path, value) of every place ``steps`` reaches; a step through a value of the wrong
    type reaches nothing (that value's own path reports it)."""
    if not steps:
        yield where, value
        return
    step, rest = steps[0], steps[1:]
    if step == "[]":
        if isinstance(value, list):
            for i, v in enumerate(value):
                yield from _walk(v, rest, f"{where}[{i}]")
    elif step == "*":
        if isinstance(value, Mapping):
            for k, v in value.items():
                yield from _walk(v, rest, f"{where}.{k}")
    elif isinstance(value, Mapping) and step in value:
        yield from _walk(value[step], rest, f"{where}.{step}" if where else step)


def skeleton(obj: Any) -> dict[str, Any]:
    """What is left of an unreadable object to delete it by: its name and namespace, if they
    are strings."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    out = {k: meta[k] for k in ("name", "namespace") if isinstance(meta.get(k), str)}
    return {"metadata": out}
