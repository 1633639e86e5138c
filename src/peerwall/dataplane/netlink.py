"""Set element edits straight to nf_tables over netlink: one datagram, one transaction.

The batch is encoded by ``nft.netlink``; this is the socket. Like a libnftables context, the
socket acts on the network namespace that was current when it was made, whatever thread uses it
later, so it is made inside the namespace and kept. The kernel runs the whole batch inside
``send`` and queues every answer before ``send`` returns: the answers are read at once, without
waiting, and one that is missing is an error, not a hang.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence

from peerwall import nsenter
from peerwall.errors import NftError
from peerwall.nft import netlink
from peerwall.nft.netlink import SetEdit

SO_SNDBUFFORCE = 32
_RECV = 1 << 16


def open_netfilter_socket(netns: str | None, what: str) -> socket.socket:
    """A ``NETLINK_NETFILTER`` socket made in network namespace ``netns`` (``None``: the current
    one) and bound; it stays in that namespace for life, whatever thread uses it later. Every
    netfilter socket of the dataplane comes from here (nf_tables, notifications, NFLOG,
    conntrack). A socket the kernel refuses raises ``NftError`` naming ``what`` it was for; a
    missing namespace raises ``LabError``."""
    try:
        with nsenter.entered(netns):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, netlink.NETLINK_NETFILTER)
    except OSError as e:
        raise NftError(f"{what}: cannot open a netfilter netlink socket: {e}") from None
    try:
        sock.bind((0, 0))
    except OSError as e:
        sock.close()
        raise NftError(f"{what}: cannot bind a netfilter netlink socket: {e}") from None
    return sock


def judge(
    family: str,
    table: str,
    edits: Sequence[SetEdit],
    first: int,
    sent: list[netlink.Sent] | None,
    errors: list[tuple[int, int]] | None,
) -> None:
    """Raise ``NftError`` naming the first refused message of the batch ``edits`` numbered from
    ``first`` (``sent``: its messages, made again if None), if ``errors`` has any, or saying the
    kernel did not answer (``errors`` None)."""
    if errors is None:
        raise NftError("nf_tables netlink: the kernel did not answer the element batch")
    if errors:
        seq, code = errors[0]
        if sent is None:
            sent = netlink.element_batch(family, table, edits, first)[1]
        refused = next((s for s in sent if s.seq == seq), None)
        if refused is not None:
            raise NftError(netlink.refusal(family, table, refused, code))
        raise NftError(f"Error: Could not process rule: {os.strerror(code)}: element batch")


class NetlinkSets:
    """An nf_tables netlink socket in namespace ``netns`` (``None``: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        sock = open_netfilter_socket(netns, "nf_tables element batches")
        try:
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

    def fileno(self) -> int:
        """The socket's descriptor (``dataplane.element_writer`` hands it to its process)."""
        return self._sock.fileno()

    def edit(self, family: str, table: str, edits: Sequence[SetEdit]) -> None:
        """Make ``edits`` in one transaction; raise ``NftError`` (and change nothing) if the
        kernel refuses any of them (a set that does not exist, an element to delete that is not
        there) or does not answer."""
        with self._lock:
            first = self._seq + 1
            one = None
            if len(edits) == 1:
                one = netlink.one_element_batch(family, table, edits[0], first)
            sent: list[netlink.Sent] | None = None
            if one is not None:  # an event: one address (its ``Sent`` made only if refused)
                batch, last = one, first + 1
            else:
                batch, sent = netlink.element_batch(family, table, edits, first)
                if not sent:
                    return
                last = sent[-1].seq
            self._seq = last + 1
            try:
                if len(batch) + 1024 > self._sndbuf:  # checked here too: the event path
                    self.room(len(batch))
                self._sock.send(batch)
                try:
                    n: int | None = self._sock.recv_into(self._buf, _RECV, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    n = None
                # The usual answer, read at once: one acknowledgement, of the last message.
                if n == netlink.ACK_SIZE and netlink.acknowledges(self._buf, last):
                    return
                errors = self._answers(first, last, n)
            except OSError as e:
                self._drain()
                raise NftError(f"nf_tables netlink: {e}") from None
        judge(family, table, edits, first, sent, errors)

    def room(self, size: int) -> None:
        """Make the send buffer take a datagram of ``size`` bytes: a larger one is refused, so
        grow it (as root, past the system's maximum, as libnftables does)."""
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

    def _answers(self, first: int, last: int, n: int | None) -> list[tuple[int, int]] | None:
        """The errors (seq, errno) answered to this batch (seq ``first`` to ``last + 1``), read
        up to the answer to ``last``, its closing acknowledgement; None if that never comes.
        ``n``: the size of a first answer already read into the buffer (None: none was queued).
        The queue holds every answer when ``send`` returns, so this waits (1 s at most) only if
        the kernel did not answer, which it does not do; answers to older batches are skipped."""
        errors: list[tuple[int, int]] = []
        while True:
            if n is None:
                try:
                    n = self._sock.recv_into(self._buf, _RECV, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    self._sock.settimeout(1.0)
                    try:
                        n = self._sock.recv_into(self._buf, _RECV)
                    except TimeoutError:
                        return None
                    finally:
                        self._sock.settimeout(None)
            if n == netlink.ACK_SIZE and netlink.acknowledges(self._buf, last):
                return errors  # the usual answer: one acknowledgement, of the last message
            if netlink.scan_answers(memoryview(self._buf)[:n], first, last, errors):
                return errors  # what follows a refused header is skipped by later reads
            n = None

    def _drain(self) -> None:
        """Drop answers left queued by a failed exchange, so the next one reads its own."""
        while True:
            try:
                self._sock.recv_into(self._buf, _RECV, socket.MSG_DONTWAIT)
            except OSError:
                return
