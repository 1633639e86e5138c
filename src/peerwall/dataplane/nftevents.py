"""nftables' change notifications (``NFNLGRP_NFTABLES``, what ``nft monitor`` reads), filtered to
the changes someone else made to one table.

The kernel multicasts every committed change of the ruleset to this group: one message per object
(table, chain, rule, set, element) with the table's name in attribute 1, then one ``NEWGEN`` that
closes the transaction. The agent listens in its gateway's network namespace and asks for a
read-back as soon as a transaction that was not its own touched its table: a deleted table is
repaired in milliseconds, not at the next resync.

A transaction is the agent's own when it was committed through one of the agent's own netlink
sockets. Every notification's header carries the port id of the socket whose batch caused it
(``nlmsg_pid``: the kernel's ``nf_tables_gen_notify`` and the object notifications are sent with
the committing request's ``portid``, net/netfilter/nf_tables_api.c), and a port id is unique among
the netfilter sockets of one network namespace while its socket is open. So the test is exact:
the port id of the ``NEWGEN`` is one of this process's ``NETLINK_NETFILTER`` sockets in the same
namespace (its libnftables context's, its own element-batch socket, ...: whichever committed).
The process's sockets are those of ``/proc/self/fd``; each one's port id is what
``getsockname`` returns on a duplicate of it, its namespace what ``SO_NETNS_COOKIE`` says. The
set is kept and scanned again only when a port id is not in it (libnftables binds its socket at
its first request, so its port id is learnt then). The process's id and name in the ``NEWGEN``
(``NFTA_GEN_PROC_PID``/``NFTA_GEN_PROC_NAME``) are not used: another process of the agent's name,
or the agent's pid seen from another pid namespace, commits through another socket. Only a
process that holds one of the agent's sockets (inherited, or taken with ``pidfd_getfd``, which
needs ptrace rights over the agent) commits as the agent; what it changes is caught by the
periodic resync, or by the kernel refusing a step that runs into it, which a whole replace
follows (``tests/faults/test_refused.py`` drives that). A lost notification (the socket's buffer
overflowed) counts as a foreign change.

A datagram whose first message is stamped with one of the agent's ports is skipped whole, unread:
the kernel queues a transaction's notifications during its commit and sends them at its end,
packed into datagrams of about a page (``nft_commit_notify``, net/netfilter/nf_tables_api.c), each
datagram one transaction's, its ``NEWGEN`` in a datagram of its own (``nf_tables_gen_notify``);
``tests/dataplane/test_nftevents.py`` checks that layout on the running kernel. A burst's element
step of 2,000 elements is 2,000 notifications in ~30 datagrams: read message by message and
attribute by attribute, ~4 us each, they cost the agent's loop more than the step itself (the churn
benchmark's 10,000 events: ~45 ms of reading against ~28 ms to converge).

Like a libnftables context, a ``TableEvents`` is bound to the network namespace that was current
when it was created.
"""

from __future__ import annotations

import errno
import os
import socket

from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.errors import NftError
from peerwall.nft import tlv
from peerwall.nft.netlink import (
    FAMILIES,
    NETLINK_NETFILTER,
    NFGENMSG,
    NFNL_SUBSYS_NFTABLES,
    NFT_MSG_NEWGEN,
    NFTA_TABLE_NAME,
    SOL_NETLINK,
)

__all__ = ["TableEvents", "own_port_ids"]

NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
SO_NETNS_COOKIE = 71
"""<asm-generic/socket.h>; Linux 5.14 and later."""


def netns_cookie(sock: socket.socket) -> bytes | None:
    """The kernel's identifier of the network namespace ``sock`` lives in; None on a kernel
    that does not tell (before 5.14)."""
    try:
        return sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    except OSError:
        return None


def own_port_ids(netns: bytes | None) -> dict[int, tuple[int, int, int]]:
    """The port ids of this process's bound ``NETLINK_NETFILTER`` sockets in the network
    namespace of cookie ``netns`` (None: in any namespace, on a kernel before 5.14; the agent's
    are all in its gateway's), each with the descriptor it was found at and its socket's device
    and inode. A socket that is closed meanwhile, or that cannot be duplicated (no
    descriptor left), is left out: its commits then count as foreign, which costs a read-back,
    never a missed change."""
    ports: dict[int, tuple[int, int, int]] = {}
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return ports
    for name in fds:
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with sock:
            if sock.family != socket.AF_NETLINK or sock.proto != NETLINK_NETFILTER:
                continue
            if netns is not None and netns_cookie(sock) != netns:
                continue
            port = sock.getsockname()[0]
            if port:  # 0: not bound yet (libnftables' socket before its first request)
                found = os.fstat(sock.fileno())  # the same socket as ``fd`` when duplicated
                ports[port] = (fd, found.st_dev, found.st_ino)
    return ports


def _still_open(fd: int, device: int, inode: int) -> bool:
    try:
        found = os.fstat(fd)
    except OSError:
        return False
    return found.st_ino == inode and found.st_dev == device


class TableEvents:
    """A subscription to nftables' notifications in network namespace ``netns`` (``None``: the
    current one), for table ``family table``."""

    def __init__(self, family: str, table: str, netns: str | None = None) -> None:
        self.family = FAMILIES[family]
        self.table = table.encode()
        self._sock = open_netfilter_socket(netns, "nftables notifications")
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.setblocking(False)
            self._netns = netns_cookie(self._sock)
            self._own = own_port_ids(self._netns)
            if self._sock.getsockname()[0] not in self._own:
                # Then the agent's own commits could not be told from others'.
                raise NftError(
                    "nftables notifications: this process's netlink sockets cannot be listed "
                    "(/proc/self/fd)"
                )
        except BaseException:
            self._sock.close()
            raise
        self._touched = False
        """The transaction in progress (not yet closed by its NEWGEN) touched the table."""

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> TableEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ours(self, port: int) -> bool:
        """Whether a transaction committed through netlink port ``port`` (its ``NEWGEN``'s
        ``nlmsg_pid``) was committed through one of this process's sockets."""
        known = self._own.get(port)
        # The socket found there is still open (one fstat): the port is still its, no other
        # socket can have bound it. Closed, any process may have bound that port since.
        if known is not None and _still_open(*known):
            return True
        # A socket opened since the last scan (or bound since: libnftables' binds at its first
        # request), or one closed since, which the scan forgets.
        self._own = own_port_ids(self._netns)
        return port in self._own

    def foreign_changes(self) -> int:
        """Read every pending notification; how many transactions by someone else touched the
        table (a lost notification counts as one). Never blocks."""
        found = 0
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return found
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    found += 1
                    self._touched = False
                    continue
                raise
            if len(data) >= tlv.HEADER.size and self.ours(tlv.HEADER.unpack_from(data)[4]):
                # One of our own transactions: its messages are not read (a burst's element
                # step is a notification per element, ~4 us each read here).
                continue
            for kind, _flags, _seq, port, body in tlv.messages(data):
                if kind >> 8 != NFNL_SUBSYS_NFTABLES or len(body) < NFGENMSG.size:
                    continue
                family = body[0]
                attrs = tlv.attrs(body[NFGENMSG.size :])
                if kind & 0xFF == NFT_MSG_NEWGEN:
                    if self._touched and not self.ours(port):
                        found += 1
                    self._touched = False
                elif (
                    family == self.family
                    and attrs.get(NFTA_TABLE_NAME, b"").rstrip(b"\0") == self.table
                ):
                    self._touched = True
