"""The kernel's connection tracking table over ctnetlink: list IPv4 entries, delete some.

A small binding of our own, over a raw netlink socket: pyroute2 0.9.7's ``Conntrack`` (the only
library for this) was measured here returning 0 entries of a 5,003-entry table, and 12 ms for a
dump of 3; conntrack-tools would mean a process per call. Only the attributes peerwall needs are
decoded (the tuples, the mark, the zone); a deletion sends the original tuple back as the kernel gave it.

A ``Conntrack`` is bound to the network namespace that was current when it was created (its
sockets are), like a libnftables context.

Memory stays bounded whatever the table holds (issue 18.3: 262,143 entries OOM-killed an agent
that listed them all): ``delete_where`` streams the dump, keeps only the delete requests of the
entries to delete (72 bytes each, ready to send, in one buffer), and sends them once the dump is
over, through a second socket, 1,024 to a datagram. What it returns is a count and a bounded
sample. Asked for some marks only (``marks``: pairs of value and mask, e.g. one peer's
``ctmark.from_peer`` under ``ctmark.OURS``), it asks the kernel to filter the dump
(``CTA_MARK`` + ``CTA_MARK_MASK`` in the dump request, ``ctnetlink_alloc_filter``): the entries of
other peers, Liqo's and the unmarked ones never leave the kernel.

And it is quick (issue 18.3: the narrowing step within 2 s): the entries that do leave the kernel
are read with one ``unpack_from`` each at the offsets the kernel writes a TCP or UDP entry at,
and judged once per kind (``_scan``). On the 2-core machine of bench/RESULTS.md, with 262,143
entries, a whole dump costs the kernel some 0.39 s (1,554 receives of ~32 KiB, whatever the
buffer), reading it here ~0.15 s more, deleting all of them ~0.3 s of the kernel's time (a flush
by the kernel's own filter, ``CTA_FILTER`` on a delete request, 0.26 s: not worth its semantics,
it would also take entries made after the dump). Each filtered dump that returns nothing costs
the kernel's walk of the table, ~40-50 ms.

A peer can make every entry its own kind (connections to many distinct pods or ports), and then
each one is judged: through ``compile.flows.Verdicts`` (``_Judge``), from the integers read at
the fixed offsets, without a ``Flow`` and with what each peer admits prepared once, ~2.7 us an
entry in all here (``stale`` asked of a decoded ``Flow`` cost some 6 us more: ~4 us, and ~2.5 us
to build the ``Flow``). 262,143 such entries, all deleted, cost ~1.5 s of CPU (user ~0.7 s,
system ~0.8 s: the dump, the deletions, the other marks' empty dumps), ~1.5 s at a load of 2-3
(``bench/conntrack_bench.py``'s ``distinct-denied``).
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
from typing import cast

from peerwall.compile.flows import Cut, Flow, Tuple, Verdicts
from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.errors import NftError
from peerwall.nft.netlink import NETLINK_CAP_ACK, SOL_NETLINK
from peerwall.nft.tlv import HEADER, NLA_TYPE_MASK, attr, messages, walk

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_MARK, CTA_ZONE, CTA_MARK_MASK = 1, 2, 8, 18, 21
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE = 4, 5
PROTOS = {6: "tcp", 17: "udp", 1: "icmp"}
SAMPLE = 20
"""Deleted flows kept (for the log) of however many went."""
SEND_BATCH = 1024
"""Deletions sent in one datagram (nfnetlink takes several messages at once), 72 KiB; the
errors of a whole datagram (a few hundred bytes each in the receive buffer) fit in it."""
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
_NESTED_ORIG = CTA_TUPLE_ORIG | NLA_F_NESTED
_NESTED_REPLY = CTA_TUPLE_REPLY | NLA_F_NESTED
_LAYOUT = (CTA_TUPLE_IP | NLA_F_NESTED, CTA_IP_V4_SRC, CTA_IP_V4_DST)
_TUPLE_LENGTH = 52
"""A TCP or UDP tuple attribute's length, as the kernel writes it."""

