"""Topology text -> validated, resolved ``Topology``. The caller reads the file; this does no I/O."""

from __future__ import annotations

import ipaddress
from typing import Any

from pydantic import ValidationError

from peerwall.errors import ModeInvalid, Problem, TopologyInvalid
from peerwall.model.parse import DEFAULT_MAX_INPUT_BYTES, parse_document
from peerwall.model.resolve import resolve
from peerwall.model.spec import SecurityMode, TopologySpec
from peerwall.model.topology import (
    Topology,
)
from peerwall.model.validate import check


def parse_mode(value: str, where: str = "networking.securityMode") -> SecurityMode:
    """A mode name -> SecurityMode, or a clear error listing the valid ones."""
    try:
        return SecurityMode(value)
    except ValueError:
        raise ModeInvalid(
            f"{where}: unknown security mode {value!r} (valid: {SecurityMode.valid_values()})"
        ) from None


def load_topology(
    text: str, source: str = "<topology>", *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> Topology:
    """Parse (YAML or JSON), validate and resolve a topology file's text.

    Raises ``TopologyInvalid``, also for a text of more than ``max_bytes`` bytes.
    """
    return topology_from_data(parse_document(text, source, max_bytes=max_bytes).data, source)


def topology_from_data(data: object, source: str = "<topology>") -> Topology:
    """Validate and resolve already-parsed data (a dict shaped like the topology file)."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise TopologyInvalid(
            source, [Problem("", f"expected a mapping with 'clusters', got {kind}")]
        )
    try:
        spec = TopologySpec.model_validate(data)
    except ValidationError as exc:
        raise TopologyInvalid(source, [_problem(e) for e in exc.errors()]) from None
    problems = check(spec)
    if problems:
        raise TopologyInvalid(source, problems)
    return resolve(spec, source)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(err: Any) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return Problem(_path(loc), "unknown field")
    if kind == "missing":
        return Problem(_path(loc), "required field is missing")
    if kind == "enum" and loc and loc[-1] == "securityMode":
        return Problem(
            _path(loc), f"unknown security mode {value!r} (valid: {SecurityMode.valid_values()})"
        )
    if kind == "string_pattern_mismatch":
        return Problem(
            _path(loc),
            f"{value!r} is not a valid name (letters, digits, '.', '_', '-'; at most 63 characters)",
        )
    if loc and loc[-1] in ("podCIDR", "serviceCIDR"):
        try:
            loose = ipaddress.IPv4Network(value, strict=False)
        except (TypeError, ValueError):
            return Problem(_path(loc), f"{value!r} is not a valid IPv4 CIDR")
        return Problem(_path(loc), f"{value!r} has host bits set (did you mean {loose}?)")
    if loc and loc[-1] == "ip":
        return Problem(_path(loc), f"{value!r} is not a valid IPv4 address")
    return Problem(_path(loc), str(err["msg"]))
