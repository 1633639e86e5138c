"""How problems show what the user wrote: field paths, quoted values, what a value was read as.

Every error is one line naming the file and the field, so anything echoed from the input is
escaped (no control character can break the line) and cut to ``SHOWN_CHARS`` characters.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Sequence
from enum import Enum

__all__ = ["SHOWN_CHARS", "Choice", "byte_size", "describe", "field_path", "quote", "quote_hint"]

SHOWN_CHARS = 60
"""Echoed values longer than this are cut, with an ellipsis and their length."""

_BIG_INT_BITS = 200
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,60}")


class Choice(str, Enum):
    """A closed set of spellings a file or a flag may give (modes, reflection policies, ...)."""

    @classmethod
    def valid_values(cls) -> str:
        """The spellings, for an error that says what was expected."""
        return ", ".join(m.value for m in cls)


def quote(text: str) -> str:
    """``text`` as a Python literal on one line: control characters escaped, long text cut."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    # repr() escapes what is not printable (newlines, U+2028, ESC...), so the line stays one.
    return f"{text[:SHOWN_CHARS]!r}… ({len(text)} characters)"


def field_path(loc: Sequence[object]) -> str:
    """``("pods", 3, "labels", "app.kubernetes.io/name")`` -> ``pods[3].labels['app.kubernetes.io/name']``.

    Plain keys are joined with dots; any other key (dots, spaces, non-strings, huge ones) is
    bracketed and quoted, so the path stays unambiguous and on one line.
    """
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{quote(part) if isinstance(part, str) else _scalar_text(part)}]"
    return out


def describe(value: object, written: str | None = None) -> str:
    """What a value was read as, e.g. ``the boolean false (YAML reads off/no/false as booleans)``.

    ``written`` is the value as it stands in a YAML file (a plain scalar), when known: it tells
    the user why YAML read it so.
    """
    if value is None:
        if written == "":
            return "no value (YAML reads an empty value as null)"
        if written == "~":
            return "null (YAML reads ~ as null)"
        return "null"
    if isinstance(value, bool):
        what = f"the boolean {_scalar_text(value)}"
        if written is None:
            return what
        return f"{what} (YAML reads {'on/yes/true' if value else 'off/no/false'} as booleans)"
    if isinstance(value, int | float):
        if isinstance(value, int) and value.bit_length() > _BIG_INT_BITS:
            what = f"a {value.bit_length()}-bit integer"
        else:
            what = f"the {'integer' if isinstance(value, int) else 'number'} {_scalar_text(value)}"
        if written is not None and written != _scalar_text(value):
            return f"{what} (YAML reads {_double_quoted(written)} as a number)"
        return what
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()} (YAML reads it as a date)"
    if isinstance(value, bytes):
        return "binary data (a !!binary value)"
    if isinstance(value, str):
        return f"the string {quote(value)}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, set | frozenset):
        return "a set"
    return f"a value of type {type(value).__name__}"


def quote_hint(value: object, written: str | None = None) -> str:
    """``: quote it, "off"`` when a scalar was surely meant as a string, else ``""``."""
    if isinstance(value, bytes | list | tuple | dict | set | frozenset | str):
        return ""
    if value is None and written in (None, "", "~"):
        return ""  # nothing to quote: an empty value or ~ is not a name someone meant
    text = written if written else _scalar_text(value)
    return f": quote it, {_double_quoted(text)}"


def byte_size(n: int) -> str:
    """``128 MiB`` for whole mebibytes, else ``1000 bytes``."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n} bytes"


def _scalar_text(value: object) -> str:
    """How a scalar is spelled in a file: ``false``, ``null``, ``12``, ``2001-01-01``."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, int):
        # str() refuses integers of more than 4300 digits; hex() has no such limit.
        return str(value) if value.bit_length() <= _BIG_INT_BITS else _cut(hex(value))
    if isinstance(value, str):
        return quote(value)
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}…"


def _double_quoted(text: str) -> str:
    """``text`` as a double-quoted YAML (and JSON) string, cut, with non-printables escaped."""
    out = []
    for ch in _cut(text):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'
