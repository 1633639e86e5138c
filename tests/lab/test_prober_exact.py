"""The prober is exact: no false alarms from other clusters' ClusterIPs, wide services, or stale
conntrack; ``--output json`` is the contract document and nothing else (issue 6).

Four clusters keep the default service CIDR (a service absent from a cluster must not be dialled
at another cluster's ClusterIP), one cluster's pods sit in the others' service CIDR, and services
have 0 to 200 backends. ``lab probe --output json`` must parse and equal ``matrix --output json``
cell for cell, in both modes.
"""

from __future__ import annotations

import json
import secrets

import pytest
import yaml
from typer.testing import CliRunner

from gen import generate_services
from peerwall.cli.main import app
from peerwall.lab import build as labs
from peerwall.lab.state import load_state
from peerwall.model import SecurityMode
from peerwall.settings import LabSettings

# 116,512 probes of 0.5 s per table, run beside the rest of the suite: an answer that the load
# made late is not a wrong cell, because the prober retries what met silence, with a fresh SYN,
# before it counts as blocked (peerwall.probe.netns_prober.run_probes, confirm).
pytestmark = pytest.mark.lab


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", **(env or {})})


@pytest.fixture(scope="module")
def big_lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One lab for the module's tests (tests/conftest.py gives them to one xdist worker): building
    it takes seconds of CPU, and every test here reads it through probes, ``lab set-mode`` only
    changing which of its two tables is enforced (each test probes against the lab's own mode).
    A later run on the same lab must still be exact: the conntrack entries of the earlier runs are
    there, which is one of the things this module checks."""
    tmp_path = tmp_path_factory.mktemp("big-lab")
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump(generate_services(7, big=200)))
    name = f"t{secrets.token_hex(3)}"
    env = {"PEERWALL_STATE_DIR": str(tmp_path / "labs")}
    try:
        up = invoke("lab", "up", "-f", str(path), "--name", name, env=env)
        assert up.exit_code == 0, up.output
        yield name, path, env
    finally:
        labs.down(name, LabSettings(state_dir=env["PEERWALL_STATE_DIR"]))


def test_probe_json_equals_matrix_json_in_both_modes(big_lab) -> None:  # type: ignore[no-untyped-def]
    name, path, env = big_lab
    for mode in SecurityMode:
        setting = f"networking.securityMode={mode.value}"
        switched = invoke("lab", "set-mode", "--set", setting, "--name", name, env=env)
        assert switched.exit_code == 0, switched.output
        probed = invoke("lab", "probe", "--name", name, "-o", "json", "--timeout", "0.5", env=env)
        observed = json.loads(probed.stdout)  # the contract document and nothing else
        computed = json.loads(
            invoke("matrix", "-f", str(path), "--set", setting, "-o", "json").stdout
        )
        wrong = [
            (s, d, computed["matrix"][s][d], observed["matrix"][s].get(d))
            for s in computed["matrix"]
            for d in computed["matrix"][s]
            if computed["matrix"][s][d] != observed["matrix"][s].get(d)
        ]
        assert observed == computed, (mode, wrong[:10], probed.stderr[-2000:])
        assert probed.exit_code == 0
        verdicts = {v for row in observed["matrix"].values() for v in row.values()}
        assert {"YES", "NO", "PARTIAL"} <= verdicts


def test_a_service_absent_from_the_source_cluster_is_not_dialled(big_lab) -> None:  # type: ignore[no-untyped-def]
    name, _path, env = big_lab
    settings = LabSettings(state_dir=env["PEERWALL_STATE_DIR"])
    topology = load_state(name, settings).topology(settings)
    k4_pod = next(p.name for p in topology.pods if p.physical == "K4")
    # empty2 lives in K2 only; in K4, 10.96.0.1 is k4svc's ClusterIP.
    from peerwall.verify.cells import cell_spec

    cell = cell_spec(topology, topology.pod_by_name[k4_pod], "empty2")
    assert cell.targets == () and cell.silent_service is None
    assert cell.note == "empty2 is not present in K4: its name does not resolve there"
    # ... and the probe's own output says so, without a wrong cell (past 60 destinations the
    # table is printed only when asked for). Only that pod's row is probed: in a run of this
    # module, the test above has probed the whole table of this lab in this same mode and
    # compared it cell for cell, so a third run of every cell would check nothing new; this
    # row is still a later run over the earlier runs' conntrack entries.
    probed = invoke(
        "lab", "probe", "--name", name, "--timeout", "0.5", "--force-table", "--from", k4_pod,
        env=env,
    )  # fmt: skip
    assert probed.exit_code == 0, probed.output[-2000:]
    assert "not dialled (NO without a probe" in probed.stdout
    (line,) = [x for x in probed.stdout.splitlines() if "not present in K4" in x]
    assert k4_pod in line and "empty2" in line.split(" -> ")[1], line
