"""Netlink's framing, both ways, as bytes (no I/O): messages (``nlmsghdr``) and their
type-length-value attributes (``nlattr``), as <linux/netlink.h> lays them out.

Every netfilter socket peerwall reads or writes (nf_tables element batches and notifications,
NFLOG, conntrack) speaks this framing; this is its one codec. Lengths count the header, and every
message and attribute starts on a 4-byte boundary.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from functools import cache
from typing import overload

__all__ = [
    "ATTR",
    "HEADER",
    "NLA_F_NESTED",
    "NLA_TYPE_MASK",
    "align",
    "attr",
    "attr_str",
    "attrs",
    "messages",
    "walk",
]

NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF
"""An attribute's type without its two flag bits."""

ATTR = struct.Struct("=HH")
"""``nlattr``: length, type."""
HEADER = struct.Struct("=IHHII")
"""``nlmsghdr``: length, type, flags, sequence number, port id."""


def align(length: int) -> int:
    """``NLA_ALIGN``/``NLMSG_ALIGN``: the next multiple of 4."""
    return (length + 3) & ~3


def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    """One attribute, padded to 4 bytes; ``nested``: its payload is attributes."""
    head = ATTR.pack(4 + len(payload), kind | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * (-len(payload) % 4)


@cache
def attr_str(kind: int, text: str) -> bytes:
    """A string attribute (NUL-terminated, padded); table and set names recur on every event."""
    return attr(kind, text.encode() + b"\0")


@overload
def walk(data: bytes) -> Iterator[tuple[int, bytes]]: ...
@overload
def walk(data: memoryview) -> Iterator[tuple[int, memoryview]]: ...
def walk(data: bytes | memoryview) -> Iterator[tuple[int, bytes | memoryview]]:
    """(type without flags, payload) of each attribute in ``data``, in order; a malformed length
    ends the walk."""
    pos = 0
    while pos + 4 <= len(data):
        length, kind = ATTR.unpack_from(data, pos)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, data[pos + 4 : pos + length]
        pos += (length + 3) & ~3  # align(), inlined: a conntrack dump walks millions of these


def attrs(data: bytes | memoryview) -> dict[int, bytes]:
    """The attributes of ``data`` by type (without flags); the first of a type repeated."""
    out: dict[int, bytes] = {}
    for kind, payload in walk(data):
        out.setdefault(kind, bytes(payload))
    return out


@overload
def messages(data: bytes) -> Iterator[tuple[int, int, int, int, bytes]]: ...
@overload
def messages(data: memoryview) -> Iterator[tuple[int, int, int, int, memoryview]]: ...
def messages(
    data: bytes | memoryview,
) -> Iterator[tuple[int, int, int, int, bytes | memoryview]]:
    """(type, flags, sequence number, port id, body) of each message in one datagram; a
    malformed or truncated message ends the iteration. The port id is the sending socket's
    (0: the kernel's own); in a notification, the port id of the socket whose request caused
    it."""
    pos = 0
    while pos + HEADER.size <= len(data):
        length, kind, flags, seq, port = HEADER.unpack_from(data, pos)
        if length < HEADER.size or pos + length > len(data):
            return
        yield kind, flags, seq, port, data[pos + HEADER.size : pos + length]
        pos += (length + 3) & ~3  # align(), inlined: a conntrack dump has a message per entry