# What an entry's verdict depends on, read at fixed offsets from its message's start when it is
# laid out as the kernel writes a TCP or UDP entry (``_laid_out``): the header (length, type,
# flags, sequence number); the original tuple from its attribute header to its source port's
# header (40 bytes: addresses, protocol), its destination port's header and value, the reply
# tuple to its source port (52 bytes); the header of the attribute after the tuples (a zone,
# or not). The source port of the original and the reply's destination port are skipped: they
# tell apart the connections of one client, and no verdict reads them.
_ENTRY = struct.Struct("=IHHI4x4x40s4x52s8x4s")
_ENTRY_TYPE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
_AFTER_TUPLES = HEADER.size + 4 + 2 * _TUPLE_LENGTH
_BODY_END = HEADER.size + 4 + _TUPLE_LENGTH
"""A delete request's body is the dump's message up to here: nfgenmsg, the original tuple."""
_ATTRS = HEADER.size + 4
_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
_UNJUDGED = object()
_RECEIVE = 1 << 20
"""The most one receive reads (a dump's datagram is some 32 KiB)."""


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


# The attribute headers of an entry's two tuples and of the attribute after them, read at the
# offsets ``_ENTRY`` and ``_FLOW`` read an entry at (per tuple: its length and type; the types of
# its IP attribute, source, destination, protocol attribute, protocol number; the number; the
# types of its source and destination ports), to tell in one read that an entry is laid out so.
_SHAPE = struct.Struct("=" + "HH2xH2xH4x2xH4x2xH2xHB3x2xH4x2xH4x" * 2)
_AFTER = struct.Struct("=2xH")


def _shape(kind: int, proto: int) -> tuple[int, ...]:
    numbered = (CTA_TUPLE_PROTO | NLA_F_NESTED, CTA_PROTO_NUM)
    ports = (CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT)
    return (_TUPLE_LENGTH, kind, *_LAYOUT, *numbered, proto, *ports)


_SHAPES = frozenset(
    _shape(_NESTED_ORIG, orig) + _shape(_NESTED_REPLY, reply)
    for orig in (6, 17)
    for reply in (6, 17)
)
"""The tuples' shapes ``_laid_out`` accepts (TCP or UDP each)."""


def _laid_out(data: bytes | bytearray, at: int = 0) -> bool:
    """Whether the attributes at ``at`` (an entry's, after its nfgenmsg; at least ``_SHAPE.size``
    bytes) are laid out as ``_ENTRY`` reads them: the two tuples at fixed offsets (52 bytes: IP,
    source, destination; protocol, TCP or UDP, source port, destination port), and no zone after
    them (a zone must go with its delete request)."""
    if len(data) < at + _SHAPE.size + _AFTER.size:
        return False
    return (
        _SHAPE.unpack_from(data, at) in _SHAPES
        and _AFTER.unpack_from(data, at + _SHAPE.size)[0] & NLA_TYPE_MASK != CTA_ZONE
    )


# The fields of a flow in an entry's attributes laid out as ``_ENTRY`` reads them (``_laid_out``):
# original source, destination, protocol, ports; the reply's addresses, ports.
_FLOW = struct.Struct("!12xI4xI8xB7xH6xH14xI4xI16xH6xH")


def _fixed_flow(attrs: bytes, values: tuple[int, ...]) -> Flow:
    """The flow of an entry laid out as ``_ENTRY`` reads it, from ``_FLOW``'s ``values``; its
    mark found by a walk of what follows the tuples."""
    src, dst, proto, sport, dport, rsrc, rdst, rsport, rdport = values
    mark = _mark(memoryview(attrs)[2 * _TUPLE_LENGTH :])
    return Flow(
        PROTOS.get(proto, "other"),
        Tuple(IPv4Address(src), IPv4Address(dst), sport, dport),
        Tuple(IPv4Address(rsrc), IPv4Address(rdst), rsport, rdport),
        int.from_bytes(mark, "big") if mark else 0,
    )


def _mark(attrs: memoryview) -> bytes:
    """The mark attribute's value among ``attrs`` (empty if none)."""
    for kind, value in walk(attrs):
        if kind == CTA_MARK:
            return bytes(value[:4])
    return b""


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


