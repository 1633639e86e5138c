"""Stateful enforcement: replies flow back, and established flows survive a ruleset replace."""

from __future__ import annotations

import pytest

from hostile import connect, echo_server, roundtrip
from labkit import LabUp, seed_topology, switch
from peerwall.compile.build import build
from peerwall.dataplane.apply import sync
from peerwall.dataplane.nft import LibNft
from peerwall.lab.build import desired_state
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode
from support import REFERENCE

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


@pytest.fixture(scope="module")
def seed_lab(module_lab_up: LabUp) -> LabPlan:
    """One seed lab in segregation for both tests (tests/conftest.py's SHARED_MODULES runs them
    on one xdist worker): the first only connects; the second replaces both tables with what
    they already hold and switches the mode there and back, so each finds segregation enforced
    as built, whatever their order."""
    text = (REFERENCE / "seed-topology.yaml").read_text()
    return module_lab_up(seed_topology(text), text, SEG)


def test_p1_reaches_p4_but_p4_cannot_open_to_p1(seed_lab: LabPlan) -> None:
    plan = seed_lab
    with echo_server(plan.pod_ns("P4")), echo_server(plan.pod_ns("P1")):
        with connect(plan, "P1", "P4") as sock:
            assert roundtrip(sock, b"ping") == b"ping"  # the reply came back through C1
        with pytest.raises(TimeoutError):
            connect(plan, "P4", "P1").close()


def test_established_flow_survives_ruleset_replace(seed_lab: LabPlan) -> None:
    plan = seed_lab
    topology = plan.topology
    with echo_server(plan.pod_ns("P4")), connect(plan, "P1", "P4") as sock:
        assert roundtrip(sock, b"one") == b"one"
        # Full replace of both gateways' tables (delete + re-create in one transaction) ...
        for c in topology.clusters:
            with LibNft(plan.gateway_ns(c.name)) as nft:
                outcome = sync(nft, build(desired_state(plan, c.name, SEG)), force_full=True)
                assert outcome.full
        assert roundtrip(sock, b"two") == b"two"
        # ... and mode switches both ways, element by element.
        switch(plan, SecurityMode.FULL_POD_TO_POD)
        switch(plan, SEG)
        assert roundtrip(sock, b"three") == b"three"
        # New connections still follow the rules in force.
        with echo_server(plan.pod_ns("P1")), pytest.raises(TimeoutError):
            connect(plan, "P4", "P1").close()
