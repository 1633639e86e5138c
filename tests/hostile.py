"""A hostile peer's toolkit for the lab tests: listeners, TCP/UDP/ICMP/IPv6 attempts from inside
namespaces, forged IPv4 packets, and a sniffer that says whether something arrived."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

from peerwall.lab.plan import LabPlan
from peerwall.nsenter import entered

ETH_P_ALL = 0x0003
ECHO_PORT = 9100


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: IPv4Address, dst: IPv4Address, proto: int, payload: bytes) -> bytes:
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src.packed, dst.packed
    )
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def tcp_syn(src: IPv4Address, dst: IPv4Address, sport: int, dport: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    return ipv4(src, dst, socket.IPPROTO_TCP, tcp)


def udp(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, data: bytes = b"x") -> bytes:
    body = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(body))
    body = body[:6] + struct.pack("!H", checksum(pseudo + body) or 0xFFFF) + body[8:]
    return ipv4(src, dst, socket.IPPROTO_UDP, body)


def send_raw(netns: str, packet: bytes) -> None:
    """Send a whole IPv4 packet (header included) from ``netns``, routed by its destination."""
    with entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with s:
        dst = socket.inet_ntoa(packet[16:20])
        s.sendto(packet, (dst, 0))


@contextlib.contextmanager
def sniffer(netns: str, ifname: str) -> Iterator[Callable[[Callable[[bytes], bool]], bool]]:
    """``seen(match)`` says whether an IPv4 packet matching ``match(ip_bytes)`` crossed
    ``ifname`` in ``netns`` since the block began (waiting up to 0.5 s for it)."""
    with entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.setblocking(False)
    frames: list[bytes] = []

    def seen(match: Callable[[bytes], bool]) -> bool:
        deadline = time.monotonic() + 0.5
        while True:
            try:
                frames.append(sock.recv(65536))
                continue
            except BlockingIOError:
                pass
            if any(f[12:14] == b"\x08\x00" and match(f[14:]) for f in frames):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    try:
        yield seen
    finally:
        sock.close()


def from_to(src: IPv4Address | None, dst: IPv4Address, proto: int) -> Callable[[bytes], bool]:
    def match(ip: bytes) -> bool:
        return (
            ip[9] == proto and ip[16:20] == dst.packed and (src is None or ip[12:16] == src.packed)
        )

    return match


def tcp_connects(netns: str, host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP handshake from ``netns`` to ``host:port`` completes (refused counts: it
    means a packet got through and the host answered)."""
    with entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return True
        except ConnectionRefusedError:
            return True
        except OSError:
            return False


@contextlib.contextmanager
def tcp_listener(netns: str, port: int, family: int = socket.AF_INET) -> Iterator[None]:
    with entered(netns):
        s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    s.listen(16)
    stop = threading.Event()
    s.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        s.close()


def udp_arrives(src_ns: str, dst_ns: str, host: str, port: int) -> bool:
    with entered(dst_ns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(src_ns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("0.0.0.0", port))
        rx.settimeout(0.5)
        tx.sendto(b"hello", (host, port))
        try:
            return rx.recv(100) == b"hello"
        except TimeoutError:
            return False


def pings(netns: str, host: str) -> bool:
    """An ICMP echo from ``netns`` to ``host`` gets its reply."""
    with entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with s:
        s.settimeout(0.5)
        body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"peerwall"
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        s.sendto(body, (host, 0))
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4 :]
            if addr[0] == host and icmp[0] == 0 and icmp[4:6] == b"\x42\x42":
                return True
        return False


def link_local(netns: str, ifname: str) -> str:
    """The IPv6 link-local address of ``ifname``, once duplicate address detection is done."""
    deadline = time.monotonic() + 5
    while True:
        out = subprocess.run(
            ["ip", "-n", netns, "-6", "-o", "addr", "show", "dev", ifname, "scope", "link"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if out and "tentative" not in out:
            return out.split()[3].split("/")[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no usable IPv6 link-local address on {ifname} in {netns}: {out!r}"
            )
        time.sleep(0.1)


def tcp6_connects(netns: str, address: str, ifname: str, port: int) -> bool:
    """A TCP handshake from ``netns`` to a link-local ``address`` out of ``ifname``."""
    with entered(netns):
        scope = socket.if_nametoindex(ifname)
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with s:
        s.settimeout(1.0)
        try:
            s.connect((address, port, 0, scope))
            return True
        except ConnectionRefusedError:
            return True
        except OSError:
            return False


def nft(netns: str, *args: str) -> str:
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@contextlib.contextmanager
def echo_server(netns: str) -> Iterator[None]:
    """A listener in ``netns`` that echoes every byte back, until the block ends."""
    with entered(netns):
        srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", ECHO_PORT))
    srv.listen()
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()
        for c in conns:
            c.close()

    def echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(100):
                conn.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        srv.close()


def connect(plan: LabPlan, src: str, dst: str, timeout: float = 1.0) -> socket.socket:
    t = plan.topology
    s, d = t.pod_by_name[src], t.pod_by_name[dst]
    address = plan.topology.addresses.pod_seen_from(d, s.physical)
    with entered(plan.pod_ns(src)):
        sock = socket.socket()
    sock.settimeout(timeout)
    sock.connect((str(address), ECHO_PORT))
    return sock


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(100)


@contextlib.contextmanager
def owned_table(netns: str, name: str = "peerwall", *, take_over: bool = False) -> Iterator[None]:
    """An ``nft -i`` holding ``inet <name>`` with ``flags owner`` (no other process may change
    or delete it) while the block runs; ``take_over``: it deletes the existing one first."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, "nft", "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        delete = f"delete table inet {name}\n" if take_over else ""
        # ``list tables`` answers once the table is added: read up to its line.
        proc.stdin.write(f"{delete}add table inet {name} {{ flags owner; }}\nlist tables\n")
        proc.stdin.flush()
        while f"table inet {name}" not in proc.stdout.readline():
            assert proc.poll() is None, "nft -i ended before it held the table"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
