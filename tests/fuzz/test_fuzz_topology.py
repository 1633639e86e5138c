"""Fuzzing topology files (issue 14, item 9): whatever the text, ``load_topology`` either gives
a topology that every gateway's table compiles from, or raises ``TopologyInvalid`` naming the
file and a field; never another exception. Budgets: ``hypothesis_profiles.BUDGETS``.

Two generators: mutations of valid topologies (a field dropped, a value replaced by garbage: huge
numbers, long or multi-line strings, IPv6, wrong types; unknown keys; names repeated) and raw
text (YAML and JSON fragments)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from hypothesis_profiles import budget
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.names import peer_chain
from peerwall.errors import TopologyInvalid
from peerwall.model import SecurityMode, load_topology
from peerwall.model.topology import Topology
from peerwall.nft.objects import render_replace
from strategies import topologies

SOURCE = "fuzz.yaml"

GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet="ab\n\r\t\x00 {}[]:#&*!|>'\"%@`", max_size=20),
    st.just("x" * 5000),
    st.sampled_from(
        [
            "fd00::/64",
            "::1",
            "2001:db8::5",
            "10.0.0.0/33",
            "10.0.0.300",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "10.244.0.0/16\n",
            "C1\n",
            "IntraClusterTrafficSegregation\n",
            "FullPodToPod ",
        ]
    ),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON-like value (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, (*prefix, i))
    return out


def set_at(data: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    if delete:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return data


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    data = draw(topologies())
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(data)))
        action = draw(st.sampled_from(["replace", "delete", "unknown-key", "duplicate"]))
        if action == "replace":
            data = set_at(data, where, draw(GARBAGE), False)
        elif action == "delete" and where:
            data = set_at(data, where, None, True)
        elif action == "unknown-key" and isinstance(data, dict):
            target = data
            for p in where:
                target = target[p]
            if isinstance(target, dict):
                target[draw(st.sampled_from(["extra", "podCidr", "ip6", "Name"]))] = draw(GARBAGE)
        elif action == "duplicate":
            for kind in ("pods", "services", "clusters"):
                items = data.get(kind) if isinstance(data, dict) else None
                if isinstance(items, list) and items:
                    items.append(json.loads(json.dumps(items[0])))
                    break
    return data


def check(text: str, mode: SecurityMode = SecurityMode.FULL_POD_TO_POD) -> None:
    """The contract: a usable topology, or TopologyInvalid naming the file and fields."""
    try:
        t = load_topology(text, SOURCE)
    except TopologyInvalid as e:
        assert e.problems, "an error with no problem in it"
        for p in e.problems:
            assert p.message.strip(), p
        assert str(e).startswith(f"{SOURCE}:"), str(e)
        return
    compiles(t, mode)


def compiles(t: Topology, mode: SecurityMode) -> None:
    """Every gateway's table compiles, and names stay one token each (nothing injected)."""
    for c in t.clusters:
        state = gateway_state(t, c.name, mode)
        script = render_replace(build(state))
        for peer in state.peers:
            assert peer.isprintable() and " " not in peer, repr(peer)
            assert peer_chain(peer) in script


@budget("fuzz-topology-data")
@given(mutated(), st.sampled_from(["yaml", "json"]), st.sampled_from(list(SecurityMode)))
def test_mutated_topologies_load_or_are_refused_clearly(
    data: Any, form: str, mode: SecurityMode
) -> None:
    text = json.dumps(data) if form == "json" else yaml.safe_dump(data, allow_unicode=True)
    check(text, mode)


@budget("fuzz-topology-text")
@given(
    st.one_of(
        st.text(max_size=300),
        st.text(alphabet="clusters:podCIDR name{}[]-,\n 10./2", max_size=200),
        st.builds(
            lambda a, b: f"clusters:\n  - {{name: {a}, podCIDR: {b}}}\n",
            st.text(max_size=30),
            st.text(max_size=30),
        ),
    )
)
def test_any_text_loads_or_is_refused_clearly(text: str) -> None:
    check(text)
