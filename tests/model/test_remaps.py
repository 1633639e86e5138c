"""Remap allocation (model/addressing.py ``_Taken``) gives what the first-fit scan over every
candidate and every CIDR taken gave, in the same order."""

from __future__ import annotations

from ipaddress import IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.model.addressing import REMAP_POOLS, _Taken


def first_fit(size: int, avoid: list[IPv4Network]) -> IPv4Network | None:
    """The previous allocator: each pool's candidates in order, checked against all. (The
    same scan on integer ranges, first and last address: ``IPv4Network.subnets`` and
    ``overlaps`` made it 10 of this test's 14 s.)"""
    taken = [(int(a.network_address), int(a.broadcast_address)) for a in avoid]
    span = 1 << (32 - size)
    for pool in REMAP_POOLS:
        if size < pool.prefixlen:
            continue
        start = int(pool.network_address)
        for first in range(start, start + pool.num_addresses, span):
            last = first + span - 1
            if not any(first <= hi and lo <= last for lo, hi in taken):
                return IPv4Network((first, size))
    return None


def networks() -> st.SearchStrategy[IPv4Network]:
    # Around the pools' starts, so that the taken CIDRs and the candidates collide.
    starts = st.sampled_from([0x0A000000, 0x0A010000, 0xAC100000, 0x64400000, 0x0AF40000])
    return st.builds(
        lambda start, offset, prefix: IPv4Network(
            ((start + offset) & ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF), prefix)
        ),
        starts,
        st.integers(0, 1 << 20),
        st.integers(8, 24),
    )


@budget(100)
@given(st.lists(networks(), max_size=12), st.lists(st.integers(12, 24), max_size=12))
def test_allocation_equals_the_first_fit_scan(avoid: list[IPv4Network], sizes: list[int]):
    taken = _Taken(avoid)
    given_out: list[IPv4Network] = []
    for size in sizes:
        want = first_fit(size, avoid + given_out)
        assert taken.allocate(size) == want
        if want is not None:
            given_out.append(want)


def test_a_slash_8_taken_whole_moves_every_size_to_the_next_pool():
    taken = _Taken([IPv4Network("10.0.0.0/8")])
    assert taken.allocate(16) == IPv4Network("172.16.0.0/16")
    assert taken.allocate(16) == IPv4Network("172.17.0.0/16")
    assert taken.allocate(20) == IPv4Network("172.18.0.0/20")
