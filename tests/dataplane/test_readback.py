"""Reading a live table back: round trip with the renderer, and nft's canonical forms."""

from __future__ import annotations

import pytest
from nftlab import example_ruleset, nft_in

from peerwall.compile.diff import same_skeleton
from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset, render_replace
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import element_text, parse_chains, read_table


@pytest.mark.lab
def test_round_trip_of_the_example_table(nft: LibNft, example: Ruleset) -> None:
    nft.run(render_replace(example))
    assert read_table(nft, "inet", "peerwall") == example


@pytest.mark.lab
def test_round_trip_with_addresses_and_prefixes(nft: LibNft) -> None:
    # (Ranges read back too, see below; the renderer does not write them.)
    rs = example_ruleset(frozenset({"10.244.0.5", "10.244.0.7", "10.244.1.0/24"}))
    nft.run(render_replace(rs))
    assert read_table(nft, "inet", "peerwall") == rs


@pytest.mark.lab
def test_missing_table_reads_as_none(nft: LibNft) -> None:
    assert read_table(nft, "inet", "peerwall") is None
    nft.run("add table inet other\n")
    assert read_table(nft, "inet", "peerwall") is None


@pytest.mark.lab
def test_replace_is_exact_even_over_a_different_table(nft: LibNft, example: Ruleset) -> None:
    nft.run(render_replace(example_ruleset(frozenset({"10.244.0.5"}))))
    nft.run("add chain inet peerwall stray\nadd set inet peerwall stray-set { type ipv4_addr; }\n")
    nft.run(render_replace(example))
    assert read_table(nft, "inet", "peerwall") == example


@pytest.mark.lab
def test_nft_lists_sets_then_chains_in_creation_order(nft: LibNft, example: Ruleset) -> None:
    # Declaring chains before sets in the script does not change how nft lists the table.
    mixed = Ruleset(
        example.family,
        example.table,
        tuple(reversed(example.sets)),
        tuple(reversed(example.chains)),
    )
    nft.run(render_replace(mixed))
    live = read_table(nft, "inet", "peerwall")
    assert live is not None
    assert [s.name for s in live.sets] == [s.name for s in mixed.sets]
    assert [c.name for c in live.chains] == [c.name for c in mixed.chains]
    # Order is not meaning: the skeletons compare equal to the example's.
    assert live != example
    assert same_skeleton(live, example)


@pytest.mark.lab
def test_nft_canonicalizes_what_it_is_given(nft: LibNft, netns: str) -> None:
    """What a compiler must write to compare equal on read-back (nft 1.0.6)."""
    nft.run(
        "table inet t {\n"
        "  set s { type ipv4_addr; flags interval;"
        "    elements = { 10.0.0.5/32, 10.1.0.0-10.1.0.255, 10.2.0.1-10.2.0.3 }; }\n"
        "  chain a { type filter hook input priority 0; policy accept; }\n"
        "  chain b { type filter hook input priority filter + 5; policy drop; }\n"
        "  chain c { type nat hook prerouting priority -110; policy accept; }\n"
        "  chain d { ip daddr 10.0.0.1/32 counter packets 3 bytes 9 accept; }\n"
        "}\n"
    )
    live = read_table(nft, "inet", "t")
    assert live == Ruleset(
        "inet",
        "t",
        (NftSet("s", elements=frozenset({"10.0.0.5", "10.1.0.0/24", "10.2.0.1-10.2.0.3"})),),
        (
            Chain("a", (), Hook("filter", "input", "filter", "accept")),
            Chain("b", (), Hook("filter", "input", "filter + 5", "drop")),
            Chain("c", (), Hook("nat", "prerouting", "dstnat - 10", "accept")),
            Chain("d", ("ip daddr 10.0.0.1 counter accept",)),
        ),
    )
    # The witness agrees: the rule is printed the same way by the nft command.
    assert "\t\tip daddr 10.0.0.1 counter accept\n" in nft_in(
        netns, "-s", "list", "chain", "inet", "t", "d"
    )


@pytest.mark.lab
def test_large_set_reads_back_whole(nft: LibNft) -> None:
    # Many elements wrap over many text lines; read from JSON they need no unwrapping.
    pods = frozenset(f"10.244.{i // 250}.{i % 250 + 1}" for i in range(5000))
    rs = example_ruleset(pods)
    nft.run(render_replace(rs))
    assert read_table(nft, "inet", "peerwall") == rs


def test_parse_chains_skips_sets_and_other_objects() -> None:
    text = (
        "table inet t {\n"
        "\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.2,\n"
        "\t\t\t     10.0.0.3 }\n\t}\n\n"
        '\tmap m {\n\t\ttype ifname : verdict\n\t\telements = { "x" : accept }\n\t}\n\n'
        '\tchain "fwd" {\n\t\tcounter accept\n\t}\n\n'
        "\tchain base {\n\t\ttype filter hook forward priority filter; policy drop;\n"
        '\t\tiifname vmap { "a" : jump fwd }\n\t}\n'
        "}\n"
    )
    assert parse_chains(text) == (
        Chain("fwd", ("counter accept",)),
        Chain(
            "base",
            ('iifname vmap { "a" : jump fwd }',),
            Hook("filter", "forward", "filter", "drop"),
        ),
    )


def test_element_text_normalizes_json_shapes() -> None:
    assert element_text("10.0.0.1") == "10.0.0.1"
    assert element_text({"prefix": {"addr": "10.0.0.0", "len": 16}}) == "10.0.0.0/16"
    assert element_text({"range": ["10.0.0.1", "10.0.0.9"]}) == "10.0.0.1-10.0.0.9"
    assert element_text({"elem": {"val": "10.0.0.1", "timeout": 30}}) == "10.0.0.1"
    assert element_text({"concat": ["10.0.0.1", 80]}) == "10.0.0.1 . 80"
