"""NFLOG over netlink (nfnetlink_log): the packets peerwall's drop rules hand to the agent.

A rule ``log prefix "..." group N`` sends a copy of the packet's first bytes to whoever bound group
N in the network namespace; nobody bound, or a receive buffer full, and the kernel discards the
copy (the packet's verdict never waits). This is a small reader of that protocol over a plain
``AF_NETLINK`` socket (pyroute2 has no nfnetlink_log; libnetfilter_log would be a C dependency):
bind the group, ask for the packet's first ``copy_range`` bytes, parse each message into a
``LoggedPacket``. Messages the kernel could not deliver (``ENOBUFS``) are counted in ``lost``.

Protocol constants: linux/netfilter/nfnetlink_log.h, linux/netfilter/nfnetlink.h.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.nft import tlv
from peerwall.nft.tlv import attr

__all__ = ["HOOKS", "LoggedPacket", "NflogReader", "parse_messages", "parse_packet"]

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR = 1
NFULA_TIMESTAMP = 3
NFULA_IFINDEX_INDEV = 4
NFULA_IFINDEX_OUTDEV = 5
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_DONE = 3

HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
"""netfilter's IPv4/IPv6 hook numbers (``NF_INET_*``)."""

COPY_RANGE = 128
"""Bytes of each packet the kernel copies: the IP header and the ports or ICMP type are enough."""

PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


@dataclass(frozen=True)
class LoggedPacket:
    """One packet a log rule handed over."""

    time: float
    """Seconds since the epoch: the kernel's timestamp if it sent one, else when it was read."""
    prefix: str
    hook: str
    indev: int | None
    outdev: int | None
    src: IPv4Address | IPv6Address | None
    dst: IPv4Address | IPv6Address | None
    protocol: str
    """tcp, udp, icmp, icmpv6, or the IP protocol number as text."""
    port: int | None
    """Destination port (TCP, UDP); for ICMP, the type."""


def _l3(data: bytes) -> tuple[object, object, str, int | None]:
    """(src, dst, protocol, port) of an IP packet's first bytes."""
    if len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        src, dst = ip_address(data[12:16]), ip_address(data[16:20])
        l4 = data[ihl:]
    elif len(data) >= 40 and data[0] >> 4 == 6:
        proto = data[6]
        src, dst = ip_address(data[8:24]), ip_address(data[24:40])
        l4 = data[40:]
    else:
        return None, None, "unknown", None
    name = PROTOCOLS.get(proto, str(proto))
    port = None
    if name in ("tcp", "udp") and len(l4) >= 4:
        port = struct.unpack_from("!H", l4, 2)[0]
    elif name in ("icmp", "icmpv6") and l4:
        port = l4[0]
    return src, dst, name, port


def parse_packet(body: bytes, received: float | None = None) -> LoggedPacket:
    """One ``NFULNL_MSG_PACKET`` body (after the netlink header): nfgenmsg, then attributes."""
    attrs = tlv.attrs(body[4:])
    hook = "unknown"
    if (hdr := attrs.get(NFULA_PACKET_HDR)) is not None and len(hdr) >= 3:
        hook = HOOKS.get(hdr[2], str(hdr[2]))
    stamp = received if received is not None else time.time()
    if (ts := attrs.get(NFULA_TIMESTAMP)) is not None and len(ts) >= 16:
        sec, usec = struct.unpack_from("!QQ", ts)
        stamp = sec + usec / 1e6
    prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace")

    def ifindex(kind: int) -> int | None:
        raw = attrs.get(kind)
        return struct.unpack("!I", raw[:4])[0] if raw and len(raw) >= 4 else None

    src, dst, proto, port = _l3(attrs.get(NFULA_PAYLOAD, b""))
    return LoggedPacket(
        stamp,
        prefix,
        hook,
        ifindex(NFULA_IFINDEX_INDEV),
        ifindex(NFULA_IFINDEX_OUTDEV),
        src if isinstance(src, IPv4Address | IPv6Address) else None,
        dst if isinstance(dst, IPv4Address | IPv6Address) else None,
        proto,
        port,
    )


def parse_messages(data: bytes, received: float | None = None) -> Iterator[LoggedPacket]:
    """Every logged packet in one datagram read from the socket (other messages skipped)."""
    for kind, _flags, _seq, _port, body in tlv.messages(data):
        if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            yield parse_packet(bytes(body), received)


class NflogReader:
    """Bound to one NFLOG group of network namespace ``netns`` (``None``: the current one).
    Non-blocking: ``fileno`` for an event loop, ``read`` for what is waiting. A socket the kernel
    refuses raises ``NftError``; a group it will not bind (another listener) ``OSError``."""

    def __init__(self, group: int, buffer: int = 1 << 20, netns: str | None = None) -> None:
        self.group = group
        self.lost = 0
        """Times the kernel found this socket's buffer full (ENOBUFS) and dropped messages."""
        self.sock = open_netfilter_socket(netns, f"NFLOG group {group}")
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
            self._seq = 0
            self._config(attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
            mode = struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)
            self._config(
                attr(NFULA_CFG_MODE, mode)
                # One message per packet, at once: no batching delay in the kernel.
                + attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
            )
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)

    def _config(self, attrs: bytes) -> None:
        self._seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, self.group) + attrs
        header = tlv.HEADER.pack(
            16 + len(body),
            (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
            NLM_F_REQUEST | NLM_F_ACK,
            self._seq,
            0,
        )
        self.sock.send(header + body)
        reply = self.sock.recv(65536)
        _length, kind = struct.unpack_from("=IH", reply)
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", reply, 16)
            if code != 0:
                raise OSError(-code, f"NFLOG group {self.group}: {os.strerror(-code)}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, limit: int = 256) -> list[LoggedPacket]:
        """What is waiting (up to ``limit`` datagrams), without blocking."""
        out: list[LoggedPacket] = []
        for _ in range(limit):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            out.extend(parse_messages(data, time.time()))
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NflogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
