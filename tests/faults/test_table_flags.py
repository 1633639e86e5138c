"""A table no one can silently disable (issue 18.2).

``flags dormant`` unhooks every chain of ``inet peerwall`` (filter and NAT), and libnftables 1.0.6
prints any table with flags as JSON through a use-after-free (the agent once aborted on it: it now
reads flags over netlink, ``errors.FlaggedTable``). The agent reads the flags back, calls them drift and
replaces the table; a table it cannot read is drift too, never a crash; and when another process
holds the table (``flags owner``: nobody else may change or delete it), the agent fails the
gateway closed with a guard table of its own, says so in a metric, its log, /status and
``lab status``, and takes the table back once it is free.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from faultkit import (
    GATEWAY,
    FaultRecord,
    Watch,
    agent_http,
    agent_status,
    allowed_flow,
    denied_passes,
    echoes,
    metric,
    three_clusters,
    until,
)

from hostile import nft, owned_table
from labkit import LabUp, frozen_agent, repair
from peerwall.dataplane.drift import GUARD_UP, TABLE_FLAGS
from peerwall.lab import agents
from peerwall.lab import build as labs
from peerwall.model import SecurityMode
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def kinds(plan: object) -> list[str]:
    return [d.kind for d in labs.gateway_drift(plan, SEG)[GATEWAY]]  # type: ignore[arg-type]


def test_a_dormant_table_is_drift_and_is_repaired(lab_up: LabUp, fault: FaultRecord) -> None:
    """`nft add table inet peerwall { flags dormant; }` on a gateway"""
    # No periodic read-back: the repair is the one the test asks for.
    plan = three_clusters(lab_up, agent_resync_interval=3600)
    gw = plan.gateway_ns(GATEWAY)
    with Watch(plan, SEG) as watch:
        flow = allowed_flow(plan)
        with flow:
            assert not denied_passes(plan)
            with watch.window():  # the intruder's edit opens the gateway until the repair
                # Frozen, the agent cannot repair on nftables' notification before the control
                # has seen the gateway open; it repairs when it runs again, or when asked.
                with frozen_agent(plan, GATEWAY):
                    nft(gw, "add", "table", "inet", "peerwall", "{ flags dormant; }")
                    assert denied_passes(plan), "control: a dormant table enforces nothing"
                    assert TABLE_FLAGS in kinds(plan), "lab status must not say 'in sync'"
                    started = time.monotonic()
                repair(plan)
                fault.recovered(time.monotonic() - started)
            assert "flags" not in nft(gw, "list", "table", "inet", "peerwall").splitlines()[1]
            assert kinds(plan) == []
            assert not denied_passes(plan)
            assert echoes(flow, b"after"), "the allowed established flow was cut"
            assert agent_status(plan)["repairs"] == 1
            time.sleep(0.6)  # a probe round after the repair
    watch.check(fault)


def test_a_table_held_by_another_process_fails_the_gateway_closed_then_is_taken_back(
    lab_up: LabUp, fault: FaultRecord
) -> None:
    """an intruder holds an empty `inet peerwall` with `flags owner`"""
    plan = three_clusters(lab_up, agent_resync_interval=3600)
    gw = plan.gateway_ns(GATEWAY)
    settings = LabSettings(agent_resync_interval=3600)
    with Watch(plan, SEG) as watch:
        flow = allowed_flow(plan)
        with flow, contextlib.ExitStack() as intruder:
            with watch.window():  # open from the intruder's take-over until the guard is up
                # The agent repairs on nftables' notifications: frozen, it lets the intruder
                # take the table (else it puts its own back between the intruder's delete and
                # add).
                with frozen_agent(plan, GATEWAY, settings):
                    intruder.enter_context(owned_table(gw, take_over=True))
                    assert denied_passes(plan), "control: the intruder's table enforces nothing"
                started = time.monotonic()
                repair(plan)  # the agent reads back what it cannot read, nor replace
                fault.recovered(time.monotonic() - started)
            pid = agent_status(plan)["pid"]
            assert agents.running(plan, settings, GATEWAY), "the agent died"
            assert not denied_passes(plan), "the guard must fail the gateway closed"
            assert echoes(flow, b"guarded"), "the allowed established flow was cut"
            assert agent_status(plan)["guard"]
            assert GUARD_UP in kinds(plan)
            text = agent_http(plan, "/metrics")[1]
            assert metric(text, "peerwall_fail_closed_guard") == 1
            assert agent_http(plan, "/readyz")[0] == 503
            with open(os.path.join(settings.state_dir, plan.name, "agents", "C1.log")) as f:
                log = f.read()
            assert "drift: table-flags table inet peerwall: flags owner, expected none" in log
            assert "fail-closed guard table inet peerwall-guard installed" in log
            # A restarted agent starts guarded, instead of crash-looping on the unreadable table.
            agents.stop(plan, settings, [GATEWAY])
            agents.start(plan, settings, [GATEWAY])
            until(
                lambda: bool(agent_status(plan).get("guard")) and agent_status(plan)["pid"] != pid
            )
            assert agents.running(plan, settings, GATEWAY)
            assert not denied_passes(plan)
        # The intruder is gone, and its table with it: the next check writes ours, drops the guard.
        repair(plan)
        assert kinds(plan) == []
        assert agent_status(plan)["guard"] is None
        assert metric(agent_http(plan, "/metrics")[1], "peerwall_fail_closed_guard") == 0
        assert not denied_passes(plan)
        time.sleep(0.6)  # a probe round with the table back
    watch.check(fault)
