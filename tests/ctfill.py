"""Fill a namespace's conntrack table through ctnetlink (as ``conntrack -I`` does): many UDP
entries at once, without sending a packet, to see what the agent does with a full table."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from peerwall.dataplane import conntrack as ct
from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.nft.tlv import HEADER, attr, messages

IPCTNL_MSG_CT_NEW = 0
NLM_F_CREATE = 0x400
CTA_TIMEOUT = 7
CTA_STATUS = 3
IPS_CONFIRMED = 1 << 3


def _tuple(src: IPv4Address, dst: IPv4Address, sport: int, dport: int) -> bytes:
    ip = attr(ct.CTA_IP_V4_SRC, src.packed) + attr(ct.CTA_IP_V4_DST, dst.packed)
    proto = (
        attr(ct.CTA_PROTO_NUM, bytes([socket.IPPROTO_UDP]))
        + attr(ct.CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
        + attr(ct.CTA_PROTO_DST_PORT, struct.pack("!H", dport))
    )
    return attr(ct.CTA_TUPLE_IP, ip, nested=True) + attr(ct.CTA_TUPLE_PROTO, proto, nested=True)


def fill(
    netns: str,
    count: int,
    src: IPv4Address,
    dst: IPv4Address,
    first: int = 0,
    mark: int = 0,
    *,
    dport: int = 53,
    reply_src: IPv4Address | None = None,
    reply_dst: IPv4Address | None = None,
    reply_sport: int | None = None,
    zone: int | None = None,
    each: Callable[[int], tuple[IPv4Address, IPv4Address, int]] | None = None,
) -> int:
    """Create ``count`` UDP entries ``src+i/60000 : port -> dst:dport`` in ``netns``, with
    connection mark ``mark``; returns how many the kernel accepted (it refuses beyond
    ``nf_conntrack_max``). The reply tuple mirrors the original unless told (``reply_src``:
    a destination NAT, ``reply_dst``: a source NAT, ``reply_sport``); ``zone``: a conntrack
    zone other than the default; ``each``: the source, destination and destination port of
    entry ``i`` (instead of ``src``, ``dst`` and ``dport``), e.g. every entry its own kind."""
    with open_netfilter_socket(netns, "conntrack fill") as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        created, pending = 0, 0
        for seq, i in enumerate(range(first, first + count), start=1):
            s = IPv4Address(int(src) + i // 60000)
            sport = 1024 + i % 60000
            d, dp = dst, dport
            if each is not None:
                s, d, dp = each(i)
            body = (
                ct._NFGENMSG.pack(socket.AF_INET, 0, 0)
                + attr(ct.CTA_TUPLE_ORIG, _tuple(s, d, sport, dp), nested=True)
                + attr(
                    ct.CTA_TUPLE_REPLY,
                    _tuple(
                        d if reply_src is None else reply_src,
                        s if reply_dst is None else reply_dst,
                        dp if reply_sport is None else reply_sport,
                        sport,
                    ),
                    nested=True,
                )
                + attr(CTA_TIMEOUT, struct.pack("!I", 3600))
                + (attr(ct.CTA_MARK, struct.pack("!I", mark)) if mark else b"")
                + (b"" if zone is None else attr(ct.CTA_ZONE, struct.pack("!H", zone)))
            )
            flags = ct.NLM_F_REQUEST | NLM_F_CREATE | ct.NLM_F_ACK
            msg_type = (ct.NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
            sock.send(HEADER.pack(HEADER.size + len(body), msg_type, flags, seq, 0) + body)
            pending += 1
            if pending >= 256:
                created += _acks(sock, pending)
                pending = 0
        created += _acks(sock, pending)
    return created


def _acks(sock: socket.socket, n: int) -> int:
    ok = 0
    while n:
        for kind, _flags, _seq, _port, body in messages(sock.recv(1 << 20)):
            if kind == ct.NLMSG_ERROR:
                n -= 1
                ok += struct.unpack_from("=i", body)[0] == 0
    return ok


def count(netns: str) -> int:
    with ct.Conntrack(netns) as table:
        return len(table.entries())
