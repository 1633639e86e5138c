"""Read-back: a table comes back from the kernel (and the fake) equal to what was written,
structurally, whatever spelling nft prints; what peerwall does not write reads as Opaque."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from nftlab import nft_in, same, seed_table, three_table

from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table
from peerwall.nft.listing import parse_table
from peerwall.nft.objects import (
    Action,
    Chain,
    CtMarkSet,
    Hook,
    Match,
    Opaque,
    Range,
    Rule,
    Ruleset,
    SetRef,
    element_from_json,
    expr_from_json,
    masked,
    render_replace,
    render_rule,
    rule_from_json,
)
from peerwall.nft.parse import parse_rule


@pytest.mark.parametrize("make", [seed_table, three_table])
def test_round_trip_of_compiled_tables(any_nft: Nft, make) -> None:  # type: ignore[no-untyped-def]
    table = make()
    any_nft.run(render_replace(table))
    assert same(read_table(any_nft, "inet", "peerwall"), table)


def test_missing_table_reads_as_none(any_nft: Nft) -> None:
    assert read_table(any_nft, "inet", "peerwall") is None
    any_nft.run("add table inet other\n")
    assert read_table(any_nft, "inet", "peerwall") is None


def test_replace_is_exact_even_over_a_different_table(any_nft: Nft) -> None:
    any_nft.run(render_replace(three_table()))
    any_nft.run(render_replace(seed_table()))
    assert same(read_table(any_nft, "inet", "peerwall"), seed_table())


def test_large_set_reads_back_whole(any_nft: Nft) -> None:
    table = seed_table()
    name = next(s.name for s in table.sets if s.name.startswith("backends-"))
    any_nft.run(render_replace(table))
    addresses = [f"10.244.{i // 250}.{i % 250 + 1}" for i in range(5000)]
    any_nft.run(f"add element inet peerwall {name} {{ {', '.join(addresses)} }}\n")
    live = read_table(any_nft, "inet", "peerwall")
    assert live is not None and len(live.set(name).elements) == 5000


@pytest.mark.lab
def test_a_rule_peerwall_does_not_write_reads_as_opaque(nft: LibNft, netns: str) -> None:
    nft.run(render_replace(seed_table()))
    nft_in(netns, "add", "rule", "inet", "peerwall", "filter-forward", "tcp", "flags", "syn", "log")
    live = read_table(nft, "inet", "peerwall")
    assert live is not None
    last = live.chain("filter-forward").rules[-1]
    assert any(isinstance(e, Opaque) for e in last.exprs)


def test_json_shapes_of_other_nft_versions_read_the_same() -> None:
    # nft prints one ct state flag as a string and several as a list; a prefix of /32 may come
    # as an address; elements may carry counters or comments.
    assert expr_from_json(
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "established"}}
    ) == Match("ct state", frozenset({"established"}))
    assert expr_from_json(
        {
            "match": {
                "op": "in",
                "left": {"ct": {"key": "state"}},
                "right": ["related", "established"],
            }
        }
    ) == Match("ct state", frozenset({"established", "related"}))
    assert element_from_json({"elem": {"val": "10.0.0.1", "comment": "x"}}) == IPv4Address(
        "10.0.0.1"
    )
    assert element_from_json({"range": ["10.0.0.1", "10.0.0.9"]}) == Range(
        IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9")
    )
    assert element_from_json({"prefix": {"addr": "10.0.0.0", "len": 8}}) == IPv4Network(
        "10.0.0.0/8"
    )
    rule = rule_from_json(
        {
            "expr": [
                {
                    "match": {
                        "op": "==",
                        "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                        "right": "@s",
                    }
                },
                {"jump": {"target": "c"}},
            ],
            "comment": "why",
        }
    )
    assert rule.exprs == (Match("ip daddr", SetRef("s")), Action("jump", "c"))
    assert rule.comment == "why"
    assert isinstance(expr_from_json({"log": {"prefix": "x"}}), Opaque)


def test_parse_table_ignores_other_tables() -> None:
    doc = {
        "nftables": [
            {"table": {"family": "inet", "name": "peerwall"}},
            {"set": {"family": "inet", "table": "other", "name": "s", "type": "ipv4_addr"}},
            {"chain": {"family": "ip", "table": "peerwall", "name": "c"}},
        ]
    }
    rs = parse_table(doc, "inet", "peerwall")
    assert rs.sets == () and rs.chains == ()


MASKED_RULES = (
    Rule(
        (
            Match(masked("ct mark", 0xFFFF0000), frozenset({0x8001_0000, 0x0001_0000})),
            Action("accept"),
        )
    ),
    Rule(
        (
            Match(masked("ct mark", 0xFFFF0000), 0),
            Match("ct mark", 0, negate=True),
            Match("ct direction", "reply"),
            Action("accept"),
        )
    ),
    Rule((Match(masked("ct mark", 0x0000FFFF), 0), CtMarkSet(0x8001_0000, keep=0xFFFF))),
    Rule((CtMarkSet(5),)),
)


def test_mark_binops_round_trip(any_nft: Nft) -> None:
    """Masked mark matches and the masked ``ct mark set`` come back as written, although nft
    lists ``& 0xffff0000 == V`` as a prefix and ``& K | V`` with the mask ``K | V``."""
    table = Ruleset(
        "inet", "peerwall", chains=(Chain("c", MASKED_RULES, Hook("filter", "forward", 0)),)
    )
    for rule in MASKED_RULES:
        assert parse_rule(render_rule(rule)) == rule
    any_nft.run(render_replace(table))
    live = read_table(any_nft, "inet", "peerwall")
    assert live is not None and live.chain("c").rules == MASKED_RULES


def test_masked_mark_set_keeps_the_other_bits() -> None:
    keep_low = CtMarkSet(0x8001_0000, keep=0xFFFF)
    assert keep_low.apply(0x7) == 0x8001_0007
    assert keep_low.apply(0x1234_0007) == 0x8001_0007
    assert CtMarkSet(5).apply(0xFFFF_FFFF) == 5
