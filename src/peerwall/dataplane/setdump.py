"""A plain address set's elements straight from nf_tables over netlink: the read-back's elements
without libnftables.

libnftables fetches every element of the table for any listing of it (``list table``, ``list
chain``, even with ``-t``) and holds ~0.6 KiB per element while it does (139 MiB at 220,000
elements, libnftables 1.0.6, issue 21): the agent's memory peak. The elements of a plain address
set need no library to read: one ``NFT_MSG_GETSETELEM`` dump (``NLM_F_DUMP``) answers them as
``NFTA_SET_ELEM_LIST_ELEMENTS``, each element a ``NFTA_SET_ELEM_KEY`` holding 4 bytes, ~4,000 a
datagram. Here they come back as one ``array`` of ints, 4 bytes an address.

An element reads as its key, as libnftables' JSON listing reads it (``nft.listing``): what else
it carries (a comment, a timeout, a counter) is not compared, there or here. An element without
a 4-byte key, or with flags (a catch-all ``*``, an interval's end), makes the dump answer
``None``, as the listing reads such a set as unreadable: it shows as drift.

A dump spans many datagrams; the kernel marks one ``NLM_F_DUMP_INTR`` when the set changed
meanwhile, and then the dump is taken again. ``generation`` (``NFT_MSG_GETGEN``) lets a reader
that combines several listings check that nothing was committed between them. Constants are those
of <linux/netlink.h> and <linux/netfilter/nf_tables.h>. Like every netfilter socket here, the
socket is made in its namespace and stays there (``dataplane.netlink.open_netfilter_socket``).
"""

from __future__ import annotations

import os
import struct
import sys
import threading
from array import array

