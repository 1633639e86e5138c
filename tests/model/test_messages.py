"""Schema problems in the file's terms: one line naming the field, no silent coercion, no internals."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from peerwall.errors import Problem, TopologyInvalid
from peerwall.model import SecurityMode, load_topology, topology_from_data

CLUSTERS = "clusters:\n  - {name: C1, podCIDR: 10.244.0.0/16}\n"
NAME_RULE = (
    "use 1 to 63 characters: letters, digits, '.', '_', '-', "
    "starting and ending with a letter or digit"
)


def problems(text: str) -> list[Problem]:
    with pytest.raises(TopologyInvalid) as info:
        load_topology(text, "t.yaml")
    lines = str(info.value).split("\n")
    assert len(lines) == len(info.value.problems)  # one line each, whatever the input held
    return list(info.value.problems)


def pod_problem(fields: str) -> Problem:
    (problem,) = problems(CLUSTERS + f"pods:\n  - {{{fields}}}\n")
    return problem


# --- YAML 1.1 reads some words as booleans and nulls -----------------------------------------


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            "name: P1, cluster: C1, namespace: off",
            "pods[0].namespace",
            "expected a string, got the boolean false (YAML reads off/no/false as booleans): "
            'quote it, "off"',
        ),
        (
            "name: NO, cluster: C1",
            "pods[0].name",
            "expected a string, got the boolean false (YAML reads off/no/false as booleans): "
            'quote it, "NO"',
        ),
        (
            "name: yes, cluster: C1",
            "pods[0].name",
            "expected a string, got the boolean true (YAML reads on/yes/true as booleans): "
            'quote it, "yes"',
        ),
        (
            "name: null, cluster: C1",
            "pods[0].name",
            'expected a string, got null: quote it, "null"',
        ),
        (
            "name: ~, cluster: C1",
            "pods[0].name",
            "expected a string, got null (YAML reads ~ as null)",
        ),
        (
            "name: , cluster: C1",
            "pods[0].name",
            "expected a string, got no value (YAML reads an empty value as null)",
        ),
    ],
)
def test_yaml_booleans_and_nulls_meant_as_strings_say_quote_it(
    fields: str, path: str, message: str
):
    # BUG: "Input should be a valid string", with no hint that YAML read the word as a boolean.
    assert pod_problem(fields) == Problem(path, message)


# --- silent coercions are errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            "name: 12, cluster: C1",
            "pods[0].name",
            'expected a string, got the integer 12: quote it, "12"',
        ),
        (
            "name: 012, cluster: C1",
            "pods[0].name",
            'expected a string, got the integer 10 (YAML reads "012" as a number): quote it, "012"',
        ),
        (
            "name: 1.5, cluster: C1",
            "pods[0].name",
            'expected a string, got the number 1.5: quote it, "1.5"',
        ),
        (
            "name: 2001-01-01, cluster: C1",
            "pods[0].name",
            'expected a string, got the date 2001-01-01 (YAML reads it as a date): quote it, "2001-01-01"',
        ),
        (
            "name: !!binary UDE=, cluster: C1",
            "pods[0].name",
            "expected a string, got binary data (a !!binary value)",
        ),
        (
            "name: P1, cluster: C1, ip: 167772161",
            "pods[0].ip",
            "expected an IPv4 address such as 10.244.0.5, got the integer 167772161",
        ),
        (
            "name: P1, cluster: C1, labels: {app: 1}",
            "pods[0].labels.app",
            'expected a string, got the integer 1: quote it, "1"',
        ),
    ],
)
def test_no_silent_coercion(fields: str, path: str, message: str):
    # BUG: pydantic's lax mode turned !!binary UDE= into the name "P1" and 167772161 into the
    # address 10.0.0.1; the others said only "Input should be a valid string".
    assert pod_problem(fields) == Problem(path, message)


def test_a_cidr_or_a_mode_must_be_written_as_text():
    text = (
        "clusters:\n"
        "  - {name: C1, podCIDR: 42}\n"
        "  - {name: C2, podCIDR: 10.1.0.0/16, serviceCIDR: 167772160, securityMode: on}\n"
    )
    assert problems(text) == [
        Problem("clusters[0].podCIDR", "expected a CIDR such as 10.244.0.0/16, got the integer 42"),
        Problem(
            "clusters[1].serviceCIDR",
            "expected a CIDR such as 10.96.0.0/16, got the integer 167772160",
        ),
        Problem(
            "clusters[1].securityMode",
            "expected a security mode (FullPodToPod, IntraClusterTrafficSegregation), "
            "got the boolean true",
        ),
    ]


def test_data_without_yaml_behind_it_gets_no_yaml_explanation():
    data = {"clusters": [{"name": False, "podCIDR": "10.1.0.0/16"}]}
    with pytest.raises(TopologyInvalid) as info:
        topology_from_data(data, "d")
    assert info.value.problems == (
        Problem("clusters[0].name", 'expected a string, got the boolean false: quote it, "false"'),
    )


def test_ready_made_addresses_and_modes_are_still_accepted():
    data = {
        "clusters": [
            {
                "name": "C1",
                "podCIDR": IPv4Network("10.1.0.0/16"),
                "securityMode": SecurityMode.FULL_POD_TO_POD,
            }
        ],
        "pods": [{"name": "P1", "cluster": "C1", "ip": IPv4Address("10.1.0.7")}],
    }
    assert topology_from_data(data).pods[0].ip == IPv4Address("10.1.0.7")


# --- no internals, one line, short -----------------------------------------------------------


def test_an_item_that_is_not_a_mapping():
    # BUG: "Input should be a valid dictionary or instance of ClusterSpec".
    assert problems("clusters: [C1]\n") == [
        Problem("clusters[0]", "expected a mapping (the fields of a cluster), got the string 'C1'")
    ]


def test_a_field_name_that_is_not_a_string():
    # BUG: "clusters[0].[1]: Keys should be strings".
    text = "clusters:\n  - {name: C1, podCIDR: 10.244.0.0/16, 1: x}\n"
    assert problems(text) == [
        Problem("clusters[0]", 'field names are strings, got the integer 1: quote it, "1"')
    ]


def test_label_keys():
    # BUG: "pods[0].labels..[key]: String should have at least 1 character", and
    # "pods[0].labels.1.[key]: Input should be a valid string".
    assert problems(CLUSTERS + "pods:\n  - {name: P1, cluster: C1, labels: {'': a, 7: b}}\n") == [
        Problem("pods[0].labels", "a label key cannot be empty"),
        Problem("pods[0].labels", 'label keys are strings, got the integer 7: quote it, "7"'),
    ]


def test_label_keys_with_dots_are_quoted_in_the_path():
    problem = pod_problem("name: P1, cluster: C1, labels: {app.kubernetes.io/name: [a]}")
    assert problem == Problem(
        "pods[0].labels['app.kubernetes.io/name']", "expected a string, got a list"
    )


def test_the_name_rule_says_exactly_what_is_accepted():
    assert pod_problem("name: -P1, cluster: C1") == Problem(
        "pods[0].name", f"'-P1' is not a valid name: {NAME_RULE}"
    )
    too_long = "a" * 64
    assert pod_problem(f"name: {too_long}, cluster: C1") == Problem(
        "pods[0].name", f"'{'a' * 60}'… (64 characters) is not a valid name: {NAME_RULE}"
    )


def test_a_huge_value_is_cut_when_echoed():
    # BUG: a 1 MB name was echoed whole (and a 50 MB one too).
    problem = pod_problem(f"name: {'x' * 1_000_000}, cluster: C1")
    assert problem.message == f"'{'x' * 60}'… (1000000 characters) is not a valid name: {NAME_RULE}"


def test_control_characters_in_values_are_escaped():
    problem = pod_problem('name: "P\\e[31m1\\u2028", cluster: C1')
    assert problem == Problem(
        "pods[0].name", f"'P\\x1b[31m1\\u2028' is not a valid name: {NAME_RULE}"
    )


def test_an_unknown_field_with_odd_characters_stays_on_one_line():
    (problem,) = problems(CLUSTERS.replace("{name: C1,", '{"zone\\nx": eu, name: C1,'))
    assert problem == Problem("clusters[0]['zone\\nx']", "unknown field")


def test_a_mode_too_long_is_cut():
    (problem,) = problems(CLUSTERS.replace("}", f", securityMode: {'X' * 500}}}"))
    assert problem.path == "clusters[0].securityMode"
    assert problem.message.startswith(f"unknown security mode '{'X' * 60}'… (500 characters)")
