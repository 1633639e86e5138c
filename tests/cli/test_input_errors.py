"""Bad input on the command line: status 2, one line per problem naming file and field, no traceback.

Topology files (``-f``), standard input and values files (``--values``) alike.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from peerwall import values as values_module
from peerwall.cli import options
from peerwall.cli.main import app
from peerwall.errors import ModeInvalid, TopologyInvalid

TOPOLOGY = """\
clusters:
  - {name: C1, podCIDR: 10.244.0.0/16}
  - {name: C2, podCIDR: 10.245.0.0/16}
peerings:
  - {consumer: C1, provider: C2}
pods:
  - {name: P1, cluster: C1, labels: {app: web}}
  - {name: P2, cluster: C2}
services:
  - {name: S1, cluster: C1, selector: {app: web}}
"""


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(
        app, list(args), input=stdin, env={"NO_COLOR": "1", "COLUMNS": "100", **(env or {})}
    )


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def error_lines(result: Any) -> list[str]:
    """The problems a failed command printed, checked to be clean: status 2, stderr only."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines: list[str] = result.stderr.splitlines()
    assert lines
    return lines


def matrix_json(*args: str) -> dict[str, Any]:
    result = run("matrix", *args, "-o", "json")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


# --- 1. complex keys -----------------------------------------------------------------------


def test_complex_key_in_a_topology_file(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY + "? [a, b]\n: 1\n")
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: line 11, column 3: a key must be a string, not a list '[a, b]'"
    ]


def test_complex_key_in_a_values_file(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(tmp_path, "v.yaml", "networking:\n  ? [securityMode]\n  : FullPodToPod\n")
    assert error_lines(run("matrix", "-f", topo, "--values", values)) == [
        f"{values}: networking: a key must be a string, not a list '[securityMode]' "
        "(line 2, column 5)"
    ]


# --- 2. merge keys -----------------------------------------------------------------------------


def test_merge_keys_in_a_topology_file(tmp_path: Path):
    text = TOPOLOGY.replace(
        "  - {name: P2, cluster: C2}\n",
        "  - &web {name: P3, cluster: C1, labels: {app: web}}\n  - {<<: *web, name: P4}\n",
    )
    doc = matrix_json("-f", write(tmp_path, "t.yaml", text))
    assert doc["sources"] == ["P1", "P3", "P4"]


def test_merge_keys_in_a_values_file(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(
        tmp_path, "v.yaml", "networking:\n  <<: {securityMode: IntraClusterTrafficSegregation}\n"
    )
    assert matrix_json("-f", topo, "--values", values)["securityMode"] == (
        "IntraClusterTrafficSegregation"
    )


def test_repeated_keys_stay_errors_in_both_files(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY + "services: []\n")
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: line 11, column 1: malformed YAML: duplicate key 'services'"
    ]
    good = write(tmp_path, "good.yaml", TOPOLOGY)
    values = write(
        tmp_path,
        "v.yaml",
        "networking:\n  securityMode: FullPodToPod\n  securityMode: IntraClusterTrafficSegregation\n",
    )
    assert error_lines(run("matrix", "-f", good, "--values", values)) == [
        f"{values}: networking: duplicate key 'securityMode' (line 3, column 3)"
    ]


# --- 7. JSON -------------------------------------------------------------------------------


def test_json_topology_file_and_stdin(tmp_path: Path):
    text = json.dumps(yaml.safe_load(TOPOLOGY), indent=2)
    assert matrix_json("-f", write(tmp_path, "t.json", text))["sources"] == ["P1", "P2"]
    result = run("matrix", "-f", "-", "-o", "json", stdin=text)
    assert json.loads(result.stdout)["sources"] == ["P1", "P2"]


def test_json_errors_are_located(tmp_path: Path):
    bad = write(tmp_path, "bad.json", '{\n  "clusters": [\n    {"name": "C1",}\n  ]\n}\n')
    assert error_lines(run("matrix", "-f", bad)) == [
        f"{bad}: line 3, column 19: malformed JSON: Expecting property name enclosed in double quotes"
    ]
    dup = write(tmp_path, "dup.json", '{"clusters": [], "clusters": []}')
    assert error_lines(run("matrix", "-f", dup)) == [
        f"{dup}: line 1, column 18: malformed YAML: duplicate key 'clusters'"
    ]


def test_json_values_file(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(
        tmp_path, "v.json", '{"networking": {"securityMode": "IntraClusterTrafficSegregation"}}'
    )
    assert matrix_json("-f", topo, "--values", values)["securityMode"] == (
        "IntraClusterTrafficSegregation"
    )


@pytest.mark.parametrize("where", ["file", "stdin"])
def test_every_problem_is_one_line(tmp_path: Path, where: str):
    text = "clusters:\n  - {name: C1, podCIDR: 10.244.0.0/16, internet: 'x\x1by'}\n"
    if where == "file":
        lines = error_lines(run("matrix", "-f", write(tmp_path, "t.yaml", text)))
    else:
        lines = error_lines(run("matrix", "-f", "-", stdin=text))
    assert len(lines) == 1
    assert "<unicode string>" not in lines[0]


# --- 5. one line naming the field, whatever the input ----------------------------------------


def test_yaml_booleans_and_numbers_meant_as_names(tmp_path: Path):
    text = TOPOLOGY.replace("{name: P2, cluster: C2}", "{name: NO, cluster: C2, namespace: off}")
    text = text.replace("{name: S1,", "{name: 12,")
    topo = write(tmp_path, "t.yaml", text)
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: pods[1].name: expected a string, got the boolean false "
        '(YAML reads off/no/false as booleans): quote it, "NO"',
        f"{topo}: pods[1].namespace: expected a string, got the boolean false "
        '(YAML reads off/no/false as booleans): quote it, "off"',
        f'{topo}: services[0].name: expected a string, got the integer 12: quote it, "12"',
    ]


def test_coerced_addresses_are_refused(tmp_path: Path):
    text = TOPOLOGY.replace("{name: P2, cluster: C2}", "{name: P2, cluster: C2, ip: 184877057}")
    topo = write(tmp_path, "t.yaml", text)
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: pods[1].ip: expected an IPv4 address such as 10.244.0.5, "
        "got the integer 184877057"
    ]


