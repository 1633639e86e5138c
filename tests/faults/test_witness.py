"""The background witness can fail: a test of the fault suite's own prober. With the agent
frozen and the table deleted outside any window, the prober must see denied cells pass; with a
table of an intruder that resets the allowed flows, it must see them cut. Inside ``window()``
the same opening is allowed."""

from __future__ import annotations

import time

import pytest
from faultkit import GATEWAY, SEG, Watch, three_clusters, until

from hostile import nft
from labkit import LabUp, frozen_agent

pytestmark = pytest.mark.lab


def test_the_witness_sees_a_denied_cell_pass_and_a_flow_cut(lab_up: LabUp) -> None:
    plan = three_clusters(lab_up, SEG, agent_resync_interval=3600)
    gw = plan.gateway_ns(GATEWAY)
    with Watch(plan, SEG) as allowed:  # the same opening inside the window: no failure
        # The window lasts until the table is back: the agent repairs it some milliseconds
        # after it is thawed, and a round of probes may leave in between.
        with allowed.window():
            with frozen_agent(plan, GATEWAY):
                nft(gw, "delete", "table", "inet", "peerwall")
                until(lambda: bool(allowed.opened) or allowed.rounds > 3)
            until(lambda: bool(nft(gw, "list", "tables").count("peerwall")))
        time.sleep(0.6)
    allowed.check()
    with Watch(plan, SEG) as watch, frozen_agent(plan, GATEWAY):
        nft(gw, "delete", "table", "inet", "peerwall")
        until(lambda: len(watch.opened) > 0)
        # An intruder resets every connection to the echo port: the allowed flows are cut.
        nft(gw, "add", "table", "inet", "pw-cut")
        nft(
            gw, "add", "chain", "inet", "pw-cut", "f", "{ type filter hook forward priority -400; }"
        )
        nft(
            gw,
            "add",
            "rule",
            "inet",
            "pw-cut",
            "f",
            "tcp",
            "dport",
            "9100",
            "reject",
            "with",
            "tcp",
            "reset",
        )
        until(lambda: len(watch.lost) == len(watch.flows))
    with pytest.raises(AssertionError, match="denied cells passed"):
        watch.check()
    assert {(s, d) for _, s, d in watch.opened} <= watch.denied(SEG)
    nft(gw, "delete", "table", "inet", "pw-cut")
