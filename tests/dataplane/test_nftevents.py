"""Which commits are the agent's own: the port id of the committing netlink socket, on the real
kernel (``dataplane.nftevents``).

The kernel stamps every nftables notification with the port id of the socket whose batch caused
it; a transaction is this process's when that port id is one of its netfilter sockets in the same
network namespace. A process with the very same name, gone before its notification is read (what
the name comparison used to take for the agent's own), commits through a socket of its own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from peerwall.dataplane import nftevents
from peerwall.dataplane.netlink import NetlinkSets, open_netfilter_socket
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.nftevents import TableEvents, netns_cookie, own_port_ids
from peerwall.nft import netlink, tlv
from peerwall.nft.netlink import NFT_MSG_NEWGEN, SetEdit

TABLE = "pwev"
SCRIPT = f"add table inet {TABLE}\nadd set inet {TABLE} s {{ type ipv4_addr; }}\n"


def nft_as(netns: str, program: Path | str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, str(program), *args], check=True)


def test_our_commits_are_ours_through_either_socket_even_one_opened_after(netns: str) -> None:
    # The notifications are subscribed to before libnftables' context exists: its socket is
    # learnt at its first commit, its element-batch socket at the next scan.
    with TableEvents("inet", TABLE, netns) as events, LibNft(netns) as nft:
        nft.run(SCRIPT)
        nft.edit_elements("inet", TABLE, [SetEdit("s", [ip_address("10.0.0.1")])])
        nft.run(f"add element inet {TABLE} s {{ 10.0.0.2 }}")
        assert events.foreign_changes() == 0
        # The same table changed by another process: one transaction, one change.
        nft_as(netns, "nft", "add", "element", "inet", TABLE, "s", "{ 10.0.0.3 }")
        assert events.foreign_changes() == 1
        # Another table is none of its business, whoever commits.
        nft_as(netns, "nft", "add", "table", "inet", "other")
        assert events.foreign_changes() == 0


def test_a_process_of_our_name_that_has_exited_is_not_taken_for_us(
    netns: str, tmp_path: Path
) -> None:
    """The blind spot of the name comparison: an ``nft`` run under this process's name, gone
    before its notification is read, changes the table; it is a foreign change."""
    comm = Path("/proc/self/comm").read_text().strip()
    impostor = tmp_path / comm
    impostor.symlink_to(shutil.which("nft") or "nft")
    with TableEvents("inet", TABLE, netns) as events, LibNft(netns) as nft:
        nft.run(SCRIPT)
        assert events.foreign_changes() == 0
        nft_as(netns, impostor, "add", "element", "inet", TABLE, "s", "{ 10.0.0.9 }")
        nft_as(netns, impostor, "delete", "element", "inet", TABLE, "s", "{ 10.0.0.9 }")
        assert events.foreign_changes() == 2
        assert "10.0.0.9" not in nft.list_text(f"list set inet {TABLE} s")


def test_a_commit_through_a_socket_we_hold_is_ours_whoever_made_it(netns: str) -> None:
    """The port id is the socket's, not the task's: a batch sent through a bare netfilter socket
    of this process (as a process holding one of the agent's sockets could send) is taken for
    ours, and one through a socket closed since is not."""
    with TableEvents("inet", TABLE, netns) as events, LibNft(netns) as nft:
        nft.run(SCRIPT)
        sock = open_netfilter_socket(netns, "test")
        batch, _ = netlink.element_batch("inet", TABLE, [SetEdit("s", [ip_address("10.0.0.4")])], 1)
        sock.send(batch)
        port = sock.getsockname()[0]
        assert events.foreign_changes() == 0 and events.ours(port)
        sock.close()
        assert not events.ours(port)
        assert not events.ours(0)  # the kernel's own: never a socket of ours


def test_own_port_ids_are_those_of_the_namespace_asked_for(netns: str) -> None:
    """Port ids are unique within a namespace only (a process's first socket in each gets the
    process's pid as port id): the namespace is part of the test."""
    here = open_netfilter_socket(None, "test")
    there = NetlinkSets(netns)
    route = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        assert set(own_port_ids(netns_cookie(there._sock))) == {there._sock.getsockname()[0]}
        assert here.getsockname()[0] in own_port_ids(netns_cookie(here))
        # Other protocols' sockets are not nftables' (their port ids are another protocol's,
        # the same numbers may recur): a routing socket, bound, is left out.
        route.bind((0, 0))
        found = own_port_ids(netns_cookie(route)).values()
        assert route.fileno() not in {fd for fd, *_socket in found}
        assert here.fileno() in {fd for fd, *_socket in found}
    finally:
        here.close()
        there.close()
        route.close()


def _datagrams(events: TableEvents) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(events._sock.recv(1 << 16))
        except BlockingIOError:
            return out


def test_a_commit_notifies_in_datagrams_of_its_own_each_of_one_port(netns: str) -> None:
    """What ``foreign_changes`` relies on to skip our own datagrams unread, on this kernel: a
    transaction's notifications come in datagrams holding only that transaction's messages
    (all stamped with its socket's port), its NEWGEN alone in the last one."""
    with TableEvents("inet", TABLE, netns) as events, LibNft(netns) as nft:
        nft.run(SCRIPT)
        _datagrams(events)
        many = [ip_address("10.1.0.0") + i for i in range(3000)]
        nft.edit_elements("inet", TABLE, [SetEdit("s", many)])
        nft_as(netns, "nft", "add", "element", "inet", TABLE, "s", "{ 10.9.9.9 }")
        grams = [list(tlv.messages(d)) for d in _datagrams(events)]
    newgen = [i for i, g in enumerate(grams) if any(k & 0xFF == NFT_MSG_NEWGEN for k, *_ in g)]
    assert len(newgen) == 2 and len(grams) > 20  # 3,000 elements: many datagrams
    for i in newgen:
        assert len(grams[i]) == 1  # the NEWGEN alone
    ours, theirs = grams[: newgen[0] + 1], grams[newgen[0] + 1 :]
    assert len({m[3] for g in ours for m in g}) == 1  # one port: our socket's
    assert len({m[3] for g in theirs for m in g}) == 1  # another: nft's
    assert {m[3] for g in ours for m in g} != {m[3] for g in theirs for m in g}


def test_our_own_datagrams_are_skipped_unread_and_a_foreign_one_after_is_caught(
    netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []
    real = tlv.messages

    def counted(data: bytes) -> Iterator[tuple[int, int, int, int, bytes]]:
        read.append(len(data))
        return real(data)

    monkeypatch.setattr(nftevents.tlv, "messages", counted)
    with TableEvents("inet", TABLE, netns) as events, LibNft(netns) as nft:
        nft.run(SCRIPT)
        assert events.foreign_changes() == 0
        read.clear()
        many = [ip_address("10.1.0.0") + i for i in range(3000)]
        nft.edit_elements("inet", TABLE, [SetEdit("s", many)])
        assert events.foreign_changes() == 0
        assert read == []  # not one of its ~45 datagrams read message by message
        nft_as(netns, "nft", "delete", "element", "inet", TABLE, "s", "{ 10.1.0.7 }")
        assert events.foreign_changes() == 1
        assert read  # theirs are
