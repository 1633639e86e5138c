"""The NFLOG reader against the kernel: a log rule in a fresh namespace, real packets, parsed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from ipaddress import IPv4Address

import pytest

from peerwall.dataplane.nflog import LoggedPacket, NflogReader
from peerwall.nsenter import entered

pytestmark = pytest.mark.lab
PREFIX = "peerwall:dropped:forward:denied:C2"


def read_until(reader: NflogReader, n: int) -> list[LoggedPacket]:
    got: list[LoggedPacket] = []
    deadline = time.monotonic() + 10  # a bound on waiting, not on speed
    while len(got) < n and time.monotonic() < deadline:
        got += reader.read()
        time.sleep(0.01)
    return got


def test_each_logged_packet_is_read_with_its_prefix_hook_addresses_and_port(netns: str) -> None:
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    rules = (
        "add table inet t; add chain inet t o { type filter hook output priority 0; }; "
        f'add rule inet t o ip daddr 127.0.0.2 limit rate 50/second burst 100 packets log prefix "{PREFIX}" group 19; '
        "add rule inet t o ip daddr 127.0.0.2 drop"
    )
    subprocess.run(["ip", "netns", "exec", netns, "nft", rules], check=True)
    with entered(netns):
        reader = NflogReader(19)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.setblocking(False)
    with reader, udp, tcp, icmp, other:
        # Each drop refuses the send (EPERM), after the log rule made its copy.
        with contextlib.suppress(OSError):
            udp.sendto(b"x", ("127.0.0.2", 5353))
        with contextlib.suppress(OSError):
            tcp.connect(("127.0.0.2", 80))
        with contextlib.suppress(OSError):
            icmp.sendto(b"\x08\x00\xf7\xfd\x00\x01\x00\x01", ("127.0.0.2", 0))
        other.sendto(b"y", ("127.0.0.1", 9))  # not logged
        got = read_until(reader, 3)
    assert [(p.prefix, p.hook, p.src, p.dst, p.protocol, p.port) for p in got] == [
        (PREFIX, "output", IPv4Address("127.0.0.1"), IPv4Address("127.0.0.2"), proto, port)
        for proto, port in (("udp", 5353), ("tcp", 80), ("icmp", 8))
    ]
    assert reader.lost == 0


def test_a_second_listener_of_the_same_group_is_refused(netns: str) -> None:
    with entered(netns):
        first = NflogReader(7)
        with first, pytest.raises(OSError):
            NflogReader(7)
