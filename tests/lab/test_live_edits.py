"""Live edits through `lab apply`: the lab rewires what changed, the agents converge with element or
per-peer transactions (never a whole-table replace), and the probed table equals the computed one
after every edit (issue 8's acceptance)."""

from __future__ import annotations

import copy
import random

import pytest
import yaml

from edits import MODES, Data, edited, three
from hostile import connect, echo_server, roundtrip
from labkit import LabUp
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.lab.probing import observe_lab
from peerwall.model import SecurityMode, Topology, topology_from_data
from peerwall.policy import expect
from peerwall.settings import LabSettings, ProbeSettings

pytestmark = pytest.mark.lab


def apply(name: str, data: Data) -> tuple[Topology, agents.Converged]:
    text = yaml.safe_dump(data, sort_keys=False)
    topology = topology_from_data(copy.deepcopy(data), "edited")
    _, converged = labs.apply(name, topology, text, "edited", LabSettings())
    return topology, converged


@pytest.mark.parametrize("seed", [11])
def test_thirty_and_more_live_edits_of_every_kind(lab_up: LabUp, seed: int) -> None:
    rnd = random.Random(seed)
    start = three()
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    plan = lab_up(topology_from_data(copy.deepcopy(start), "three"), yaml.safe_dump(start), mode)
    done: list[str] = []
    slowest = 0.0
    for what, _kind, data in edited(rnd, start):
        topology, converged = apply(plan.name, data)
        slowest = max(slowest, converged.seconds)
        new_plan = labs.LabPlan(plan.name, topology)
        observed = observe_lab(new_plan, mode.value, probe=ProbeSettings(timeout=0.5))
        wrong = expect(topology, mode).table.compare(observed.table)
        assert not wrong, (
            what,
            [
                (m, observed.cells[(m.source, m.destination)].detail())
                for m in list(wrong.mismatches())[:5]
            ],
        )
        done.append(what)
    kinds = {w.split()[0] for w in done}
    assert len(done) >= 30, done
    assert {
        "add",
        "remove",
        "relabel",
        "service",
        "offload",
        "stop",
        "peer",
        "unpeer",
        "peering",
        "cluster",
    } <= kinds, kinds
    assert any(w.startswith("add cluster") for w in done)
    # Every agent replaced its whole table once, at its start; every edit was elements or peers.
    settings = LabSettings()
    final = labs.LabPlan(plan.name, topology)
    for c in final.topology.clusters:
        status = agents.status(final, settings, c.name)
        assert status is not None and status["transactions"]["full"] == 1, (c.name, status)
        assert (
            status["transactions"]["elements"]
            + status["transactions"]["mode"]
            + status["transactions"]["peers"]
            > 0
        )
    print(f"{len(done)} edits; slowest convergence {slowest * 1000:.0f} ms")


def test_a_peering_mode_switched_50_times_resets_no_allowed_connection(lab_up: LabUp) -> None:
    data = three()
    plan = lab_up(
        topology_from_data(copy.deepcopy(data), "three"),
        yaml.safe_dump(data),
        SecurityMode.FULL_POD_TO_POD,
    )
    # C1 -> C3: web1 reaches web3 (offloaded by C1 into C3) and local3 reaches web1 (backend of
    # "web", reflected to C3) under both modes of the C1-C3 peering.
    with (
        echo_server(plan.pod_ns("web3")),
        echo_server(plan.pod_ns("web1")),
        connect(plan, "web1", "web3") as a,
        connect(plan, "local3", "web1") as b,
    ):
        for i in range(50):
            for p in data["peerings"]:
                if {p["consumer"], p["provider"]} == {"C1", "C3"}:
                    p["securityMode"] = MODES[i % 2]
            apply(plan.name, data)
            assert roundtrip(a, b"%d" % i) == b"%d" % i, f"switch {i}"
            assert roundtrip(b, b"%d" % i) == b"%d" % i, f"switch {i}"
