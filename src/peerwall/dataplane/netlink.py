"""Set element edits straight to nf_tables over netlink: one datagram, one transaction.

The batch is encoded by ``compile.netlink``; this is the socket. Like a libnftables context, the
socket acts on the network namespace that was current when it was made, whatever thread uses it
later, so it is made inside the namespace and kept. The kernel runs the whole batch inside
``send`` and queues every answer before ``send`` returns: the answers are read at once, without
waiting, and one that is missing is an error, not a hang.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable

from peerwall import nsenter
from peerwall.compile import netlink
from peerwall.compile.netlink import SetEdit
from peerwall.errors import NftError

SO_SNDBUFFORCE = 32
_RECV = 1 << 16


class NetlinkSets:
    """An nf_tables netlink socket in namespace ``netns`` (``None``: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        with nsenter.entered(netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_NETFILTER)
        try:
            sock.bind((0, 0))
            sock.connect((0, 0))
            sock.setsockopt(netlink.SOL_NETLINK, netlink.NETLINK_CAP_ACK, 1)
        except OSError as e:
            sock.close()
            raise NftError(f"nf_tables netlink socket: {e}") from None
        self._sock = sock
        self._sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self._buf = bytearray(_RECV)
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._sock.close()

    def edit(self, family: str, table: str, edits: Iterable[SetEdit]) -> None:
        """Make ``edits`` in one transaction; raise ``NftError`` (and change nothing) if the
        kernel refuses any of them (a set that does not exist, an element to delete that is not
        there) or does not acknowledge every message."""
        with self._lock:
            batch, sent = netlink.element_batch(family, table, edits, self._seq + 1)
            if not sent:
                return
            self._seq += len(sent) + 2
            try:
                self._room(len(batch))
                self._sock.send(batch)
                answers = self._answers(len(sent))
            except OSError as e:
                self._drain()
                raise NftError(f"nf_tables netlink: {e}") from None
        by_seq = {s.seq: s for s in sent}
        for seq, code in answers.items():
            if code and seq in by_seq:
                raise NftError(netlink.refusal(family, table, by_seq[seq], code))
        missing = by_seq.keys() - answers.keys()
        if missing:
            raise NftError(f"nf_tables netlink: {len(missing)} message(s) not acknowledged")

    def _room(self, size: int) -> None:
        """A datagram larger than the send buffer is refused: grow it (as root, past the
        system's maximum, as libnftables does)."""
        if size + 1024 <= self._sndbuf:
            return
        want = max(size + 4096, 2 * self._sndbuf)
        for option in (SO_SNDBUFFORCE, socket.SO_SNDBUF):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, option, want)
            except OSError:
                continue
            break
        self._sndbuf = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

    def _answers(self, expected: int) -> dict[int, int]:
        """seq -> errno of what is queued now; blocks (1 s at most) only if answers are still
        missing after the queue is empty, which the kernel does not do."""
        got: dict[int, int] = {}
        view = memoryview(self._buf)
        while len(got) < expected:
            try:
                n = self._sock.recv_into(self._buf, _RECV, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._sock.settimeout(1.0)
                try:
                    n = self._sock.recv_into(self._buf, _RECV)
                except TimeoutError:
                    break
                finally:
                    self._sock.settimeout(None)
            got.update(netlink.replies(view[:n]))
        return got

    def _drain(self) -> None:
        """Drop answers left queued by a failed exchange, so the next one reads its own."""
        while True:
            try:
                self._sock.recv_into(self._buf, _RECV, socket.MSG_DONTWAIT)
            except OSError:
                return