def test_a_huge_name_is_cut_and_control_characters_escaped(tmp_path: Path):
    huge = "P" * 3_000_000
    text = TOPOLOGY.replace("{name: P2,", f"{{name: {huge},").replace(
        "{name: S1,", '{name: "S\\e]0;pwned\\a1",'
    )
    lines = error_lines(run("matrix", "-f", "-", stdin=text))
    assert lines == [
        f"<stdin>: pods[1].name: '{'P' * 60}'… (3000000 characters) is not a valid name: use 1 "
        "to 63 characters: letters, digits, '.', '_', '-', starting and ending with a letter or "
        "digit",
        "<stdin>: services[0].name: 'S\\x1b]0;pwned\\x071' is not a valid name: use 1 to 63 "
        "characters: letters, digits, '.', '_', '-', starting and ending with a letter or digit",
    ]


def test_a_second_document(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY + "---\n" + TOPOLOGY)
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: line 11, column 1: malformed YAML: one YAML document expected, "
        "but a second one starts here"
    ]


# --- 3. special ranges -----------------------------------------------------------------------


def test_special_ranges_are_refused(tmp_path: Path):
    text = TOPOLOGY.replace("10.244.0.0/16}", "127.0.0.0/16}").replace(
        "10.245.0.0/16}", "10.245.0.0/16, serviceCIDR: 169.254.0.0/20}"
    )
    topo = write(tmp_path, "t.yaml", text)
    assert error_lines(run("matrix", "-f", topo)) == [
        f"{topo}: clusters[0].podCIDR: 127.0.0.0/16 lies in 127.0.0.0/8 (loopback): "
        "pod addresses cannot come from there",
        f"{topo}: clusters[1].serviceCIDR: 169.254.0.0/20 lies in 169.254.0.0/16 (link-local, "
        "which the lab also uses for its own links): ClusterIPs cannot come from there",
    ]


# --- 4. input size ---------------------------------------------------------------------------


def test_an_endless_file_is_refused_at_the_default_limit():
    # BUG: the whole of /dev/zero was read: MemoryError. Now 128 MiB and one byte at most.
    assert error_lines(run("matrix", "-f", "/dev/zero")) == [
        "/dev/zero: larger than 128 MiB, the input limit (--max-input-size or PEERWALL_MAX_INPUT_BYTES to change it)"
    ]


