"""Parsing topology and values text: YAML as specified, JSON fast, every failure one located line."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

import pytest

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model import load_topology
from peerwall.model import parse as parse_module
from peerwall.model.parse import Document, parse_document

CLUSTER = "clusters:\n  - {name: C1, podCIDR: 10.244.0.0/16}\n"


def problems(text: str, source: str = "t.yaml") -> list[Problem]:
    with pytest.raises(TopologyInvalid) as info:
        parse_document(text, source)
    assert info.value.source == source
    for line in str(info.value).splitlines():
        assert line.startswith(f"{source}: ")
    return list(info.value.problems)


def one(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def topology_problems(text: str) -> list[str]:
    with pytest.raises(TopologyInvalid) as info:
        load_topology(text, "t.yaml")
    return str(info.value).splitlines()


# --- keys ------------------------------------------------------------------------------------


def test_a_complex_key_is_a_located_error_not_a_type_error():
    # BUG: `? [a, b]` made the duplicate-key check hash a list: TypeError, a traceback.
    assert one("? [a, b]\n: 1\n") == Problem(
        "line 1, column 3", "a key must be a string, not a list '[a, b]'"
    )


def test_a_complex_key_inside_a_field_names_the_field():
    text = (
        CLUSTER + "pods:\n  - name: P1\n    cluster: C1\n    labels:\n      ? {a: 1}\n      : x\n"
    )
    assert one(text) == Problem(
        "pods[0].labels", "a key must be a string, not a mapping '{a: 1}' (line 7, column 9)"
    )


def test_merge_keys_merge_and_explicit_keys_win():
    # BUG: the duplicate-key loader rejected `<<` ("could not determine a constructor").
    text = (
        "base: &base {cluster: C1, namespace: shop, labels: {app: web}}\n"
        "more: &more {namespace: other, runsOn: C2}\n"
        "pods:\n"
        "  - {<<: *base, name: P1}\n"
        "  - {<<: *base, name: P2, namespace: batch}\n"  # an explicit key overrides a merged one
        "  - {<<: [*base, *more], name: P3}\n"  # earlier mappings win over later ones
    )
    pods = parse_document(text, "t.yaml").data["pods"]  # type: ignore[index]
    assert pods == [
        {"cluster": "C1", "namespace": "shop", "labels": {"app": "web"}, "name": "P1"},
        {"cluster": "C1", "namespace": "batch", "labels": {"app": "web"}, "name": "P2"},
        {
            "cluster": "C1",
            "namespace": "shop",
            "labels": {"app": "web"},
            "runsOn": "C2",
            "name": "P3",
        },
    ]


def test_merged_pods_load_as_topology():
    text = (
        "clusters:\n  - {name: C1, podCIDR: 10.244.0.0/16}\n"
        "pods:\n"
        "  - &web {name: web1, cluster: C1, labels: {app: web}}\n"
        "  - {<<: *web, name: web2}\n"
        "services:\n  - {name: web, cluster: C1, selector: {app: web}}\n"
    )
    assert load_topology(text).service_by_name["web"].backends == ("web1", "web2")


def test_two_explicit_equal_keys_are_still_an_error_next_to_a_merge():
    text = "base: &b {x: 1}\nitem: {<<: *b, name: P2, name: P3}\n"
    assert one(text) == Problem("item", "duplicate key 'name' (line 2, column 26)")


def test_a_repeated_key_deep_in_the_file_names_the_mapping():
    text = CLUSTER.replace("{name: C1,", "{name: C1, name: C2,")
    assert one(text) == Problem("clusters[0]", "duplicate key 'name' (line 2, column 16)")


def test_merges_of_merges_do_not_grow_exponentially():
    # PyYAML appends every merged pair: 4 copies of 4 copies... of a mapping, 4**12 pairs.
    lines = ["m0: &m0 {a: 1, b: 2}"]
    for i in range(1, 13):
        lines.append(f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 4)}], k{i}: {i}}}")
    with pytest.raises(TopologyInvalid) as info:
        parse_document("\n".join(lines) + "\n", "t.yaml")
    assert "aliases (*name) expand the document by" in str(info.value)


def test_a_merge_of_something_else_than_a_mapping():
    assert one("item: {<<: 3, name: P1}\n") == Problem(
        "item", "a merge key (<<) takes a mapping or a list of mappings (line 1, column 12)"
    )


# --- documents, characters, values -----------------------------------------------------------


def test_a_second_document_is_refused_in_plain_words():
    assert one(CLUSTER + "---\n" + CLUSTER) == Problem(
        "line 3, column 1",
        "malformed YAML: one YAML document expected, but a second one starts here",
    )


def test_a_control_character_is_one_line_with_its_position():
    # BUG: PyYAML's message spans two lines and says `in "<unicode string>", position 19`.
    text = "clusters:\n  - {name: é\x07, podCIDR: 10.244.0.0/16}\n"
    assert one(text) == Problem(
        "line 2, column 13",
        "malformed YAML: control character U+0007 is not allowed "
        "(write it as an escape such as \\x07 in a double-quoted string)",
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2001-13-45", "a date (month must be in 1..12)"),
        ("1" * 5000, "an integer (exceeds the limit (4300 digits) for integer string conversion)"),
        ("!!bool maybe", "a boolean"),
        ("!!timestamp soon", "a date"),
    ],
)
def test_a_value_that_cannot_be_built_names_its_field(value: str, kind: str):
    # BUG: these raised ValueError, KeyError or AttributeError out of PyYAML: a traceback.
    (problem,) = problems(f"pods:\n  - name: {value}\n")
    assert problem.path == "pods[0].name"
    assert f"cannot be read as {kind}; quote it if it is meant as a string" in problem.message
    assert problem.message.endswith("(line 2, column 11)")
    assert len(problem.message) < 300


def test_a_recursive_alias_is_refused():
    (problem,) = problems("pods:\n  - &p {name: P1, labels: *p}\n")
    assert problem.path == "pods[0]"
    assert "recursive data is not supported" in problem.message


def test_aliases_may_not_expand_a_small_file_into_billions_of_values():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    problem = one("\n".join(lines) + "\n")
    assert problem.path == ""
    assert problem.message.startswith("aliases (*name) expand the document by 1,234,")
    assert problem.message.endswith(" values, more than the 1,000,000 allowed")


def test_reasonable_aliases_are_fine():
    text = (
        CLUSTER
        + "x: &l {app: web}\n"
        + "pods:\n"
        + "".join(f"  - {{name: P{i}, cluster: C1, labels: *l}}\n" for i in range(100))
    )
    data: Any = parse_document(text, "t.yaml").data
    assert data["pods"][99]["labels"] == {"app": "web"}


def test_written_recovers_plain_scalars_as_written():
    text = "pods:\n  - {name: off, cluster: 'no', labels: {on: x}}\n  - {<<: *p}\n"
    doc = parse_document(text.replace("  - {<<: *p}\n", ""), "t.yaml")
    assert doc.written(("pods", 0, "name")) == "off"
    assert doc.written(("pods", 0, "cluster")) is None  # quoted: it was a string all along
    assert doc.written(("pods", 0, "labels", True, "[key]")) == "on"
    assert doc.written(("pods", 1, "name")) is None
    assert Document({"a": False}).written(("a",)) is None  # no YAML behind it


# --- JSON ------------------------------------------------------------------------------------


def json_topology(pods: int) -> str:
    return json.dumps(
        {
            "clusters": [{"name": "C1", "podCIDR": "10.0.0.0/16"}],
            "pods": [{"name": f"p{i}", "cluster": "C1"} for i in range(pods)],
        },
        indent=1,
    )


def test_json_is_parsed_by_the_json_module(monkeypatch: pytest.MonkeyPatch):
    # PyYAML takes ~0.9 s for 10,000 JSON pods, json 0.01 s: JSON must not reach PyYAML.
    class NoYaml:
        def __init__(self, text: str) -> None:
            raise AssertionError("JSON text went to the YAML loader")

    monkeypatch.setattr(parse_module, "_Loader", NoYaml)
    data: Any = parse_document(json_topology(3), "t.json").data
    assert [p["name"] for p in data["pods"]] == ["p0", "p1", "p2"]
    assert len(load_topology(json_topology(300), "t.json").pods) == 300


def test_json_and_yaml_read_a_json_file_alike():
    text = json_topology(5)
    assert parse_document(text, "t.json").data == parse_module._parse_yaml(text, "t.json").data


def test_json_repeated_key_is_located_like_yaml():
    text = (
        '{\n  "clusters": [\n    {"name": "C1", "podCIDR": "10.0.0.0/16", "name": "C2"}\n  ]\n}\n'
    )
    assert one(text) == Problem("clusters[0]", "duplicate key 'name' (line 3, column 46)")


def test_json_syntax_error_has_line_and_column():
    text = '{\n  "clusters": [\n    {"name": "C1"}\n    {"name": "C2"}\n  ]\n}\n'
    assert one(text) == Problem("line 4, column 5", "malformed JSON: Expecting ',' delimiter")


def test_a_yaml_flow_mapping_is_not_mistaken_for_json():
    text = "{clusters: [{name: C1, podCIDR: 10.244.0.0/16}],\n pods: [{name: P1, cluster: C1}]}\n"
    assert [p.name for p in load_topology(text).pods] == ["P1"]


def test_the_garbage_collector_is_paused_while_parsing_and_restored():
    collections: list[str] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    text = (
        CLUSTER
        + "pods:\n"
        + "".join(f"  - {{name: p{i}, cluster: C1, labels: {{app: a{i}}}}}\n" for i in range(3000))
    )
    json_text = json_topology(3000)
    assert gc.isenabled()
    gc.callbacks.append(record)
    try:
        parse_document(text, "t.yaml")
        parse_document(json_text, "t.json")
        # Some 40,000 containers, which would trigger dozens of collections; the one left is
        # the collection the collector catches up with as soon as it is enabled again.
        assert len(collections) <= 2
        assert gc.isenabled()
        gc.disable()
        try:
            parse_document(text, "t.yaml")
            assert not gc.isenabled()  # the previous state is restored, not forced on
        finally:
            gc.enable()
    finally:
        gc.callbacks.remove(record)


def test_what_a_big_pause_allocated_leaves_it_in_the_oldest_generation():
    # Left in the youngest, the objects made while the collector was paused would all be
    # traversed by the collection that the first allocation after it sets off (seconds for a
    # million pods), then again as they age.
    collections: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(record)
    try:
        with parse_module.gc_paused():
            made = [[i] for i in range(parse_module.PROMOTED_FROM)]
            assert not gc.isenabled()
        after = [[i] for i in range(100)]  # would set off that collection
        assert collections == []
    finally:
        gc.callbacks.remove(record)
    assert gc.isenabled()
    oldest = gc.get_objects(2)
    assert any(o is made for o in oldest) and any(o is made[-1] for o in oldest)
    assert after
    gc.disable()
    try:
        with parse_module.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_a_small_pause_leaves_the_garbage_made_before_it_to_the_young_collections():
    # A pause's end that moved every young object to the oldest generation moved the process's
    # young garbage cycles there too, where only a full collection finds them, and the moved
    # objects never count towards starting one: an agent that loads a small topology at every
    # mode switch grew by its status writes' garbage (~20 MiB an hour in the soak).
    garbage = [weakref.ref(_Cycle()) for _ in range(50)]
    with parse_module.gc_paused():
        load_topology(CLUSTER, "small.yaml")
    gc.collect(1)  # the young generations' collection, as the interpreter runs it
    assert [r for r in garbage if r() is not None] == []


# --- size --------------------------------------------------------------------------------------


def test_input_larger_than_the_limit_is_refused_before_parsing():
    with pytest.raises(TopologyInvalid) as info:
        load_topology(CLUSTER + "#" * 1000, "big.yaml", max_bytes=1000)
    assert str(info.value) == (
        "big.yaml: the input is larger than the limit of 1000 bytes "
        "(the setting --max-input-size, or PEERWALL_MAX_INPUT_BYTES, raises it)"
    )
    assert load_topology(CLUSTER, "small.yaml", max_bytes=len(CLUSTER)).clusters


def test_the_limit_counts_utf8_bytes():
    text = CLUSTER + "# " + "é" * 100 + "\n"
    with pytest.raises(TopologyInvalid):
        parse_document(text, "t.yaml", max_bytes=len(text) + 50)
    parse_document(text, "t.yaml", max_bytes=len(text.encode()))


def test_the_default_limit_is_128_mib():
    assert parse_module.DEFAULT_MAX_INPUT_BYTES == 128 * 1024 * 1024
