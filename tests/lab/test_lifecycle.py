"""lab up / down: idempotent, crash-safe, and the root namespace is never touched."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labkit import frozen_agent, seed_topology
from peerwall.cli.main import app
from peerwall.compile.names import peer_cidrs_set
from peerwall.errors import LabError, NftError
from peerwall.lab import build as labs
from peerwall.lab import rewire
from peerwall.lab.netns import list_namespaces
from peerwall.lab.plan import LabPlan
from peerwall.lab.site import LabSite
from peerwall.lab.state import lab_folder, load_state
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.probe.runner import PORT_HIGH, PORT_LOW
from peerwall.settings import LabSettings

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD


def root_state() -> tuple[str, str, str]:
    def run(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    return run("ip", "-o", "link"), run("ip", "route"), run("nft", "list", "ruleset")


def test_up_twice_then_down_leaves_nothing_and_root_is_untouched(
    tmp_path: Path, seed_text: str
) -> None:
    settings = LabSettings(state_dir=str(tmp_path))
    before = root_state()
    topology = seed_topology(seed_text)
    try:
        plan = labs.up("tlife", topology, seed_text, "seed", FULL, settings)
        assert list_namespaces(plan.prefix) == sorted(plan.namespaces())
        assert root_state() == before
        # A second `up` of the same name replaces the first, whatever state it was in.
        labs.up("tlife", topology, seed_text, "seed", FULL, settings)
        assert load_state("tlife", settings).mode == FULL.value
    finally:
        gone = labs.down("tlife", settings)
    assert len(gone) == len(plan.namespaces())
    assert list_namespaces("pw-tlife-") == []
    assert not os.path.exists(lab_folder("tlife", settings))
    assert root_state() == before


def test_a_crashed_lab_is_cleaned_by_the_next_up_or_down(tmp_path: Path, seed_text: str) -> None:
    settings = LabSettings(state_dir=str(tmp_path))
    # What a killed `lab up` leaves: some namespaces, no state file.
    subprocess.run(["ip", "netns", "add", "pw-tcrash-gw-C1"], check=True)
    subprocess.run(["ip", "netns", "add", "pw-tcrash-pod-P9"], check=True)
    try:
        with pytest.raises(LabError, match="no lab named 'tcrash' is up"):
            load_state("tcrash", settings)
        plan = labs.up("tcrash", seed_topology(seed_text), seed_text, "seed", FULL, settings)
        assert "pw-tcrash-pod-P9" not in list_namespaces(plan.prefix)
    finally:
        labs.down("tcrash", settings)
    assert list_namespaces("pw-tcrash-") == []


def test_a_failed_up_removes_what_it_built(
    tmp_path: Path, seed_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = LabSettings(state_dir=str(tmp_path))
    # Half-way through, after every namespace and link exists, the kernel refuses a ruleset.
    monkeypatch.setattr(
        rewire, "kube_script", lambda *_: "add rule ip pw-kube prerouting jump nowhere\n"
    )
    with pytest.raises(NftError):
        labs.up("tfail", seed_topology(seed_text), seed_text, "seed", FULL, settings)
    assert list_namespaces("pw-tfail-") == []
    assert not os.path.exists(lab_folder("tfail", settings))


def test_lab_names_are_checked() -> None:
    with pytest.raises(LabError, match="lab name"):
        labs.down("Bad Name!")


def test_cidrs_that_clash_with_the_lab_s_own_ranges_are_refused() -> None:
    topology = topology_from_data(
        {
            "clusters": [
                {"name": "C1", "podCIDR": "10.1.0.0/16"},
                {"name": "C2", "podCIDR": "192.0.2.0/24"},
            ]
        }
    )
    with pytest.raises(
        LabError, match=r"clusters\[1\]\.podCIDR: 192\.0\.2\.0/24 overlaps 192\.0\.2\.0/24"
    ):
        LabPlan("x", topology)


def test_lab_up_from_standard_input_records_the_topology(seed_text: str) -> None:
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["lab", "up", "-f", "-", "-n", "tstdin"], input=seed_text)
        assert up.exit_code == 0, up.output
        state = load_state("tstdin")
        assert state.source == "<stdin>"
        assert state.topology_text(LabSettings()) == seed_text
    finally:
        labs.down("tstdin")


def test_gateway_drift_names_a_hand_made_change_and_a_sync_repairs_it(
    tmp_path: Path, seed_text: str
) -> None:
    settings = LabSettings(state_dir=str(tmp_path))
    try:
        seg = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
        plan = labs.up("tdrift", seed_topology(seed_text), seed_text, "seed", seg, settings)
        assert labs.gateway_drift(plan, seg) == {"C1": [], "C2": []}
        # C1's agent stopped meanwhile: it would repair the change on its notification at once.
        with frozen_agent(plan, "C1", settings):
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    plan.gateway_ns("C1"),
                    "nft",
                    "add",
                    "element",
                    "inet",
                    "peerwall",
                    peer_cidrs_set("C2"),
                    "{ 10.1.2.0/24 }",
                ],
                check=True,
            )
            found = labs.gateway_drift(plan, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
        assert [str(d) for d in found["C1"]] == [
            f"elements-extra set {peer_cidrs_set('C2')}: 10.1.2.0/24"
        ]
        assert found["C2"] == []
        labs.repair("tdrift", settings)
        assert labs.gateway_drift(plan, seg) == {"C1": [], "C2": []}
    finally:
        labs.down("tdrift", settings)


CLASH = """
clusters:
  - {name: c0, podCIDR: 10.1.0.0/16}
  - {name: c5, podCIDR: 10.2.0.0/16}
  - {name: c92, podCIDR: 10.3.0.0/16}
peerings:
  - {consumer: c0, provider: c5}
  - {consumer: c92, provider: c0}
"""


def test_the_simple_shape_refuses_peers_its_one_gateway_could_not_tell_apart(
    tmp_path: Path,
) -> None:
    """c5 and c92 share a 15-bit connection-mark id: a valid topology (each has a gateway of its
    own on Liqo), but the simple shape would hold both in c0's one gateway. Refused by name before
    anything is built (`lab up`; `lab apply` runs the same check)."""
    settings = LabSettings(state_dir=str(tmp_path))
    name = f"t{secrets.token_hex(3)}"
    topology = load_topology(CLASH, "clash.yaml")  # valid as a topology
    with pytest.raises(
        LabError, match=r"c0's gateway: c(5|92) and c(92|5) share the connection-mark"
    ):
        labs.up(name, topology, CLASH, "clash.yaml", FULL, settings)
    assert list_namespaces(f"pw-{name}-") == []
    assert not os.path.exists(lab_folder(name, settings))


def test_the_source_port_window_without_a_file_rotates_and_wraps_once(seed_text: str) -> None:
    # Without a window file (a plan probed with no lab folder) one LabSite still rotates: a
    # window that would pass PORT_HIGH starts again at PORT_LOW, and the next one follows it
    # (it used to stay at PORT_LOW for every later run, reusing the same 5-tuples).
    site = LabSite(LabPlan("x", seed_topology(seed_text)), LabSettings(), None)
    size = (PORT_HIGH - PORT_LOW) // 3 + 1
    bases = [site.port_window(size) for _ in range(5)]
    assert bases == [PORT_LOW, PORT_LOW + size, PORT_LOW, PORT_LOW + size, PORT_LOW]
    assert all(b + size <= PORT_HIGH for b in bases)