def test_the_limit_is_configurable_for_topology_values_and_stdin(tmp_path: Path):
    small = {"PEERWALL_MAX_INPUT_BYTES": "4096"}
    limit = "larger than 4096 bytes, the input limit (--max-input-size or PEERWALL_MAX_INPUT_BYTES to change it)"
    assert error_lines(run("matrix", "-f", "/dev/zero", env=small)) == [f"/dev/zero: {limit}"]
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(tmp_path, "v.yaml", "networking: {securityMode: FullPodToPod}\n" + "#" * 5000)
    assert error_lines(run("matrix", "-f", topo, "--values", values, env=small)) == [
        f"{values}: {limit}"
    ]
    assert error_lines(run("matrix", "-f", "-", stdin=TOPOLOGY + "#" * 5000, env=small)) == [
        f"<stdin>: {limit}"
    ]
    exact = {"PEERWALL_MAX_INPUT_BYTES": str(len(TOPOLOGY.encode()))}
    assert run("matrix", "-f", topo, "-o", "json", env=exact).exit_code == 0


def test_the_limit_is_an_option_too_and_wins_over_the_environment(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY + "#" * 5000)
    limit = "larger than 4096 bytes, the input limit (--max-input-size or PEERWALL_MAX_INPUT_BYTES to change it)"
    assert error_lines(run("--max-input-size", "4096", "matrix", "-f", topo)) == [
        f"{topo}: {limit}"
    ]
    big = {"PEERWALL_MAX_INPUT_BYTES": "100"}
    assert run("--max-input-size", "100000", "matrix", "-f", topo, env=big).exit_code == 0
    # Given once, not kept: the next command (same process) is back to the environment's.
    assert run("matrix", "-f", topo, env=big).exit_code == 2
    assert run("--max-input-size", "0", "matrix", "-f", topo).exit_code == 2


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_a_bad_limit_is_an_error(tmp_path: Path, value: str):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    assert error_lines(run("matrix", "-f", topo, env={"PEERWALL_MAX_INPUT_BYTES": value})) == [
        f"PEERWALL_MAX_INPUT_BYTES: expected a positive number of bytes, got '{value}'"
    ]


