"""The packet tracer: compiled rulesets, walked packet by packet, give exactly the policy's table.

``traced_table`` decides every cell from packets alone (NAT, routing by address, the gateways'
filter chains), so its agreement with ``expect()`` proves the compiler enforces DESIGN.md §1; the
mutation tests prove the tracer really reads the ruleset rather than echoing the policy.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peerwall.compile.build import build
from peerwall.compile.names import peer_allow_set, peer_api_clients_set, peer_chain, tunnel_ifname
from peerwall.compile.ruleset import Chain, Hook, NftSet, Ruleset
from peerwall.compile.trace import (
    POD_IFNAME,
    Packet,
    TraceError,
    UnknownRuleForm,
    parse_rule,
    run_chain,
    run_hook,
    trace,
    traced_table,
)
from peerwall.model import SecurityMode, Topology, load_topology, topology_from_data
from peerwall.model.addressing import plan_addresses, translate
from peerwall.policy import Verdict, expect
from strategies import topologies

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
EXAMPLES = ("seed.yaml", "three-clusters.yaml")


def example(name: str) -> Topology:
    text = resources.files("peerwall").joinpath(f"examples/{name}").read_text()
    return load_topology(text, name)


def without(rs: Ruleset, set_name: str, element: str) -> Ruleset:
    sets = tuple(
        replace(s, elements=s.elements - {element}) if s.name == set_name else s for s in rs.sets
    )
    return replace(rs, sets=sets)


# --- the traced table is the expected table --------------------------------------------------


@pytest.mark.parametrize("mode", list(SecurityMode))
@pytest.mark.parametrize("name", EXAMPLES)
def test_traced_table_equals_expected_on_the_examples(name: str, mode: SecurityMode) -> None:
    t = example(name)
    traced = traced_table(t, mode)
    assert traced.to_dict() == expect(t, mode).table.to_dict()
    assert expect(t, mode).table.compare(traced) == []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=topologies(), mode=st.sampled_from(list(SecurityMode)))
def test_traced_table_equals_expected_on_generated_topologies(
    data: dict[str, Any], mode: SecurityMode
) -> None:
    t = topology_from_data(data, "generated")
    mismatches = expect(t, mode).table.compare(traced_table(t, mode))
    assert mismatches == [], [
        (m, trace(t, mode, m.source, m.destination).explain()) for m in mismatches[:3]
    ]