class _Doomed:
    """The delete requests of the entries a ``delete_where`` dooms, as one buffer of netlink
    messages ready to send, to be cut every ``SEND_BATCH``; the first ``SAMPLE`` of them with
    their flows and reasons (the others share one sequence number: only their errors count)."""

    def __init__(self, seq: int) -> None:
        self.seq = self.shared = seq + 1
        size = _BODY_END
        self.fast_header = HEADER.pack(size, _DELETE, NLM_F_REQUEST, self.shared, 0)
        self.requests = bytearray()
        self.cuts: list[int] = []
        self.count = 0
        self.sample: dict[int, tuple[Flow, str]] = {}
        self.sampled = False
        """Whether the sample is full: from then on, requests are copied without a look."""

    def added(self) -> None:
        """Count the request just appended to ``requests``."""
        self.count += 1
        if not self.count % SEND_BATCH:
            self.cuts.append(len(self.requests))

    def copy(self, body: memoryview) -> None:
        """Add the request whose body is ``body`` (nfgenmsg, original tuple), once the sample is
        full: the shared header, the body as the dump gave it."""
        self.requests += self.fast_header
        self.requests += body
        self.added()

    def add(self, body: bytes, flow: Flow, why: str) -> None:
        seq = self.shared
        if not self.sampled:
            self.seq += 1
            seq = self.seq
            self.sample[seq] = (flow, why)
            self.sampled = len(self.sample) >= SAMPLE
        self.requests += HEADER.pack(HEADER.size + len(body), _DELETE, NLM_F_REQUEST, seq, 0)
        self.requests += body
        self.added()


def _said(why: str | Cut, flow: Flow) -> str:
    return why if isinstance(why, str) else why.explain(flow)


def _within(ranges: list[tuple[int, int]], src: int, dst: int) -> bool:
    # A loop, not any() over a generator: this runs once per new kind of entry.
    for lo, hi in ranges:  # noqa: SIM110
        if lo <= src <= hi or lo <= dst <= hi:
            return True
    return False


