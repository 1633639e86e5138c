"""The kernel's connection tracking table over ctnetlink: list IPv4 entries, delete some.

A small binding of our own, over a raw netlink socket: pyroute2 0.9.7's ``Conntrack`` (the only
library for this) was measured here returning 0 entries of a 5,003-entry table, and 12 ms for a
dump of 3; conntrack-tools would mean a process per call. Only the attributes peerwall needs are
decoded (the tuples, the mark, the zone); a deletion sends the original tuple back as the kernel gave it.

A ``Conntrack`` is bound to the network namespace that was current when it was created (its
sockets are), like a libnftables context.

Memory stays bounded whatever the table holds (issue 18.3: 262,143 entries OOM-killed an agent
that listed them all): ``delete_where`` streams the dump, skips from the raw bytes every entry
whose addresses lie outside the networks it is asked about (no objects built for them), keeps
only the delete requests of the entries to delete (some 60 bytes each), and sends them once the
dump is over, through a second socket, in batches. What it returns is a count and a bounded
sample. Asked for some marks only (``marks``: pairs of value and mask, e.g. one peer's
``ctmark.from_peer`` under ``ctmark.OURS``), it asks the kernel to filter the dump
(``CTA_MARK`` + ``CTA_MARK_MASK`` in the dump request, ``ctnetlink_alloc_filter``): the entries of
other peers, Liqo's and the unmarked ones never leave the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from peerwall.compile.flows import Flow, Tuple
from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.errors import NftError
from peerwall.nft.tlv import HEADER, attr, messages, walk

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_MARK, CTA_ZONE, CTA_MARK_MASK = 1, 2, 8, 18, 21
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE = 4, 5
PROTOS = {6: "tcp", 17: "udp", 1: "icmp"}
SAMPLE = 20
"""Deleted flows kept (for the log) of however many went."""
SEND_BATCH = 256
"""Deletions sent in one datagram (nfnetlink takes several messages at once); only the last one
asks for an acknowledgement."""
JUDGED = 65536
"""Verdicts remembered by what they depend on (forgotten all at once when full)."""

_NFGENMSG = struct.Struct("=BBH")


def _tuple(data: bytes) -> tuple[str, Tuple]:
    src = dst = IPv4Address(0)
    proto, sport, dport = "other", None, None
    for kind, payload in walk(data):
        if kind == CTA_TUPLE_IP:
            for k, v in walk(payload):
                if k == CTA_IP_V4_SRC:
                    src = IPv4Address(v[:4])
                elif k == CTA_IP_V4_DST:
                    dst = IPv4Address(v[:4])
        elif kind == CTA_TUPLE_PROTO:
            for k, v in walk(payload):
                if k == CTA_PROTO_NUM:
                    proto = PROTOS.get(v[0], "other")
                elif k == CTA_PROTO_SRC_PORT:
                    sport = struct.unpack("!H", v[:2])[0]
                elif k == CTA_PROTO_DST_PORT:
                    dport = struct.unpack("!H", v[:2])[0]
                elif k == CTA_PROTO_ICMP_TYPE:
                    dport = v[0]
    return proto, Tuple(src, dst, sport, dport)


# The layout the kernel writes a tuple in (ctnetlink_dump_tuples): IP (source, destination), then
# protocol (number, then ports). Read at fixed offsets; anything else takes the generic walk.
_FIXED = struct.Struct("=HHHHHH4sHH4sHHHHB3x")
_PORTS = struct.Struct("=HH2s2xHH2s2x")
_NESTED_ORIG = CTA_TUPLE_ORIG | NLA_F_NESTED
_NESTED_REPLY = CTA_TUPLE_REPLY | NLA_F_NESTED
_LAYOUT = (CTA_TUPLE_IP | NLA_F_NESTED, CTA_IP_V4_SRC, CTA_IP_V4_DST)
_PROTO = (CTA_TUPLE_PROTO | NLA_F_NESTED, CTA_PROTO_NUM)


@dataclass
class Cleared:
    """What ``delete_where`` deleted: how many, and the first ``SAMPLE`` with their reasons."""

    count: int = 0
    sample: list[tuple[Flow, str]] = field(default_factory=list)


def _addresses(payload: bytes) -> tuple[int, int] | None:
    """The original tuple's IPv4 source and destination as integers, read from the raw message
    without building anything (None if it has none)."""
    if len(payload) >= _FIXED.size:
        _, k, _, ki, _, ks, src, _, kd, dst, *_ = _FIXED.unpack_from(payload, 0)
        if k == _NESTED_ORIG and (ki, ks, kd) == _LAYOUT:
            return int.from_bytes(src, "big"), int.from_bytes(dst, "big")
    for kind, tup in walk(payload):
        if kind != CTA_TUPLE_ORIG:
            continue
        for k, ip in walk(tup):
            if k != CTA_TUPLE_IP:
                continue
            src = dst = None
            for a, v in walk(ip):
                if a == CTA_IP_V4_SRC:
                    src = int.from_bytes(v[:4], "big")
                elif a == CTA_IP_V4_DST:
                    dst = int.from_bytes(v[:4], "big")
            return None if src is None or dst is None else (src, dst)
    return None


def _fixed_tuple(data: bytes, pos: int, kind: int) -> tuple[int, bytes] | None:
    """(the tuple attribute's aligned length, a key of what ``stale`` reads in it: addresses,
    protocol, the original destination port and the reply's source port), or None if laid
    out otherwise."""
    if len(data) < pos + _FIXED.size + _PORTS.size:
        return None
    length, k, _, ki, _, ks, src, _, kd, dst, _, kp, _, kn, proto = _FIXED.unpack_from(data, pos)
    if k != kind or (ki, ks, kd) != _LAYOUT or (kp, kn) != _PROTO or proto not in (6, 17):
        return None  # ICMP and the rest: the generic walk
    _, k1, sport, _, k2, dport = _PORTS.unpack_from(data, pos + _FIXED.size)
    if (k1, k2) != (CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT):
        return None
    ports = sport if kind == _NESTED_REPLY else dport  # the reply's sport: an API port
    return (length + 3) & ~3, src + dst + bytes([proto]) + ports


def _judge_key(attrs: bytes) -> tuple[bytes, int, bytes | None] | None:
    """What ``stale`` depends on in an entry, as bytes (so that entries alike in it, which
    differ only in their source ports, are judged once), with the length of its original tuple
    attribute (first, at offset 0) and its zone, to delete it by; None if not read at fixed
    offsets. One walk, from after the tuples to the mark: the kernel puts the zone between them
    (``ctnetlink_fill_info``)."""
    orig = _fixed_tuple(attrs, 0, _NESTED_ORIG)
    if orig is None:
        return None
    reply = _fixed_tuple(attrs, orig[0], _NESTED_REPLY)
    if reply is None:
        return None
    mark, zone = b"", None
    for k, v in walk(attrs[orig[0] + reply[0] :]):
        if k == CTA_MARK:
            mark = v[:4]
            break
        if k == CTA_ZONE:
            zone = v
    return orig[1] + b"|" + reply[1] + b"|" + mark, orig[0], zone


def _ranges(nets: Iterable[IPv4Network]) -> list[tuple[int, int]]:
    return [(int(n.network_address), int(n.broadcast_address)) for n in nets]


@dataclass(frozen=True)
class Entry:
    flow: Flow
    orig: bytes
    """The original tuple attribute as the kernel sent it (nested payload), to delete by."""
    zone: bytes | None = None


def _delete_body(entry: Entry) -> bytes:
    """The body of the request that deletes ``entry`` (by its original tuple, and zone)."""
    body = _NFGENMSG.pack(socket.AF_INET, 0, 0) + attr(CTA_TUPLE_ORIG, entry.orig, nested=True)
    if entry.zone is not None:
        body += attr(CTA_ZONE, entry.zone)
    return body


_DELETE_HEAD = _NFGENMSG.pack(socket.AF_INET, 0, 0)


def _entry(attrs: bytes) -> Entry:
    orig_raw = reply_raw = b""
    zone = None
    mark = 0
    for k, v in walk(attrs):
        if k == CTA_TUPLE_ORIG:
            orig_raw = v
        elif k == CTA_TUPLE_REPLY:
            reply_raw = v
        elif k == CTA_ZONE:
            zone = v
        elif k == CTA_MARK:
            mark = struct.unpack("!I", v[:4])[0]
    proto, orig = _tuple(orig_raw)
    _, reply = _tuple(reply_raw)
    return Entry(Flow(proto, orig, reply, mark), orig_raw, zone)


class Conntrack:
    """A ctnetlink socket in network namespace ``netns`` (``None``: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self._sock = open_netfilter_socket(netns, "conntrack")
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        # Deletions go through a socket of their own while the first one streams a dump.
        try:
            self._del = open_netfilter_socket(netns, "conntrack deletions")
        except NftError:
            self._sock.close()
            raise
        self._del.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close()
        self._del.close()

    def __enter__(self) -> Conntrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(
        self, msg_type: int, flags: int, body: bytes, sock: socket.socket | None = None
    ) -> int:
        self._seq += 1
        header = HEADER.pack(HEADER.size + len(body), msg_type, flags, self._seq, 0)
        (sock or self._sock).send(header + body)
        return self._seq

    def _messages(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of every reply to ``seq`` until DONE or the ack; raises on errors."""
        while True:
            for kind, flags, mseq, _port, payload in messages(self._sock.recv(1 << 20)):
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                yield kind, payload
                if not flags & NLM_F_MULTI:
                    return

    def entries(self) -> list[Entry]:
        """Every IPv4 entry of the table (a list: for tests and small tables only)."""
        with self._lock:
            seq = self._send(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                NLM_F_REQUEST | NLM_F_DUMP,
                _NFGENMSG.pack(socket.AF_INET, 0, 0),
            )
            return [_entry(payload[_NFGENMSG.size :]) for _kind, payload in self._messages(seq)]

    def delete(self, entry: Entry) -> bool:
        """Delete one entry; False if it was gone already."""
        body = _NFGENMSG.pack(socket.AF_INET, 0, 0) + attr(CTA_TUPLE_ORIG, entry.orig, nested=True)
        if entry.zone is not None:
            body += attr(CTA_ZONE, entry.zone)
        with self._lock:
            seq = self._send(
                (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, body
            )
            try:
                for _ in self._messages(seq):
                    pass
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return False
                raise
            return True

    def _dump(self, mark: tuple[int, int] | None) -> Iterator[tuple[int, bytes]]:
        """The replies of one dump of the IPv4 table; with ``mark`` (value, mask), only the
        entries whose ``mark & mask == value``, filtered by the kernel."""
        body = _NFGENMSG.pack(socket.AF_INET, 0, 0)
        if mark is not None:
            value, mask = mark
            body += attr(CTA_MARK, struct.pack("!I", value))
            body += attr(CTA_MARK_MASK, struct.pack("!I", mask))
        seq = self._send(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, body
        )
        return self._messages(seq)

    def delete_where(
        self,
        reason: Callable[[Flow], str | None],
        about: Iterable[IPv4Network] | None = None,
        marks: Iterable[tuple[int, int]] | None = None,
    ) -> Cleared:
        """Delete every entry for which ``reason(flow)`` names a reason, streaming the table.
        ``about``: only entries whose original source or destination lies in these networks
        can have one (the others are skipped unread); None: every entry is asked. ``marks``:
        only entries whose mark matches one of these (value, mask) pairs can have one, and only
        those are dumped (the kernel filters; one dump per pair, so pairs should not overlap);
        None: one dump of every entry."""
        ranges = None if about is None else _ranges(about)
        out = Cleared()
        filters: list[tuple[int, int] | None] = [None] if marks is None else list(marks)
        with self._lock:
            # Deleted after the dump, not during it: an entry deleted while the kernel holds it
            # as the place to resume its dump from can make the dump skip what follows. What is
            # kept meanwhile is small: each doomed entry's delete request, some 60 bytes.
            bodies: list[bytes] = []
            whys: list[str] = []
            sample: dict[int, Flow] = {}
            judged: dict[bytes, str | None] = {}
            replies = (reply for mark in filters for reply in self._dump(mark))
            for _kind, payload in replies:
                attrs = payload[_NFGENMSG.size :]
                fixed = _judge_key(attrs)
                key = None if fixed is None else fixed[0]
                # A key judged before passed the address check then (it holds the addresses).
                if ranges is not None and (key is None or key not in judged):
                    found = _addresses(attrs)
                    if found is None or not any(lo <= a <= hi for a in found for lo, hi in ranges):
                        continue
                if fixed is not None and key in judged:
                    why = judged[fixed[0]]
                    if why is None:
                        continue
                    if len(sample) >= SAMPLE:
                        # Judged already and not for the sample: no object built at all; the
                        # original tuple attribute is sent back as the kernel gave it.
                        _, orig_length, zone = fixed
                        body = _DELETE_HEAD + attrs[:orig_length]
                        bodies.append(body if zone is None else body + attr(CTA_ZONE, zone))
                        whys.append(why)
                        continue
                    entry = _entry(attrs)
                else:
                    entry = _entry(attrs)
                    why = reason(entry.flow)
                    if key is not None:
                        if len(judged) >= JUDGED:
                            judged.clear()
                        judged[key] = why
                    if why is None:
                        continue
                if len(sample) < SAMPLE:
                    sample[len(bodies)] = entry.flow
                bodies.append(_delete_body(entry))
                whys.append(why)
        with self._lock:
            for first in range(0, len(bodies), SEND_BATCH):
                self._delete_batch(bodies, first, out, sample, whys)
        return out

    def _delete_batch(
        self,
        bodies: list[bytes],
        first: int,
        out: Cleared,
        sample: dict[int, Flow],
        whys: list[str],
    ) -> None:
        """Send the deletions ``bodies[first:first + SEND_BATCH]`` in one datagram and count
        those that deleted. Only the last one asks for an acknowledgement: the kernel answers a
        failed request anyway (an error message), and handles a datagram's messages in order,
        so once the last one is answered, every one without an error has deleted its entry."""
        numbers = range(first, min(first + SEND_BATCH, len(bodies)))
        seqs: dict[int, int] = {}
        batch = []
        for i in numbers:
            seq, message = self._delete_message(bodies[i], ack=i == numbers[-1])
            seqs[seq] = i
            batch.append(message)
        self._del.send(b"".join(batch))
        last = max(seqs)
        failed: set[int] = set()
        answered = False
        while not answered:
            for kind, _flags, mseq, _port, payload in messages(self._del.recv(1 << 20)):
                if kind != NLMSG_ERROR or mseq not in seqs:
                    continue
                answered = answered or mseq == last
                code = -struct.unpack_from("=i", payload)[0]
                if code == 0:
                    continue
                if code != errno.ENOENT:  # ENOENT: it went by itself meanwhile
                    raise OSError(code, os.strerror(code))
                failed.add(seqs[mseq])
        for i in numbers:
            if i not in failed:
                out.count += 1
                if i in sample:
                    out.sample.append((sample[i], whys[i]))

    def _delete_message(self, body: bytes, ack: bool = True) -> tuple[int, bytes]:
        """(its sequence number, the netlink message of a delete request ``body``)."""
        self._seq += 1
        kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        head = HEADER.pack(HEADER.size + len(body), kind, flags, self._seq, 0)
        return self._seq, head + body
