"""Observed == computed, by real packets through real nftables, for the seed and generated labs."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import yaml

from gen import generate
from labkit import LabUp, seed_topology, switch, topology_of
from peerwall.lab.probing import observe_lab as observe
from peerwall.model import SecurityMode
from peerwall.policy import Verdict, expect
from support import REFERENCE

pytestmark = pytest.mark.lab


def test_seed_tables_observed_by_probes_equal_the_reference(lab_up: LabUp, seed_text: str) -> None:
    reference = json.loads((REFERENCE / "seed-matrices.json").read_text())
    topology = seed_topology(seed_text)
    plan = lab_up(topology, seed_text, SecurityMode.FULL_POD_TO_POD)
    for mode in SecurityMode:
        switch(plan, mode)
        observed = observe(plan, mode.value)
        assert observed.table.to_dict()["matrix"] == reference[mode.value], mode.value
    # The yellow cells of the seed are exactly the cells whose observed verdict changed.
    switch(plan, SecurityMode.FULL_POD_TO_POD)
    baseline = observe(plan, SecurityMode.FULL_POD_TO_POD.value).table
    switch(plan, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    segregated = observe(plan, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value).table
    assert sorted(segregated.differing(baseline)) == sorted(map(tuple, reference["highlighted"]))


@pytest.mark.parametrize(("seed", "clusters"), [(1, 3), (2, 4), (3, 3), (4, 4)])
def test_generated_topologies_observed_equal_computed(
    lab_up: LabUp, seed: int, clusters: int
) -> None:
    topology, text = topology_of(generate(seed, clusters))
    plan = lab_up(topology, text, SecurityMode.FULL_POD_TO_POD)
    seen: set[Verdict] = set()
    for mode in SecurityMode:
        switch(plan, mode)
        expected = expect(topology, mode).table
        observed = observe(plan, mode.value)
        wrong = expected.compare(observed.table)
        details = [
            f"{m.source}->{m.destination}: expected {m.expected}, observed {m.observed}: "
            f"{observed.cells[(m.source, m.destination)].detail()}"
            for m in wrong.mismatches()
        ]
        assert not wrong, "\n".join(details)
        seen |= {v for _, _, v in observed.table.cells()}
    # The generated topologies exercise every verdict, so agreement is not trivially all-YES.
    assert {Verdict.YES, Verdict.NO, Verdict.PARTIAL} <= seen


def test_reflection_policy_observed_equals_computed(lab_up: LabUp) -> None:
    """Issue 17.3 in the simple shape (agents on the file source): ``examples/reflection.yaml``
    (AllowList with an allowed and an unmarked service, DenyList with a skipped one) observed by
    probes equals the computed table in both modes, and the cells the reflection fields change
    against the same file without them are observed changed: the field is not ignored."""
    data = yaml.safe_load(
        resources.files("peerwall").joinpath("examples/reflection.yaml").read_text()
    )
    topology, text = topology_of(data)
    for item in (*data["peerings"], *data["services"]):
        item.pop("reflection", None)
    plain, _ = topology_of(data)
    plan = lab_up(topology, text, SecurityMode.FULL_POD_TO_POD)
    for mode in SecurityMode:
        switch(plan, mode)
        expected = expect(topology, mode).table
        observed = observe(plan, mode.value).table
        assert not expected.compare(observed), mode
        changed = expected.differing(expect(plain, mode).table)
        assert ("P4", "S4") in changed and ("P1", "S6") in changed
        assert observed.differing(expect(plain, mode).table) == changed
