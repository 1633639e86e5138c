"""What the reflector's store keeps of each object (``held``): its resourceVersion and uid, packed
into one small object when that loses nothing, and read back exactly as given in every case (a
resourceVersion is opaque; a uid need not be a UUID)."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest

from peerwall.agent.kube.held import pack, unpack, version
from peerwall.agent.kube.watch import _newer_history

UID = "0f8e4a52-3c1b-4d7e-9a6f-2b5c8d1e0a3f"

VERSIONS = ["123456", "0", "", "0012", "abc", "12a", "v1/7", "é", "\ud800", str(2**70), " 5"]
UIDS = [
    UID,
    UID.upper(),  # a UUID, but not as the API server writes it: packing would lower it
    UID.replace("-", ""),  # 32 characters
    UID[:8] + UID[9:13] + "-" + UID[8] + UID[13:],  # hyphens elsewhere, 36 characters
    UID[:-1] + "g",  # not hex
    UID[:8] + " " + UID[9:],  # 16 bytes to fromhex, which skips spaces: must not pack
    "u-1",
    "",
    None,
]


@pytest.mark.parametrize("rv", VERSIONS)
@pytest.mark.parametrize("uid", UIDS)
def test_every_pair_reads_back_exactly_as_given(rv: str, uid: str | None) -> None:
    held = pack(rv, uid)
    assert unpack(held) == (rv, uid)
    assert version(held) == rv
    assert pack(*unpack(held)) == held


def test_only_a_lowercase_hyphenated_uuid_is_packed() -> None:
    assert isinstance(pack("7", UID), bytes)
    assert isinstance(pack("abc", str(uuid.uuid4())), bytes)  # any version string
    for uid in UIDS[1:]:
        assert isinstance(pack("7", uid), tuple), uid
    assert isinstance(pack("\ud800", UID), tuple)  # no UTF-8 for a lone surrogate


def test_the_usual_pair_costs_a_third_of_two_strings() -> None:
    rv, uid = "123456789", str(uuid.uuid4())
    strings = sys.getsizeof((rv, uid)) + sys.getsizeof(rv) + sys.getsizeof(uid)
    assert sys.getsizeof(pack(rv, uid)) * 3 <= strings


def test_equal_pairs_pack_equal_and_different_ones_differ() -> None:
    # The relist compares versions; the store's values must not tell two pairs apart wrongly.
    assert pack("5", UID) == pack("5", UID)
    assert pack("5", UID) != pack("6", UID)
    assert pack("5", UID) != pack("5", str(uuid.uuid4()))
    assert pack("5", UID) != pack("5", None)


def obj(rv: str, uid: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": "n", "resourceVersion": rv}
    if uid is not None:
        meta["uid"] = uid
    return {"metadata": meta}


@pytest.mark.parametrize("uid", [UID, "u-1"])
def test_a_new_history_is_told_from_the_packed_pair_as_from_the_strings(uid: str) -> None:
    held = pack("5", uid)
    assert _newer_history(held, obj("6", uid)) is None
    assert _newer_history(held, obj("5", uid)) is None
    assert _newer_history(held, obj("6", None)) is None
    assert _newer_history(held, obj("4", uid)) == "n/p went back from resourceVersion 5 to 4"
    assert _newer_history(held, obj("6", "u-2")) == "n/p changed uid without a deletion"
    assert _newer_history(held, obj("6", str(uuid.uuid4()))) == (
        "n/p changed uid without a deletion"
    )
