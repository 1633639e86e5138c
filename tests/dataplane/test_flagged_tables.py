"""Tables with flags are never printed as JSON by libnftables (``errors.FlaggedTable``).

libnftables 1.0.6 frees a table's flags while printing them as JSON (nftables' "json: fix use
after free in table_flags_json()", November 2023): the listing shows garbage for the flags, and
the process that asked may later abort ("corrupted double-linked list": the agent did, reading
back a table another process held with ``flags owner``). So the JSON listings that print table
objects (``list ruleset``, ``list tables``, ``list table``) first ask the kernel over netlink
which tables in their scope have flags, and are refused if any has; the read-back then reads a
flagged table of its own as its flags alone, and its own unflagged table past a flagged
neighbour by its own listing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from nftlab import nft_in, seed_table

from hostile import owned_table
from peerwall.dataplane.drift import TABLE_FLAGS, read_drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table, table_exists
from peerwall.dataplane.table import brief
from peerwall.errors import FlaggedTable, NftError
from peerwall.nft.objects import render_replace

pytestmark = pytest.mark.lab

PRINTS_TABLES = ("list ruleset", "list tables", "list table ")


@contextmanager
def asked(nft: LibNft) -> Iterator[list[str]]:
    """Every command that reaches libnftables through ``nft``, in order."""
    seen: list[str] = []
    command = nft._command

    def spy(text: str, flags: int, drop: bool) -> str:
        seen.append(text)
        return command(text, flags, drop)

    nft._command = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del nft._command


def test_listings_that_print_a_flagged_table_are_refused_before_libnftables(
    nft: LibNft, netns: str
) -> None:
    nft_in(netns, "add", "table", "inet", "peerwall", "{ flags dormant; }")
    nft_in(netns, "add", "table", "inet", "other")
    nft_in(netns, "add", "table", "ip", "elsewhere", "{ flags dormant; }")
    with asked(nft) as seen:
        for command in (
            "list ruleset",
            "list ruleset inet",
            "list tables",
            "list table inet peerwall",
        ):
            with pytest.raises(FlaggedTable) as e:
                nft.list_json(command)
            assert ("inet", "peerwall") in e.value.tables
            assert e.value.tables["inet", "peerwall"] == ("dormant",)
            assert "table inet peerwall has flags dormant" in str(e.value)
            with pytest.raises(FlaggedTable):
                nft.list_json_terse(command)
        assert seen == [], "libnftables was asked to print a flagged table as JSON"
        # Listings with no flagged table in their scope, and those that print no table, do go.
        assert nft.list_json("list table inet other")["nftables"][1]["table"]["name"] == "other"
        nft.list_json("list chains inet")
        assert seen == ["list table inet other", "list chains inet"]
    assert nft.table_flags("inet") == {("inet", "peerwall"): ("dormant",), ("inet", "other"): ()}
    assert nft.table_flags()[("ip", "elsewhere")] == ("dormant",)


@pytest.mark.parametrize("flag", ["dormant", "owner"])
def test_a_flagged_table_reads_back_as_its_flags_without_json(
    nft: LibNft, netns: str, flag: str
) -> None:
    desired = seed_table()
    nft.run(render_replace(desired))
    nft_in(netns, "delete", "table", "inet", "peerwall")
    with asked(nft) as seen, owned_table(netns) if flag == "owner" else _dormant(netns):
        live = read_table(nft, "inet", "peerwall", desired)
        assert live is not None and live.flags == (flag,)
        assert (live.chains, live.sets, live.maps) == ((), (), ())
        _, found = read_drift(nft, desired)
        assert found[0].kind == TABLE_FLAGS
        assert f"flags {flag}, expected none" in str(found[0])
        assert table_exists(nft, "inet", "peerwall")
        assert not [c for c in seen if c.startswith(PRINTS_TABLES)], seen


@contextmanager
def _dormant(netns: str) -> Iterator[None]:
    nft_in(netns, "add", "table", "inet", "peerwall", "{ flags dormant; }")
    yield


def test_the_table_reads_back_past_a_flagged_neighbour(nft: LibNft, netns: str) -> None:
    desired = seed_table()
    nft.run(render_replace(desired))
    alone = read_table(nft, "inet", "peerwall", desired)
    with asked(nft) as seen, owned_table(netns, "neighbour"):
        assert read_table(nft, "inet", "peerwall", desired) == alone
        assert read_drift(nft, desired)[1] == []
    # Its own listing, asked once the family's listing was refused for the neighbour.
    assert "list table inet peerwall" in seen
    assert not [c for c in seen if c.startswith(("list ruleset", "list tables"))], seen


def test_a_refused_script_is_logged_by_its_first_error() -> None:
    one = "script:3:12-19: Error: Could not process rule: Operation not permitted\ntable inet x {\n  ^^^"
    assert brief(NftError(one)) == one
    many = NftError("\n".join([one.replace("3:12", f"{i}:12") for i in range(3, 300)]))
    assert brief(many) == one + "\n(and 296 more errors)"
