"""A gateway table for Liqo's shapes (issue 16.3, 16.4) goes into the kernel and reads back equal:
the masquerade source beside the pod CIDR in the anti-spoofing rule, several API server addresses,
several tunnels and their peer addresses; and a change between such states is applied in place."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from nftlab import same

from peerwall.compile.build import build
from peerwall.compile.state import ApiServer, GatewayState, PeerState, SetKind
from peerwall.dataplane.nft import Nft
from peerwall.dataplane.readback import read_table
from peerwall.model import SecurityMode
from peerwall.nft.objects import render_replace
from peerwall.nft.transaction import diff


def liqo_state(**changes: object) -> GatewayState:
    peer = PeerState(
        name="c2",
        tunnel="liqo-tunnel",
        mode=SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION,
        sources=(IPv4Network("10.20.0.0/16"),),
        full_access=(
            IPv4Network("10.10.0.0/16"),
            IPv4Network("172.18.0.2/32"),
            IPv4Network("172.18.0.3/32"),
        ),
        members={SetKind.API_CLIENTS: frozenset({IPv4Address("10.20.0.1")})},
        api=ApiServer(IPv4Address("172.18.0.2"), 443, (IPv4Address("172.18.0.3"),)),
        gateway=IPv4Address("169.254.18.2"),
        masquerade=IPv4Address("10.70.0.0"),
        more_tunnels=("liqo-tunnel1", "liqo-tunnel2"),
        more_gateways=(IPv4Address("169.254.18.6"), IPv4Address("169.254.18.10")),
    )
    return GatewayState("c1", {"c2": replace(peer, **changes)}, "liqo-tunnel*")  # type: ignore[arg-type]


def test_liqo_shaped_table_round_trips(any_nft: Nft) -> None:
    table = build(liqo_state())
    any_nft.run(render_replace(table))
    assert same(read_table(any_nft, "inet", "peerwall"), table)


def test_a_new_masquerade_source_or_tunnel_is_applied_in_place(any_nft: Nft) -> None:
    old = build(liqo_state())
    any_nft.run(render_replace(old))
    for changes in (
        {"masquerade": IPv4Address("10.80.0.0")},
        {"masquerade": None},
        {"more_tunnels": (), "more_gateways": ()},
    ):
        new = build(liqo_state(**changes))
        tx = diff(read_table(any_nft, "inet", "peerwall"), new)
        assert not tx.full, changes  # in place: the other chains keep their counters
        any_nft.run(tx.script)
        assert same(read_table(any_nft, "inet", "peerwall"), new), changes
