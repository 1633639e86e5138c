"""Topology text -> validated, resolved ``Topology``. The caller reads the file; this does no I/O.

Three stages, each reporting every problem it finds as one line naming the field: parsing
(``parse``), the schema (``spec``, whose pydantic errors are translated here into the file's
terms), and the cross-checks (``validate``); then ``resolve`` places pods and selects backends.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from peerwall.errors import ModeInvalid, Problem, TopologyInvalid
from peerwall.model.describe import describe, field_path, quote, quote_hint
from peerwall.model.modes import mode_from
from peerwall.model.parse import (
    DEFAULT_MAX_INPUT_BYTES,
    Document,
    TextStream,
    gc_paused,
    parse_document,
    parse_stream,
)
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy
from peerwall.model.resolve import resolve
from peerwall.model.spec import NAME_RULE, SecurityMode, TopologySpec
from peerwall.model.topology import Topology
from peerwall.model.validate import check

__all__ = [
    "load_topology",
    "load_topology_stream",
    "mode_from",
    "parse_mode",
    "topology_from_data",
]


def parse_mode(value: object, where: str = "networking.securityMode") -> SecurityMode:
    """A mode name -> SecurityMode, or ``ModeInvalid`` naming ``where`` and the valid modes."""
    try:
        return mode_from(value)
    except ValueError as exc:
        raise ModeInvalid(f"{where}: {exc}") from None


def load_topology(
    text: str, source: str = "<topology>", *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> Topology:
    """Parse (YAML or JSON), validate and resolve a topology file's text.

    Raises ``TopologyInvalid``, also for a text of more than ``max_bytes`` bytes.

    Each stage lets go of its input once it has its output, so a large file is never held as
    text, parsed tree and model at once: the text goes once parsed (when the caller keeps no
    other reference, as ``cli.options.read_topology`` does), the tree once validated.
    """
    document = parse_document(text, source, max_bytes=max_bytes)
    del text
    spec = _validated(document, source)
    del document
    return _resolved(spec, source)


def load_topology_stream(stream: TextStream, source: str, reread: Callable[[], str]) -> Topology:
    """``load_topology`` of a file read as a stream (``parse.parse_stream``): a YAML file is
    parsed as it is read, its text never held whole. The stream enforces the size limit; the
    file is read again (``reread``) only to quote it in an error."""
    document = parse_stream(stream, source, reread)
    spec = _validated(document, source)
    del document
    return _resolved(spec, source)


def topology_from_data(data: object, source: str = "<topology>") -> Topology:
    """Validate and resolve already-parsed data (a dict shaped like the topology file)."""
    return _resolved(_validated(Document(data), source), source)


def _validated(document: Document, source: str) -> TopologySpec:
    data = document.data
    if not isinstance(data, dict):
        kind = "empty" if data is None else describe(data)
        raise TopologyInvalid(
            source, [Problem("", f"expected a mapping with 'clusters', got {kind}")]
        )
    try:
        with gc_paused():
            return TopologySpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=True)
        raise TopologyInvalid(source, [_problem(e, document) for e in errors]) from None


def _resolved(spec: TopologySpec, source: str) -> Topology:
    with gc_paused():
        problems = check(spec)
        if problems:
            raise TopologyInvalid(source, problems)
        return resolve(spec, source)


# --- pydantic errors in the file's terms ---------------------------------------------------

_ITEM = {
    "clusters": "cluster",
    "peerings": "peering",
    "namespaces": "namespace",
    "pods": "pod",
    "services": "service",
}
_EXPECTED_TEXT = {
    "podCIDR": "a CIDR such as 10.244.0.0/16",
    "serviceCIDR": "a CIDR such as 10.96.0.0/16",
    "ip": "an IPv4 address such as 10.244.0.5",
    "securityMode": f"a security mode ({SecurityMode.valid_values()})",
}
_EXPECTED_SECTION_TEXT = {
    ("peerings", "reflection"): f"a reflection policy ({ReflectionPolicy.valid_values()})",
    ("services", "reflection"): f"a reflection mark ({ReflectionMark.valid_values()})",
}


def _problem(err: Any, document: Document) -> Problem:
    loc: tuple[Any, ...] = tuple(err["loc"])
    kind: str = err["type"]
    value = err.get("input")
    if loc and loc[-1] == "[key]":
        return _key_problem(kind, loc, document)
    if kind == "invalid_key":  # a field name that is not a string, such as 1 or yes
        written = document.written((*loc, "[key]"))
        return Problem(
            field_path(loc[:-1]),
            f"field names are strings, got {describe(loc[-1], written)}"
            f"{quote_hint(loc[-1], written)}",
        )
    path = field_path(loc)
    field = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return Problem(path, "unknown field")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if kind == "not_text":
        wanted = _EXPECTED_SECTION_TEXT.get((loc[0], field)) or _EXPECTED_TEXT.get(field)
        return Problem(path, f"expected {wanted or 'a string'}, got {describe(value)}")
    if kind == "string_type":
        written = document.written(loc)
        return Problem(
            path, f"expected a string, got {describe(value, written)}{quote_hint(value, written)}"
        )
    if kind == "string_pattern_mismatch":
        return Problem(path, f"{quote(value)} is not a valid name: use {NAME_RULE}")
    if kind == "enum" and field == "securityMode":
        return Problem(
            path,
            f"unknown security mode {quote(value)} (valid: {SecurityMode.valid_values()})",
        )
    if kind == "enum" and field == "reflection":
        return Problem(path, _reflection_problem(loc[0], value))
    if field in ("podCIDR", "serviceCIDR"):
        try:
            loose = ipaddress.IPv4Network(value, strict=False)
        except (TypeError, ValueError):
            return Problem(path, f"{quote(value)} is not a valid IPv4 CIDR")
        return Problem(path, f"{quote(value)} has host bits set (did you mean {loose}?)")
    if field == "ip":
        return Problem(path, f"{quote(value)} is not a valid IPv4 address")
    if kind == "model_type":
        item = _ITEM.get(loc[0], "item") if len(loc) == 2 else "item"
        return Problem(path, f"expected a mapping (the fields of a {item}), got {describe(value)}")
    if kind == "list_type":
        return Problem(path, f"expected a list, got {describe(value)}")
    if kind == "dict_type":
        return Problem(path, f"expected a mapping, got {describe(value)}")
    if kind == "too_short":
        return Problem(path, "at least 1 item is required, got none")
    return Problem(path, str(err["msg"]))


def _reflection_problem(section: object, value: object) -> str:
    if section == "peerings":
        return (
            f"unknown reflection policy {quote(str(value))} (valid: "
            f"{ReflectionPolicy.valid_values()}: Liqo's reflectorsConfig.service.type)"
        )
    return (
        f"unknown reflection mark {quote(str(value))} (valid: {ReflectionMark.valid_values()}: "
        "Liqo's liqo.io/allow-reflection, liqo.io/skip-reflection)"
    )


def _key_problem(kind: str, loc: tuple[Any, ...], document: Document) -> Problem:
    """A key of a labels or selector mapping: ``loc`` ends with the key, then ``"[key]"``."""
    owner, key = field_path(loc[:-2]), loc[-2]
    if kind == "string_too_short":
        return Problem(owner, "a label key cannot be empty")
    if kind == "string_type":
        written = document.written(loc)
        return Problem(
            owner,
            f"label keys are strings, got {describe(key, written)}{quote_hint(key, written)}",
        )
    return Problem(owner, f"invalid key {describe(key)}")