class EndlessShortReads(io.RawIOBase):
    """An endless stream that hands out at most 1,000 bytes per read, like a pipe or a terminal."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), 1000)
        buffer[:n] = b"#" * n
        self.served += n
        return n


def test_stdin_is_read_in_pieces_up_to_the_limit(monkeypatch: pytest.MonkeyPatch):
    stream = EndlessShortReads()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))
    monkeypatch.setenv("PEERWALL_MAX_INPUT_BYTES", "25000")
    with pytest.raises(TopologyInvalid) as info:
        options.read_text(Path("-"))
    assert str(info.value).startswith("<stdin>: larger than 25000 bytes")
    assert stream.served <= 25001 + 8192  # the limit, and at most what one buffered read adds


def test_short_reads_do_not_cut_the_input(monkeypatch: pytest.MonkeyPatch):
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), 7, len(self.data))
            buffer[:n], self.data = self.data[:n], self.data[n:]
            return n

    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=Trickle(TOPOLOGY.encode())))
    assert options.read_text(Path("-")) == TOPOLOGY


# --- 6. values files: unknown keys are errors ------------------------------------------------


def values_errors(tmp_path: Path, text: str, *extra: str) -> list[str]:
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(tmp_path, "values.yaml", text)
    lines = error_lines(run("matrix", "-f", topo, "--values", values, *extra))
    prefix = f"{values}: "
    assert all(line.startswith(prefix) for line in lines), lines
    return [line.removeprefix(prefix) for line in lines]


def test_a_misspelt_key_is_an_error_with_a_suggestion(tmp_path: Path):
    # BUG: unknown keys were ignored: this silently meant the default mode, FullPodToPod.
    text = "networking:\n  securitymode: IntraClusterTrafficSegregation\n"
    assert values_errors(tmp_path, text) == [
        "networking.securitymode: unknown key (did you mean networking.securityMode?)"
    ]


def test_every_unknown_key_is_reported_in_file_order(tmp_path: Path):
    text = (
        "image: {repository: peerwall}\n"
        "networking:\n  securityMode: FullPodToPod\n  mtu: 1400\n"
        "Networking: {securityMode: FullPodToPod}\n"
        "'networking.securityMode': FullPodToPod\n"
    )
    assert values_errors(tmp_path, text) == [
        "image: unknown key (known keys: networking.securityMode, networking.securityAudit)",
        "networking.mtu: unknown key (known keys: networking.securityMode, networking.securityAudit)",
        "Networking: unknown key (did you mean networking.securityMode?)",
        "['networking.securityMode']: unknown key (did you mean networking.securityMode?)",
    ]


def test_unknown_keys_fail_even_when_set_overrides_the_mode(tmp_path: Path):
    text = "networking: {securityMod: FullPodToPod}\n"
    assert values_errors(tmp_path, text, "--set", "networking.securityMode=FullPodToPod") == [
        "networking.securityMod: unknown key (did you mean networking.securityMode?)"
    ]


def test_values_of_the_wrong_shape(tmp_path: Path):
    assert values_errors(tmp_path, "networking: 5\n") == [
        "networking: expected a mapping, got the integer 5"
    ]
    assert values_errors(tmp_path, "networking: {securityMode: yes}\n") == [
        "networking.securityMode: expected a mode name (FullPodToPod, "
        "IntraClusterTrafficSegregation), got the boolean true"
    ]
    assert values_errors(tmp_path, "[networking]\n") == ["expected a mapping of values, got a list"]
    assert values_errors(tmp_path, "{1: x}\n") == [
        "[1]: unknown key (known keys: networking.securityMode, networking.securityAudit)"
    ]


@pytest.mark.parametrize(
    "text", ["", "# nothing\n", "networking:\n", "networking: {securityMode: null}\n"]
)
def test_values_files_that_set_nothing(tmp_path: Path, text: str):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    values = write(tmp_path, "values.yaml", text)
    assert matrix_json("-f", topo, "--values", values)["securityMode"] == "FullPodToPod"


def test_set_and_values_share_the_key_registry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def seconds(value: object) -> int:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError("expected a positive number of seconds")
        return value

    # One registration makes a nested key known to --set and to values files alike.
    keys = (
        *values_module.VALUE_KEYS,
        values_module.ValueKey("agent.resyncInterval", seconds, "30"),
    )
    monkeypatch.setattr(values_module, "VALUE_KEYS", keys)
    values = write(tmp_path, "v.yaml", "agent:\n  resyncInterval: 30\nnetworking: {}\n")
    assert options.read_values(Path(values)) == {"agent.resyncInterval": 30}
    assert values_module.set_values(["agent.resyncInterval=45"]) == {"agent.resyncInterval": 45}
    with pytest.raises(TopologyInvalid) as info:
        options.read_values(Path(write(tmp_path, "w.yaml", "agent: {resyncinterval: 30}\n")))
    assert str(info.value).endswith(
        "agent.resyncinterval: unknown key (did you mean agent.resyncInterval?)"
    )
    with pytest.raises(ModeInvalid) as mode_info:
        values_module.set_values(["agent.resyncInterval=soon"])
    assert (
        str(mode_info.value) == "--set agent.resyncInterval: expected a positive number of seconds"
    )
    with pytest.raises(ModeInvalid) as set_info:
        values_module.parse_sets(["agent.resync=5"])
    assert str(set_info.value) == (
        "--set agent.resync=5: unknown key 'agent.resync' (did you mean agent.resyncInterval?)"
    )


def test_set_suggests_like_a_values_file(tmp_path: Path):
    topo = write(tmp_path, "t.yaml", TOPOLOGY)
    result = run("matrix", "-f", topo, "--set", "networking.securitymode=FullPodToPod")
    assert error_lines(result) == [
        "--set networking.securitymode=FullPodToPod: unknown key 'networking.securitymode' "
        "(did you mean networking.securityMode?)"
    ]
    values = write(tmp_path, "v.yaml", "networking:\n  securitymode: FullPodToPod\n")
    assert error_lines(run("matrix", "-f", topo, "--values", values)) == [
        f"{values}: networking.securitymode: unknown key (did you mean networking.securityMode?)"
    ]
