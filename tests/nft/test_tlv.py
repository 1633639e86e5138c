"""The one netlink codec: attributes and messages encode and walk back, padded as the kernel
lays them out, and a malformed or truncated datagram ends the walk instead of misreading."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peerwall.nft import tlv

payloads = st.lists(
    st.tuples(st.integers(0, tlv.NLA_TYPE_MASK), st.binary(max_size=40), st.booleans()),
    max_size=8,
)


@given(payloads)
def test_attributes_walk_back_as_encoded(items: list[tuple[int, bytes, bool]]) -> None:
    data = b"".join(tlv.attr(kind, value, nested) for kind, value, nested in items)
    assert len(data) % 4 == 0
    assert [(k, bytes(v)) for k, v in tlv.walk(data)] == [(k, v) for k, v, _ in items]


def test_a_string_attribute_is_nul_terminated_and_padded() -> None:
    assert tlv.attr_str(1, "peerwall") == b"\x0d\x00\x01\x00peerwall\x00\x00\x00\x00"
    assert tlv.attrs(tlv.attr_str(1, "a") + tlv.attr_str(1, "b")) == {1: b"a\0"}  # the first


def test_messages_stop_at_a_truncated_or_malformed_one() -> None:
    def message(kind: int, seq: int, body: bytes) -> bytes:
        raw = tlv.HEADER.pack(16 + len(body), kind, 0, seq, 7) + body
        return raw + b"\0" * (-len(raw) % 4)

    data = message(2, 1, b"abc") + message(3, 2, b"")
    assert [(k, s, p, bytes(b)) for k, _f, s, p, b in tlv.messages(data)] == [
        (2, 1, 7, b"abc"),
        (3, 2, 7, b""),
    ]
    assert [s for _k, _f, s, _p, _b in tlv.messages(data[:-1])] == [1]
    bad = tlv.HEADER.pack(8, 2, 0, 9, 0)  # a length shorter than the header itself
    assert list(tlv.messages(bad + data)) == []
    assert list(tlv.walk(b"\x02\x00\x01\x00rest")) == []
