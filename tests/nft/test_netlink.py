"""The nf_tables element batch as bytes: its framing, order, numbering and splitting, and the
reading of the kernel's answers (the kernel's own verdict is in tests/dataplane/test_netlink.py)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from peerwall.nft import netlink
from peerwall.nft.netlink import SetEdit, element_batch, replies

HDR = struct.Struct("=IHHII")


def messages(batch: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message, checking that lengths add up."""
    out, offset = [], 0
    while offset < len(batch):
        length, kind, flags, seq, _ = HDR.unpack_from(batch, offset)
        assert length % 4 == 0 and offset + length <= len(batch)
        out.append((kind, flags, seq, batch[offset + 16 : offset + length]))
        offset += length
    assert offset == len(batch)
    return out


def addrs(n: int, base: str = "10.1.0.0") -> list[IPv4Address]:
    return [IPv4Address(base) + i for i in range(n)]


def test_a_batch_is_begin_deletes_adds_end_numbered_in_order() -> None:
    edits = [
        SetEdit("a", add=addrs(2), delete=addrs(1, "10.9.0.0")),
        SetEdit("b", delete=addrs(3, "10.8.0.0")),
    ]
    batch, sent = element_batch("inet", "peerwall", edits, 100)
    msgs = messages(batch)
    kinds = [k for k, *_ in msgs]
    sub = netlink.NFNL_SUBSYS_NFTABLES << 8
    assert kinds == [
        netlink.NFNL_MSG_BATCH_BEGIN,
        sub | netlink.NFT_MSG_DELSETELEM,
        sub | netlink.NFT_MSG_DELSETELEM,
        sub | netlink.NFT_MSG_NEWSETELEM,
        netlink.NFNL_MSG_BATCH_END,
    ]
    assert [seq for _, _, seq, _ in msgs] == [100, 101, 102, 103, 104]
    assert [(s.seq, s.verb, s.set, s.elements) for s in sent] == [
        (101, "delete", "a", 1),
        (102, "delete", "b", 3),
        (103, "add", "a", 2),
    ]
    # Only the last element message asks for an acknowledgement (errors come whatever the
    # flags, before it); the add may create, never must.
    assert [bool(flags & netlink.NLM_F_ACK) for _, flags, _, _ in msgs] == [0, 0, 0, 1, 0]
    assert msgs[3][1] & netlink.NLM_F_CREATE and not msgs[1][1] & netlink.NLM_F_CREATE
    # nfgenmsg: the table's family on element messages, the nftables subsystem on the frame.
    assert msgs[1][3][:4] == bytes([netlink.FAMILIES["inet"], 0, 0, 0])
    assert msgs[0][3][:4] == bytes([0, 0, 0, netlink.NFNL_SUBSYS_NFTABLES])


def test_the_message_names_table_set_and_each_address() -> None:
    batch, _ = element_batch("ip", "t", [SetEdit("s1", add=[IPv4Address("192.0.2.7")])], 1)
    payload = messages(batch)[1][3]
    assert b"t\0" in payload and b"s1\0" in payload
    assert payload.endswith(IPv4Address("192.0.2.7").packed)
    assert payload[0] == netlink.FAMILIES["ip"]


def test_a_large_edit_is_split_into_messages_of_one_batch() -> None:
    n = 2 * netlink.MAX_PER_MESSAGE + 5
    batch, sent = element_batch("inet", "t", [SetEdit("s", add=addrs(n))], 1)
    assert [s.elements for s in sent] == [netlink.MAX_PER_MESSAGE, netlink.MAX_PER_MESSAGE, 5]
    msgs = messages(batch)
    assert len(msgs) == len(sent) + 2
    # The element list is one attribute of 16-bit length: each message stays under it.
    assert max(len(p) for _, _, _, p in msgs) < 1 << 16
    packed = b"".join(p for _, _, _, p in msgs[1:-1])
    assert all(a.packed in packed for a in addrs(n)[:: n // 50])


def test_one_address_batch_is_the_general_encoding() -> None:
    # One address in one set takes a shortcut through cached parts: the same bytes.
    a = [IPv4Address("192.0.2.9")]
    for edit in (SetEdit("s", add=a), SetEdit("s", delete=a)):
        short = element_batch("inet", "peerwall", [edit], 40)
        general = element_batch("inet", "peerwall", [edit, SetEdit("other")], 40)
        assert short == general
        assert len(messages(short[0])) == 3


def test_nothing_to_do_is_no_batch() -> None:
    assert element_batch("inet", "t", [SetEdit("s")], 1) == (b"", [])


def test_answers_are_read_as_seq_and_errno() -> None:
    def answer(seq: int, error: int) -> bytes:
        body = struct.pack("=i", error) + HDR.pack(16, 0, 0, seq, 0)
        return HDR.pack(16 + len(body), netlink.NLMSG_ERROR, 0, seq, 0) + body

    other = HDR.pack(20, 0x0A0C, 0, 9, 0) + b"\0" * 4
    data = answer(5, 0) + other + answer(6, -2)
    assert list(replies(data)) == [(5, 0), (6, 2)]
    assert list(replies(data[:-3])) == [(5, 0)]  # a truncated answer is not read
    assert len(answer(5, 0)) == netlink.ACK_SIZE
    assert netlink.acknowledges(answer(5, 0), 5)
    assert not netlink.acknowledges(answer(5, 0), 6)
    assert not netlink.acknowledges(answer(6, -2), 6)


def test_a_refusal_names_the_set_and_what_was_refused() -> None:
    sent = netlink.Sent(3, "delete", "offloaded-1234abcd", 2)
    text = netlink.refusal("inet", "peerwall", sent, 2)
    assert "No such file or directory" in text
    assert "delete of 2 element(s) in set inet peerwall offloaded-1234abcd" in text
