"""nftables' change notifications (``NFNLGRP_NFTABLES``, what ``nft monitor`` reads), filtered to
the changes someone else made to one table.

The kernel multicasts every committed change of the ruleset to this group: one message per object
(table, chain, rule, set, element) with the table's name in attribute 1, then one ``NEWGEN`` that
closes the transaction and names the process that committed it (pid and command). The agent
listens in its gateway's network namespace and asks for a read-back as soon as a transaction that
was not its own touched its table: a deleted table is repaired in milliseconds, not at the next
resync.

A transaction is the agent's own when the committing task is one of its threads
(``/proc/self/task/<pid>``); where the kernel reports a pid we cannot see (one from another pid
namespace than ours, in a container), the process name is compared too, so the agent's own
commits never trigger a read-back. A foreign process of the very same name is then taken for the
agent: in a pod, any process of that name outside the pod's pid namespace; anywhere, one that has
exited before the agent reads the notification. What it changes is caught by the periodic resync,
or by the kernel refusing a step that runs into it, which a whole replace follows
(``tests/faults/test_refused.py`` drives that). A lost notification (the socket's buffer
overflowed) counts as a foreign change.

Like a libnftables context, a ``TableEvents`` is bound to the network namespace that was current
when it was created.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path

from peerwall.dataplane.netlink import open_netfilter_socket
from peerwall.nft import tlv
from peerwall.nft.netlink import FAMILIES, SOL_NETLINK

__all__ = ["TableEvents"]

NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
TABLE_NAME = 1
"""``NFTA_TABLE_NAME``, ``NFTA_CHAIN_TABLE``, ``NFTA_RULE_TABLE``, ``NFTA_SET_TABLE``, ... all 1."""
NFTA_GEN_PROC_PID, NFTA_GEN_PROC_NAME = 2, 3
NFPROTO_INET = 1

_NFGENMSG = struct.Struct("=BBH")


def _comm() -> bytes:
    try:
        return Path("/proc/self/comm").read_bytes().strip()
    except OSError:
        return b""


class TableEvents:
    """A subscription to nftables' notifications in network namespace ``netns`` (``None``: the
    current one), for table ``family table``."""

    def __init__(self, family: str, table: str, netns: str | None = None) -> None:
        self.family = FAMILIES[family]
        self.table = table.encode()
        self.comm = _comm()
        self._sock = open_netfilter_socket(netns, "nftables notifications")
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._sock.setblocking(False)
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

    def _ours(self, attrs: dict[int, bytes]) -> bool:
        raw = attrs.get(NFTA_GEN_PROC_PID)
        if raw is None or len(raw) < 4:
            return False
        pid = struct.unpack("!I", raw[:4])[0]
        if os.path.exists(f"/proc/self/task/{pid}"):
            return True
        name = attrs.get(NFTA_GEN_PROC_NAME, b"").rstrip(b"\0")
        # Another pid namespace: the kernel's pid is not ours to look up; the name still is.
        return bool(name) and name == self.comm and not os.path.exists(f"/proc/{pid}")

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
            for kind, _flags, _seq, body in tlv.messages(data):
                if kind >> 8 != NFNL_SUBSYS_NFTABLES or len(body) < _NFGENMSG.size:
                    continue
                family = body[0]
                attrs = tlv.attrs(body[_NFGENMSG.size :])
                if kind & 0xFF == NFT_MSG_NEWGEN:
                    if self._touched and not self._ours(attrs):
                        found += 1
                    self._touched = False
                elif (
                    family == self.family and attrs.get(TABLE_NAME, b"").rstrip(b"\0") == self.table
                ):
                    self._touched = True