class _Judge:
    """Judges an entry not judged yet (the first of its kind, or laid out otherwise) for one
    dump's ``_scan``, and remembers the verdict of its kind in ``judged``.

    With ``compile.flows.Verdicts`` as the reason, an entry laid out as ``_ENTRY`` reads it is
    judged from the integers ``_FLOW`` reads, without a ``Flow``, and its verdict is a shared
    ``Cut`` whose sentence is made only if it goes into the sample: a table where every entry is
    its own kind (a peer's connections to many pods or ports) costs about what one of few kinds
    does. With a dump by mark, ``Verdicts`` is given the pair's value as the mark (``delete_where``'s
    contract: only the bits under the mask are read)."""

    def __init__(
        self,
        reason: Callable[[Flow], str | None],
        ranges: list[tuple[int, int]] | None,
        mark: tuple[int, int] | None,
        judged: dict[tuple[bytes, ...], str | Cut | None],
        doomed: _Doomed,
        buffer: bytearray,
        view: memoryview,
    ) -> None:
        self.buffer, self.view = buffer, view
        self.reason = reason
        self.verdicts = reason if isinstance(reason, Verdicts) else None
        self.ranges = ranges
        self.mark = None if mark is None else mark[0]
        self.judged = judged
        self.doomed = doomed

    def __call__(self, pos: int, end: int, key: tuple[bytes, ...] | None) -> None:
        """Judge the entry whose message is ``view[pos:end]``; remember the verdict under
        ``key`` if the entry is laid out as ``_ENTRY`` reads it (``key``: that it is long enough
        for ``_laid_out`` to read)."""
        ranges, doomed, view = self.ranges, self.doomed, self.view
        at = pos + _ATTRS
        buffer = self.buffer
        if key is not None and _laid_out(buffer, at):
            # The common case: read at the fixed offsets, no walk, no copy; the verdict is
            # remembered.
            values = _FLOW.unpack_from(buffer, at)
            src, dst, proto, _, dport, rsrc, rdst, rsport, _ = values
            why: str | Cut | None = None
            flow = None
            if ranges is not None and not _within(ranges, src, dst):
                pass
            elif self.verdicts is not None:
                mark = self.mark
                if mark is None:  # the key's mark, found by ``_scan``'s walk
                    mark = int.from_bytes(key[3], "big") if key[3] else 0
                why = self.verdicts.cut(proto, src, dst, dport, rsrc, rdst, rsport, mark)
            else:
                flow = _fixed_flow(bytes(view[at:end]), values)
                why = self.reason(flow)
            if why is not None:
                if doomed.sampled:  # ``_Doomed.copy``, inlined: once per entry here
                    doomed.requests += doomed.fast_header
                    doomed.requests += view[pos + HEADER.size : pos + _BODY_END]
                    doomed.added()
                else:
                    flow = flow or _fixed_flow(bytes(view[at:end]), values)
                    body = bytes(view[pos + HEADER.size : pos + _BODY_END])
                    doomed.add(body, flow, _said(why, flow))
            judged = self.judged
            if len(judged) >= JUDGED:
                judged.clear()
            judged[key] = why
            return
        attrs = bytes(view[at:end])
        if ranges is not None:
            found = _addresses(attrs)
            if found is None or not _within(ranges, *found):
                return
        entry = _entry(attrs)
        said = self.reason(entry.flow)
        if said is not None:
            doomed.add(_delete_body(entry), entry.flow, said)


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
        self._del.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # errors without the request
        # One buffer for every dump's datagrams, with room past the end for ``_ENTRY``'s
        # read of a short last message (the dump's DONE).
        self._buffer = bytearray(_RECEIVE + _ENTRY.size)
        self._view = memoryview(self._buffer)
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

    def _dump_request(self, mark: tuple[int, int] | None) -> int:
        """Ask for one dump of the IPv4 table; with ``mark`` (value, mask), of only the entries
        whose ``mark & mask == value``, filtered by the kernel. Returns its sequence number."""
        body = _NFGENMSG.pack(socket.AF_INET, 0, 0)
        if mark is not None:
            value, mask = mark
            body += attr(CTA_MARK, struct.pack("!I", value))
            body += attr(CTA_MARK_MASK, struct.pack("!I", mask))
        return self._send(
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, body
        )

    def delete_where(
        self,
        reason: Callable[[Flow], str | None],
        about: Iterable[IPv4Network] | None = None,
        marks: Iterable[tuple[int, int]] | None = None,
    ) -> Cleared:
        """Delete every entry for which ``reason(flow)`` names a reason, streaming the table.
        ``about``: only entries whose original source or destination lies in these networks
        can have one (the others are skipped, never asked); None: every entry is asked. ``marks``:
        only entries whose mark matches one of these (value, mask) pairs can have one, and only
        those are dumped (the kernel filters; one dump per pair, so pairs should not overlap);
        None: one dump of every entry.

        ``reason`` is asked once per kind of entry, not once per entry: entries alike in all
        it may read (addresses and protocol both ways, the original destination port, the
        reply's source port; the mark, or with ``marks`` only the mark's bits under the pair's
        mask) get the first one's answer. So with ``marks``, ``reason`` must read no other bit
        of the mark (``compile.flows.stale`` reads only peerwall's, ``ctmark.OURS``, of a marked
        entry: the enforcer asks for the unmarked ones with the whole mask)."""
        ranges = None if about is None else _ranges(about)
        filters: list[tuple[int, int] | None] = [None] if marks is None else list(marks)
        with self._lock:
            # Deleted after the dump, not during it: an entry deleted while the kernel holds it
            # as the place to resume its dump from can make the dump skip what follows. What is
            # kept meanwhile is each doomed entry's delete request (72 bytes), in one buffer.
            doomed = _Doomed(self._seq)
            for mark in filters:
                self._scan(self._dump_request(mark), reason, ranges, mark, doomed)
            self._seq = max(self._seq, doomed.seq)  # the deletions' numbers follow both
            return self._send_deletions(doomed)

    def _scan(
        self,
        seq: int,
        reason: Callable[[Flow], str | None],
        ranges: list[tuple[int, int]] | None,
        mark: tuple[int, int] | None,
        doomed: _Doomed,
    ) -> None:
        """Read the dump ``seq`` (of the entries with ``mark``, a (value, mask) pair; None: of
        all) as it comes and add the delete request of every entry ``reason`` names to
        ``doomed``.

        Per entry, one ``unpack_from`` of what ``reason`` may depend on (``_ENTRY``: the bytes
        where the kernel writes a TCP or UDP entry's tuples, attribute headers included, so
        that a key judged once was checked to be that layout) and a dictionary lookup; a doomed
        one's delete request is its own original tuple, copied from the dump. No object is
        built for it. The first entry of a kind, and any other layout (ICMP, zones), is judged
        by ``_Judge``; without ``mark`` the entry's mark, found by a walk, is part of the key."""
        judged: dict[tuple[bytes, ...], str | Cut | None] = {}
        buffer, view, sock = self._buffer, self._view, self._sock
        unpack, get, entry_type = _ENTRY.unpack_from, judged.get, _ENTRY_TYPE
        judge = _Judge(reason, ranges, mark, judged, doomed, buffer, view)
        read_mark = mark is None
        while True:
            size = sock.recv_into(buffer, _RECEIVE)
            pos = 0
            while pos < size:
                length, kind, flags, mseq, a, b, c = unpack(buffer, pos)
                end = pos + ((length + 3) & ~3)
                if mseq != seq:
                    pos = end
                    continue
                if kind == entry_type and length >= _ENTRY.size:
                    key = (
                        (a, b, c, _mark(view[pos + _AFTER_TUPLES : end]))
                        if read_mark
                        else (a, b, c)
                    )
                    why = get(key, _UNJUDGED)
                    if why is None:
                        pos = end
                        continue
                    if why is not _UNJUDGED:  # doomed like the first of its kind
                        if doomed.sampled:
                            doomed.copy(view[pos + HEADER.size : pos + _BODY_END])
                        else:  # one for the sample: its flow, for the log
                            attrs = bytes(view[pos + _ATTRS : end])
                            flow = _fixed_flow(attrs, _FLOW.unpack_from(attrs))
                            body = bytes(view[pos + HEADER.size : pos + _BODY_END])
                            doomed.add(body, flow, _said(cast(str | Cut, why), flow))
                        pos = end
                        continue
                    judge(pos, end, key)
                elif kind == NLMSG_DONE:
                    return
                elif kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buffer, pos + HEADER.size)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                elif kind == entry_type:
                    judge(pos, end, None)
                pos = end
                if not flags & NLM_F_MULTI:
                    return

    def _send_deletions(self, doomed: _Doomed) -> Cleared:
        """Send ``doomed``'s requests, ``SEND_BATCH`` to a datagram, each datagram closed by a
        no-op that asks for an acknowledgement. The requests ask for none: the kernel answers a
        failed one anyway (an error message) and handles a datagram's messages in order, so once
        the no-op is answered, every request before it without an error has deleted its entry."""
        out = Cleared()
        failed: set[int] = set()
        view = memoryview(doomed.requests)
        cuts = [*doomed.cuts, len(view)]
        start = 0
        for cut in cuts:
            if cut == start:
                continue
            self._seq += 1
            barrier = self._seq
            self._del.sendmsg(
                [
                    view[start:cut],
                    HEADER.pack(HEADER.size, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, barrier, 0),
                ]
            )
            start = cut
            answered = False
            while not answered:
                for kind, _flags, mseq, _port, payload in messages(self._del.recv(1 << 20)):
                    if kind != NLMSG_ERROR:
                        continue
                    code = -struct.unpack_from("=i", payload)[0]
                    if mseq == barrier:
                        answered = True
                    elif code == errno.ENOENT:  # it went by itself meanwhile
                        failed.add(mseq)
                        out.count -= 1
                    elif code:
                        raise OSError(code, os.strerror(code))
        view.release()
        out.count += doomed.count
        out.sample = [
            (flow, why) for seq, (flow, why) in doomed.sample.items() if seq not in failed
        ]
        return out