from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.errors import NftError
from peerwall.nft import tlv
from peerwall.nft.netlink import (
    FAMILIES,
    FAMILY_NAMES,
    NFGENMSG,
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_GETGEN,
    NFT_MSG_GETSETELEM,
    NFT_MSG_GETTABLE,
    NFT_MSG_NEWGEN,
    NFTA_DATA_VALUE,
    NFTA_GEN_ID,
    NFTA_LIST_ELEM,
    NFTA_SET_ELEM_FLAGS,
    NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE,
    NFTA_TABLE_FLAGS,
    NFTA_TABLE_NAME,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from peerwall.nft.tlv import NLA_TYPE_MASK, attr_str

__all__ = ["SetDumps"]

_ELEM = struct.Struct("=HHHHHH")
"""One element's attribute headers: LIST_ELEM (16 bytes), KEY (12), DATA_VALUE (8)."""
_RECV = 1 << 17
_TRIES = 5
"""Dumps interrupted by a change in a row before giving up (a set changed faster than it is read)."""


class SetDumps:
    """An nf_tables netlink socket for dumps, in namespace ``netns`` (``None``: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = open_netfilter_socket(netns, "nf_tables set dumps")
        self._buf = bytearray(_RECV)
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close()

    def generation(self) -> int:
        """The ruleset's generation: every committed transaction bumps it."""
        with self._lock:
            for kind, body in self._exchange(NFT_MSG_GETGEN, NLM_F_REQUEST, NFGENMSG.pack(0, 0, 0)):
                if kind & 0xFF == NFT_MSG_NEWGEN:
                    value = tlv.attrs(body[NFGENMSG.size :]).get(NFTA_GEN_ID)
                    if value is not None and len(value) == 4:
                        return int.from_bytes(value, "big")
        raise NftError("nf_tables netlink: no generation in the kernel's answer")

    def tables(self, family: str | None = None) -> dict[tuple[str, str], int]:
        """Every table of ``family`` (``None``: of every family), (family, name) -> its
        ``NFTA_TABLE_FLAGS``, by one ``NFT_MSG_GETTABLE`` dump: libnftables' ``list tables``
        fetches every element of every table first (~140 MiB at 220,000), and prints flags
        through a use-after-free (``errors.FlaggedTable``)."""
        with self._lock:
            out = {}
            for kind, body in self._exchange(
                NFT_MSG_GETTABLE,
                NLM_F_REQUEST | NLM_F_DUMP,
                NFGENMSG.pack(0 if family is None else FAMILIES[family], 0, 0),
                dump=True,
            ):
                if kind < 0:
                    continue
                found = tlv.attrs(body[NFGENMSG.size :])
                name = found.get(NFTA_TABLE_NAME)
                if name is None:
                    continue
                flags = found.get(NFTA_TABLE_FLAGS, b"\0\0\0\0")
                nfproto = body[0]
                where = FAMILY_NAMES.get(nfproto, str(nfproto))
                out[(where, name.rstrip(b"\0").decode())] = int.from_bytes(flags[:4], "big")
            return out

    def addresses(self, family: str, table: str, name: str) -> array[int] | None:
        """The addresses of set ``family table name``, as ints; ``None`` if an element is not
        an address (see the module's docstring). A set that does not exist, or any other
        refusal, raises ``NftError``."""
        body = (
            NFGENMSG.pack(FAMILIES[family], 0, 0)
            + attr_str(NFTA_SET_ELEM_LIST_TABLE, table)
            + attr_str(NFTA_SET_ELEM_LIST_SET, name)
        )
        with self._lock:
            for _ in range(_TRIES):
                out: array[int] | None = array("I")
                interrupted = False
                for kind, body_ in self._exchange(
                    NFT_MSG_GETSETELEM, NLM_F_REQUEST | NLM_F_DUMP, body, dump=True
                ):
                    if kind < 0:  # NLM_F_DUMP_INTR: read to the end, then again
                        interrupted = True
                        continue
                    if out is None:
                        continue  # unreadable already: read the rest of the dump away
                    elements = tlv.attrs(body_[NFGENMSG.size :]).get(NFTA_SET_ELEM_LIST_ELEMENTS)
                    if elements is not None and not _append(out, elements):
                        out = None
                if not interrupted:
                    return out
        raise NftError(f"set {family} {table} {name} kept changing while it was read")

    def _exchange(
        self, msg: int, flags: int, body: bytes, dump: bool = False
    ) -> list[tuple[int, bytes]]:
        """Send one request; its answers (type, body), to the end of a dump. An answer marked
        ``NLM_F_DUMP_INTR`` comes as type -1. A refusal raises ``NftError``."""
        self._seq += 1
        seq = self._seq
        kind = (NFNL_SUBSYS_NFTABLES << 8) | msg
        try:
            self._sock.send(
                tlv.HEADER.pack(tlv.HEADER.size + len(body), kind, flags, seq, 0) + body
            )
            out: list[tuple[int, bytes]] = []
            while True:
                n = self._sock.recv_into(self._buf, _RECV)
                for mkind, mflags, mseq, _port, payload in tlv.messages(memoryview(self._buf)[:n]):
                    if mseq != seq:
                        continue  # a late answer to an earlier request
                    if mkind == NLMSG_DONE:
                        if mflags & NLM_F_DUMP_INTR:
                            out.append((-1, b""))
                        return out
                    if mkind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", payload)
                        if code:
                            what = os.strerror(-code)
                            raise NftError(f"nf_tables netlink: {what}")
                        return out
                    if mflags & NLM_F_DUMP_INTR:
                        out.append((-1, b""))
                    out.append((mkind, bytes(payload)))
                    if not dump or not mflags & NLM_F_MULTI:
                        return out
        except OSError as e:
            raise NftError(f"nf_tables netlink: {e}") from None


def _append(out: array[int], elements: bytes) -> bool:
    """Append the addresses of one ``NFTA_SET_ELEM_LIST_ELEMENTS`` payload to ``out``; False if
    an element has no 4-byte key, or has flags. The usual payload is a run of 16-byte elements
    with the same headers: checked and copied with strided slices (C speed, ~0.01 us an
    element); anything else is walked attribute by attribute."""
    n, rest = divmod(len(elements), 16)
    if n and not rest:
        head = elements[:12]
        length, kind, klen, key, vlen, value = _ELEM.unpack(head)
        if (
            (length, klen, vlen) == (16, 12, 8)
            and kind & NLA_TYPE_MASK == NFTA_LIST_ELEM
            and key & NLA_TYPE_MASK == NFTA_SET_ELEM_KEY
            and value & NLA_TYPE_MASK == NFTA_DATA_VALUE
            and all(elements[i::16] == head[i : i + 1] * n for i in range(12))
        ):
            packed = bytearray(4 * n)
            for i in range(4):
                packed[i::4] = elements[12 + i :: 16]
            addresses = array("I", bytes(packed))
            if sys.byteorder == "little":
                addresses.byteswap()
            out.extend(addresses)
            return True
    for kind, element in tlv.walk(elements):
        if kind != NFTA_LIST_ELEM:
            return False
        address = None
        for akind, payload in tlv.walk(element):
            if akind == NFTA_SET_ELEM_KEY:
                value = tlv.attrs(payload)
                data = value.get(NFTA_DATA_VALUE)
                if len(value) != 1 or data is None or len(data) != 4:
                    return False
                address = int.from_bytes(data, "big")
            elif akind == NFTA_SET_ELEM_FLAGS and bytes(payload) != bytes(4):
                return False
        if address is None:
            return False
        out.append(address)
    return True
