"""A topology file is streamed through the parser (``cli.options.read_topology``): the same
topology, and the same one-line errors, as parsing its whole text; never more than the input
limit read; a YAML file's text never held whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerwall import settings
from peerwall.cli.options import read_text, read_topology
from peerwall.errors import TopologyInvalid
from peerwall.model import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"


@pytest.fixture
def limit() -> Iterator[None]:
    yield
    settings.set_max_input_bytes(None)


def both(path: Path) -> tuple[str, str]:
    """(error streamed, error from the whole text)."""
    with pytest.raises(TopologyInvalid) as streamed:
        read_topology(path)
    with pytest.raises(TopologyInvalid) as whole:
        load_topology(read_text(path), str(path))
    return str(streamed.value), str(whole.value)


@pytest.mark.parametrize("name", ["seed.yaml", "three-clusters.yaml"])
def test_the_same_topology_as_from_the_text(tmp_path: Path, name: str) -> None:
    path = EXAMPLES / name
    assert read_topology(path) == load_topology(path.read_text(), str(path))
    # As JSON too (the other branch: read whole, then the standard library's parser).
    data = load_topology_data(path)
    as_json = tmp_path / "t.json"
    as_json.write_text(json.dumps(data))
    assert read_topology(as_json) == load_topology(as_json.read_text(), str(as_json))


def load_topology_data(path: Path) -> object:
    import yaml

    return yaml.safe_load(path.read_text())


BAD = {
    "malformed": "clusters:\n  - name: a\n   podCIDR: x\n",
    "written": "clusters:\n  - name: a\n    podCIDR: off\n",  # quoted as written: off
    "duplicate": "clusters: []\nclusters: []\n",
    "recursive": "a: &x [*x]\n",
    "laughs": "a: &a [1,1,1,1,1,1,1,1,1,1]\n"
    + "".join(
        f"{c}: &{c} [{','.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    + "clusters: *h\n",
    "not a mapping": "- 1\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_the_same_error_as_from_the_text(tmp_path: Path, case: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(BAD[case])
    streamed, whole = both(path)
    assert streamed == whole
    assert str(path) in streamed


def test_a_character_cut_between_two_reads(tmp_path: Path) -> None:
    """The parser asks for pieces: a two-byte character across two pieces is still read."""
    text = (EXAMPLES / "seed.yaml").read_text()
    padded = "# " + "é" * 40_000 + "\n" + text  # past the first 64 KiB read, and odd
    path = tmp_path / "t.yaml"
    path.write_text(padded)
    assert read_topology(path) == load_topology(text, str(path))


def test_bytes_that_are_not_utf8_are_named_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"# " + b"x" * 100_000 + b"\xff\n" + b"clusters: []\n")
    streamed, whole = both(path)
    assert streamed == whole == f"{path}: not UTF-8 text (invalid start byte at byte 100002)"


def test_no_more_than_the_limit_is_read(tmp_path: Path, limit: None) -> None:
    path = tmp_path / "t.yaml"
    path.write_text((EXAMPLES / "seed.yaml").read_text())
    size = path.stat().st_size
    settings.set_max_input_bytes(size - 1)
    streamed, whole = both(path)
    assert streamed == whole
    assert "the input limit (--max-input-size or PEERWALL_MAX_INPUT_BYTES" in streamed
    settings.set_max_input_bytes(size)
    assert read_topology(path) == load_topology(path.read_text(), str(path))


def test_yaml_is_parsed_as_it_is_read(tmp_path: Path) -> None:
    """Malformed YAML at the top of a file whose end is not even text: the parser stops at the
    error without reading the end (reading the whole text first reports the bytes instead)."""
    path = tmp_path / "t.yaml"
    path.write_bytes(b"clusters:\n  a: b: c\n" + b"#" * 2_000_000 + b"\xff\n")
    streamed, whole = both(path)
    assert "malformed YAML" in streamed and "line 2" in streamed, streamed
    assert "not UTF-8 text" in whole


def test_a_control_character_is_placed_as_from_the_text(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("# " + "x" * 70_000 + "\nclusters:\n  - name: \x01a\n")
    streamed, whole = both(path)
    assert streamed == whole
    assert "line 3" in streamed and "U+0001" in streamed, streamed
