"""Helm-style values (``--set KEY=VALUE``, ``--values FILE``): one registry of the keys peerwall
understands, read the same way by the CLI and by the agent.

Mode selection mirrors the seed (Liqo's Helm chart): ``networking.securityMode`` from a values
file, overridden by ``--set networking.securityMode=...``, else the built-in default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from peerwall.errors import ModeInvalid, Problem, TopologyInvalid
from peerwall.model.describe import describe, field_path, quote
from peerwall.model.modes import DEFAULT_MODE, MODE_KEY, SecurityMode, mode_from
from peerwall.model.parse import DEFAULT_MAX_INPUT_BYTES, parse_document

AUDIT_KEY = "networking.securityAudit"
"""Audit segregation instead of enforcing it: what it would drop is allowed and reported."""


def bool_from(value: object) -> bool:
    """``true``/``false`` (any case; or a YAML boolean) -> bool; else ``ValueError`` saying why."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"expected true or false, got {describe(value)}")


@dataclass(frozen=True)
class ValueKey:
    """A Helm-style value peerwall understands."""

    path: str
    """Dotted, as in ``--set``; nested mappings in a values file (``networking: {securityMode}``)."""
    parse: Callable[[object], object]
    """Raw value -> value, or ``ValueError`` saying why. From ``--set`` the raw value is the text
    after ``=``; from a values file, whatever YAML read (a string, a number, a boolean...)."""
    example: str
    """A valid value, for messages."""


VALUE_KEYS = (
    ValueKey(MODE_KEY, mode_from, DEFAULT_MODE.value),
    ValueKey(AUDIT_KEY, bool_from, "true"),
)
"""The one place to register a value (e.g. ``image.repository``, ``agent.resyncInterval``)."""


def known_keys() -> Mapping[str, ValueKey]:
    """Registered keys by dotted path. Derived from ``VALUE_KEYS`` on each call (it is tiny), so
    nothing else needs updating when a key is registered."""
    return {k.path: k for k in VALUE_KEYS}


def _by_parts() -> Mapping[tuple[object, ...], ValueKey]:
    return {tuple(k.path.split(".")): k for k in VALUE_KEYS}


def _groups() -> set[tuple[object, ...]]:
    """Leading parts of registered keys (``("networking",)``): their values are mappings."""
    return {parts[:i] for parts in _by_parts() for i in range(1, len(parts))}


def key_hint(parts: tuple[object, ...]) -> str:
    """`` (did you mean networking.securityMode?)``, or the known keys if none is near.

    A key is compared with its siblings (``networking.mtu`` with ``securityMode``, not with the
    whole of ``networking.securityMode``, which it would resemble by its prefix alone).
    """
    known = list(known_keys())
    prefix = ".".join(str(p) for p in parts[:-1])
    siblings = {k[len(prefix) + 1 :].lower(): k for k in known if k.startswith(f"{prefix}.")}
    name = str(parts[-1]) if siblings else ".".join(str(p) for p in parts)
    candidates = siblings or {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    # Only the suggestions about as close as the best one: securityMod is securityMode, not
    # also securityAudit.
    ratio = {c: difflib.SequenceMatcher(None, name.lower(), c).ratio() for c in close}
    close = [c for c in close if ratio[c] >= max(ratio.values()) - 0.1]
    if close:
        return f" (did you mean {', '.join(candidates[c] for c in close)}?)"
    return f" (known keys: {', '.join(known)})"


def parse_sets(items: Iterable[str]) -> dict[str, str]:
    """``--set`` arguments -> {key: text}; later ones win, commas separate pairs (as Helm).

    Keys are checked here, values by ``set_values``.
    """
    known = known_keys()
    out: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                example = VALUE_KEYS[0]
                raise ModeInvalid(
                    f"--set {quote(pair)}: expected KEY=VALUE, e.g. {example.path}={example.example}"
                )
            if key not in known:
                hint = key_hint(tuple(key.split(".")))
                raise ModeInvalid(f"--set {pair}: unknown key {quote(key)}{hint}")
            out[key] = raw.strip()
    return out


def set_values(items: Iterable[str]) -> dict[str, object]:
    """``--set`` arguments -> {key: value}, each value parsed as its key's registration says."""
    known = known_keys()
    out: dict[str, object] = {}
    for key, raw in parse_sets(items).items():
        try:
            out[key] = known[key].parse(raw)
        except ValueError as exc:
            raise ModeInvalid(f"--set {key}: {exc}") from None
    return out


def values_from_data(data: object, source: str) -> dict[str, object]:
    """A values file's data -> {key: value} for the keys it sets (null sets nothing, as in Helm).

    Every unknown key, misplaced value and invalid value is reported, each on its line.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TopologyInvalid(
            source, [Problem("", f"expected a mapping of values, got {describe(data)}")]
        )
    out: dict[str, object] = {}
    problems: list[Problem] = []
    _walk_values((), data, _by_parts(), _groups(), out, problems)
    if problems:
        raise TopologyInvalid(source, problems)
    return out


def _walk_values(
    prefix: tuple[object, ...],
    mapping: dict[object, object],
    keys: Mapping[tuple[object, ...], ValueKey],
    groups: set[tuple[object, ...]],
    out: dict[str, object],
    problems: list[Problem],
) -> None:
    # Only registered groups are entered, so the recursion is as deep as the deepest key.
    for name, value in mapping.items():
        parts = (*prefix, name)
        path = field_path(parts)
        key = keys.get(parts)
        if key is not None:
            if value is None:
                continue
            try:
                out[key.path] = key.parse(value)
            except ValueError as exc:
                problems.append(Problem(path, str(exc)))
        elif parts in groups:
            if isinstance(value, dict):
                _walk_values(parts, value, keys, groups, out, problems)
            elif value is not None:
                problems.append(Problem(path, f"expected a mapping, got {describe(value)}"))
        else:
            problems.append(Problem(path, f"unknown key{key_hint(parts)}"))


def values_from_text(
    text: str, source: str, *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> dict[str, object]:
    """The values a values file's text sets, by dotted key. An empty file sets none."""
    return values_from_data(parse_document(text, source, max_bytes=max_bytes).data, source)


def audit_from_values(
    text: str, source: str, *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> bool | None:
    """The ``networking.securityAudit`` a values file's text sets, if any."""
    audit = values_from_text(text, source, max_bytes=max_bytes).get(AUDIT_KEY)
    return audit if isinstance(audit, bool) else None


def mode_from_values(
    text: str, source: str, *, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
) -> SecurityMode | None:
    """The ``networking.securityMode`` a values file's text sets, if any."""
    mode = values_from_text(text, source, max_bytes=max_bytes).get(MODE_KEY)
    return mode if isinstance(mode, SecurityMode) else None
