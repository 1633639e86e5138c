"""nf_tables netlink messages for set element edits, as bytes (no I/O).

An element event needs two things of the kernel: add or delete a few addresses in a plain hash
set, atomically. libnftables does it in ~9 netlink round trips, 8 of them re-fetching the ruleset
(each commit bumps its generation); the kernel needs one batch:

    NFNL_MSG_BATCH_BEGIN, NFT_MSG_DELSETELEM..., NFT_MSG_NEWSETELEM..., NFNL_MSG_BATCH_END

sent in one datagram and committed as one transaction (all or nothing). Every message but the
batch's begin and end asks for an acknowledgement (``NLM_F_ACK``), so that ``replies`` can tell
success from a lost answer; the kernel processes the whole batch before it answers and reports
every message that failed. Constants are those of <linux/netlink.h>, <linux/netfilter/nfnetlink.h>
and <linux/netfilter/nf_tables.h>.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
"""Socket option: an error quotes only the header of the refused message, not all of it."""

NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_CREATE = 0x400

NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14

NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_DATA_VALUE = 1

FAMILIES = {"ip": 2, "inet": 1, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}
"""nft family name -> NFPROTO_* number."""

MAX_PER_MESSAGE = 4000
"""Elements per message: the element list is one attribute, whose length is 16 bits (16 bytes
an address: 65,535 / 16 = 4,095)."""

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("!BBH")  # nfgenmsg: family, version, res_id (big-endian)
_ATTR = struct.Struct("=HH")  # nlattr: len, type
_ERR = struct.Struct("=i")  # nlmsgerr.error (negative errno, 0 for an acknowledgement)

# One IPv4 address as a list element: LIST_ELEM { KEY { DATA_VALUE <4 bytes> } }.
_ELEM = struct.Struct("=HHHHHH4s")
_ELEM_LEN = _ELEM.size  # 16


@dataclass(frozen=True)
class SetEdit:
    """Addresses to delete from and add to one set (deletes go first, as in ``element_script``)."""

    set: str
    add: Sequence[IPv4Address] = ()
    delete: Sequence[IPv4Address] = ()


@dataclass(frozen=True)
class Sent:
    """What one element message of a batch did, to name it when the kernel refuses it."""

    seq: int
    verb: str
    set: str
    count: int


def _pad(n: int) -> int:
    return (n + 3) & ~3


def _attr_str(kind: int, text: str) -> bytes:
    data = text.encode() + b"\0"
    return _ATTR.pack(4 + len(data), kind) + data + b"\0" * (_pad(len(data)) - len(data))


def _message(kind: int, flags: int, seq: int, family: int, res_id: int, body: bytes) -> bytes:
    return (
        _HDR.pack(16 + 4 + len(body), kind, flags, seq, 0) + _NFGEN.pack(family, 0, res_id) + body
    )


def _elements(addresses: Sequence[IPv4Address]) -> bytes:
    pack = _ELEM.pack
    return b"".join(
        pack(16, NFTA_LIST_ELEM | NLA_F_NESTED, 12, NFTA_SET_ELEM_KEY | NLA_F_NESTED, 8,
             NFTA_DATA_VALUE, a.packed)
        for a in addresses
    )  # fmt: skip


def _chunks(items: Sequence[IPv4Address]) -> Iterator[Sequence[IPv4Address]]:
    for i in range(0, len(items), MAX_PER_MESSAGE):
        yield items[i : i + MAX_PER_MESSAGE]


def element_batch(
    family: str, table: str, edits: Iterable[SetEdit], seq: int
) -> tuple[bytes, list[Sent]]:
    """One batch (bytes to send in one datagram) making ``edits`` in table ``family table``, its
    messages numbered from ``seq``; and what each element message does. All deletes come before
    all adds. No element message (nothing to do): empty bytes."""
    nfproto = FAMILIES[family]
    head = _attr_str(NFTA_SET_ELEM_LIST_TABLE, table)
    parts: list[bytes] = []
    sent: list[Sent] = []
    edits = list(edits)
    for verb, kind, flags in (
        ("delete", NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        ("add", NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
    ):
        for edit in edits:
            addresses = edit.delete if verb == "delete" else edit.add
            if not addresses:
                continue
            name = _attr_str(NFTA_SET_ELEM_LIST_SET, edit.set)
            for chunk in _chunks(addresses):
                elements = _elements(chunk)
                body = (
                    head
                    + name
                    + _ATTR.pack(4 + len(elements), NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED)
                    + elements
                )
                n = seq + 1 + len(sent)
                parts.append(
                    _message((NFNL_SUBSYS_NFTABLES << 8) | kind, flags, n, nfproto, 0, body)
                )
                sent.append(Sent(n, verb, edit.set, len(chunk)))
    if not sent:
        return b"", []
    begin = _message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, b"")
    end = _message(
        NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq + 1 + len(sent), 0, NFNL_SUBSYS_NFTABLES, b""
    )
    return b"".join([begin, *parts, end]), sent


def replies(data: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(seq, errno) of each acknowledgement or error in ``data`` (0: acknowledged); other
    messages are skipped. A truncated message ends the iteration."""
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size or offset + length > len(data):
            return
        if kind == NLMSG_ERROR and length >= _HDR.size + _ERR.size:
            (error,) = _ERR.unpack_from(data, offset + _HDR.size)
            yield seq, -error
        offset += _pad(length)


def refusal(family: str, table: str, sent: Sent, code: int) -> str:
    """The error text for a refused element message, in nft's words where they exist."""
    what = {errno.ENOENT: "No such file or directory", errno.EEXIST: "File exists"}.get(
        code, os.strerror(code)
    )
    return (
        f"Error: Could not process rule: {what}: {sent.verb} of {sent.count} element(s) "
        f"in set {family} {table} {sent.set} refused"
    )
