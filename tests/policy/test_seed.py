"""The computed tables reproduce the seed's two connectivity tables exactly (acceptance data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import Verdict, expect
from peerwall.policy.tablejson import write_json
from support import REFERENCE, REFERENCE_COPY, SHARED_REFERENCE

MODES = [SecurityMode.FULL_POD_TO_POD, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION]


def reference(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(
            f"acceptance data missing: {path} not found (the seed reference files live in "
            f"{SHARED_REFERENCE}, next to the repository, or in {REFERENCE_COPY})"
        )
    return path


@pytest.fixture(scope="module")
def seed() -> Topology:
    return load_topology(reference("seed-topology.yaml").read_text(), "seed-topology.yaml")


@pytest.fixture(scope="module")
def matrices() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reference("seed-matrices.json").read_text())
    return data


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_seed_matrix_equals_the_reference_cell_for_cell(seed, matrices, mode):
    got = expect(seed, mode).table.to_dict()
    want = matrices[mode.value]
    assert got["securityMode"] == mode.value
    mismatches = [
        (s, d, got["matrix"].get(s, {}).get(d), v)
        for s, row in want.items()
        for d, v in row.items()
        if got["matrix"].get(s, {}).get(d) != v
    ]
    assert mismatches == [], "(source, destination, computed, reference)"
    assert got["matrix"] == want


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_seed_rows_and_columns_follow_file_order(seed, matrices, mode):
    got = expect(seed, mode).table.to_dict()
    want = matrices[mode.value]
    assert got["sources"] == ["P1", "P2", "P3", "P4", "P5"]
    assert got["destinations"] == ["P1", "P2", "P3", "P4", "P5", "S1", "S2", "S3", "I1", "I2"]
    # The rows and, inside each row, the columns come in the reference's order too.
    assert list(got["matrix"]) == list(want)
    for source, row in want.items():
        assert list(got["matrix"][source]) == list(row), source
        assert source not in got["matrix"][source]  # the diagonal is left out


def test_seed_highlighted_cells_are_those_differing_from_full_pod_to_pod(seed, matrices):
    baseline = expect(seed, force=SecurityMode.FULL_POD_TO_POD).table
    segregated = expect(seed, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    highlighted = {tuple(cell) for cell in matrices["highlighted"]}
    assert segregated.differing(baseline) == highlighted
    # Every highlighted cell is a connection segregation closes.
    for source, destination in highlighted:
        assert baseline[source, destination] is Verdict.YES
        assert segregated[source, destination] is Verdict.NO


def test_seed_json_output_is_the_reference_shape(seed, matrices, tmp_path):
    out = tmp_path / "seg.json"
    table = expect(seed, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    with out.open("w") as f:
        write_json(table, f)
    data = json.loads(out.read_text())
    assert list(data) == ["securityMode", "sources", "destinations", "matrix"]
    assert data["securityMode"] == "IntraClusterTrafficSegregation"
    assert data["matrix"] == matrices["IntraClusterTrafficSegregation"]


@pytest.mark.parametrize("name", ["seed-topology.yaml", "seed-matrices.json"])
def test_the_repositorys_copy_is_the_seeds_reference(name: str) -> None:
    # The copy only stands in for a clone made away from ../shared; where the authoritative
    # files are there (as in CI), the copy must not have drifted from them.
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"{SHARED_REFERENCE} is not beside this clone: the tests read {REFERENCE_COPY}")
    assert (REFERENCE_COPY / name).read_bytes() == (SHARED_REFERENCE / name).read_bytes()
