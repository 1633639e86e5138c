"""Small holes (issue 14, item 8): names that share a hash, peers that share a tunnel, names
with a newline, state files in folders others own, lock files left behind."""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kubeapi import liqo_objects as L
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import LiqoJoin
from peerwall.cli.main import app
from peerwall.compile.names import clashes, hash8, tunnel_ifname
from peerwall.errors import LabError, TopologyInvalid
from peerwall.lab import build as labs
from peerwall.lab import state as labstate
from peerwall.lab.plan import check_lab_name
from peerwall.model import load_topology
from peerwall.settings import KubeSettings, LabSettings

CLASH = ("c17439", "c24164")
"""Two cluster names whose SHA-256 starts with the same 8 hex digits."""


def test_the_two_names_do_share_their_hash() -> None:
    assert hash8(CLASH[0]) == hash8(CLASH[1])


# --- names that share a hash ---------------------------------------------------------------------


def clash_topology() -> str:
    a, b = CLASH
    return (
        f"clusters:\n  - {{name: {a}, podCIDR: 10.0.0.0/16}}\n"
        f"  - {{name: {b}, podCIDR: 10.1.0.0/16}}\n"
        f"  - {{name: c3, podCIDR: 10.2.0.0/16}}\n"
        f"peerings:\n  - {{consumer: c3, provider: {a}}}\n  - {{consumer: c3, provider: {b}}}\n"
    )


def test_cluster_names_with_one_hash_are_refused_naming_both() -> None:
    with pytest.raises(TopologyInvalid) as e:
        load_topology(clash_topology(), "clash.yaml")
    message = str(e.value)
    assert "clusters[1].name" in message and "clusters[0].name" in message
    assert f"same 8-hex hash {hash8(CLASH[0])}" in message and "rename one" in message


def test_lab_up_refuses_them_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERWALL_STATE_DIR", str(tmp_path / "labs"))
    f = tmp_path / "clash.yaml"
    f.write_text(clash_topology())
    name = f"t{secrets.token_hex(3)}"
    out = CliRunner().invoke(app, ["lab", "up", "-f", str(f), "-n", name])
    assert out.exit_code == 2
    assert "same 8-hex hash" in out.stderr
    assert "Traceback" not in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)
    assert not (tmp_path / "labs" / name).exists()


def test_clashes_names_peers_on_one_tunnel_and_peers_with_one_hash() -> None:
    a, b = CLASH
    found = clashes([("p1", "liqo-tunnel"), ("p2", "liqo-tunnel"), (a, "t-a"), (b, "t-b")])
    assert set(found) == {"p1", "p2", a, b}
    assert "share tunnel liqo-tunnel" in found["p1"]
    assert f"hash {hash8(a)}" in found[b]
    assert clashes([("p1", "t1"), ("p2", "t2")]) == {}


# --- the Kubernetes source: peers on one tunnel, odd cluster IDs --------------------------------


def kube_join(peers: list[str], **settings: object) -> LiqoJoin:
    m = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings(**settings))  # type: ignore[arg-type]
    objs = [L.pod_cidr_network("10.10.0.0/16"), L.api_server_ip("10.96.0.1", "10.70.0.1")]
    for i, p in enumerate(peers):
        objs += [L.foreign_cluster(p), L.configuration(p, [f"10.{20 + i}.0.0/16"], None)]
    for obj in objs:
        kind = next(
            k
            for k in liqo.ALL_KINDS
            if k.kind == obj["kind"] and k.api_version == obj["apiVersion"]
        )
        m.apply(kind, obj)
    return m


def test_without_peer_two_peers_on_one_tunnel_are_refused_not_last_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="peerwall")
    m = kube_join(["c2", "c3"])  # no --peer: every peer on liqo-tunnel
    assert m.desired.peers == ()  # the tunnel stays unknown: it fails closed
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 2, refused  # once per peer, not once per event
    assert all("share tunnel liqo-tunnel" in r and "--peer" in r for r in refused)
    # With --peer, the agent serves that one peer on that tunnel.
    one = kube_join(["c2", "c3"], peer="c3")
    assert one.desired.peers == ("c3",)
    # With a tunnel per peer (the lab's shape), both are enforced.
    both = kube_join(["c2", "c3"], tunnel=tunnel_ifname)
    assert set(both.desired.peers) == {"c2", "c3"}


def test_a_peer_that_goes_away_lifts_the_refusal() -> None:
    m = kube_join(["c2", "c3"])
    gone = L.foreign_cluster("c3")
    m.remove(liqo.FOREIGN_CLUSTER, gone)
    assert m.desired.peers == ("c2",)


def test_peer_ids_with_one_hash_are_refused_even_on_their_own_tunnels() -> None:
    m = kube_join(list(CLASH), tunnel=tunnel_ifname)
    assert m.desired.peers == ()


@pytest.mark.parametrize(
    "cid", ["c2\n", "c2\nflush ruleset", "C2", "-c2", "c" * 64, "c2 ", "c2;", 42, ["c2"]]
)
def test_a_cluster_id_that_is_not_one_never_names_a_peer(
    cid: object, caplog: pytest.LogCaptureFixture
) -> None:
    m = kube_join([])
    obj = L.foreign_cluster("c2")
    obj["spec"]["clusterID"] = cid
    m.apply(liqo.FOREIGN_CLUSTER, obj)
    m.apply(liqo.CONFIGURATION, L.configuration("c2", ["10.20.0.0/16"], None))
    assert m.desired.peers == ()
    if isinstance(cid, str):
        assert f"clusterID {cid!r} is not a valid cluster ID" in caplog.text
    else:  # not even a string: refused by its shape
        assert f"spec.clusterID is {type(cid).__name__}, expected a string" in caplog.text


# --- names with a newline -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abc\n", "\nabc", "ab\nc", "abc\r\n", "abc\x00", " abc"])
def test_lab_names_are_matched_whole(name: str) -> None:
    with pytest.raises(LabError, match="use 1 to 12 lowercase letters or digits"):
        check_lab_name(name)
    assert check_lab_name("abc") == "abc"


@pytest.mark.parametrize("field", ["clusters", "pods", "services", "namespaces"])
def test_topology_names_with_a_newline_are_refused(field: str) -> None:
    docs = {
        "clusters": 'clusters:\n  - {name: "C1\\n", podCIDR: 10.0.0.0/16}\n',
        "pods": "clusters:\n  - {name: C1, podCIDR: 10.0.0.0/16}\n"
        'pods:\n  - {name: "P1\\n", cluster: C1}\n',
        "services": "clusters:\n  - {name: C1, podCIDR: 10.0.0.0/16}\n"
        'services:\n  - {name: "S1\\n", cluster: C1}\n',
        "namespaces": "clusters:\n  - {name: C1, podCIDR: 10.0.0.0/16}\n"
        'namespaces:\n  - {name: "ns\\n", cluster: C1}\n',
    }
    with pytest.raises(TopologyInvalid, match=rf"{field}\[0\]\.name"):
        load_topology(docs[field], "t.yaml")


def test_the_cli_refuses_a_lab_name_with_a_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEERWALL_STATE_DIR", str(tmp_path / "labs"))
    out = CliRunner().invoke(app, ["lab", "down", "-n", "tabc\n"])
    assert out.exit_code != 0
    assert "use 1 to 12 lowercase letters or digits" in out.output
    assert "Traceback" not in out.output


# --- state folders and files ----------------------------------------------------------------------


def a_state(tmp_path: Path) -> tuple[labstate.LabState, LabSettings]:
    return labstate.LabState(f"t{secrets.token_hex(3)}", "test", "FullPodToPod"), LabSettings(
        state_dir=str(tmp_path / "labs")
    )


@pytest.mark.lab  # chown needs root
def test_a_state_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    state, settings = a_state(tmp_path)
    os.makedirs(settings.state_dir)
    os.chown(settings.state_dir, 4242, 4242)
    with pytest.raises(LabError, match="owned by uid 4242, not root"):
        labstate.save_state(state, settings, "clusters: []\n")
    with pytest.raises(LabError, match="owned by uid 4242"):
        labstate.load_state(state.name, settings)
    assert os.listdir(settings.state_dir) == []


def test_a_state_folder_writable_by_others_or_a_symlink_is_refused(tmp_path: Path) -> None:
    state, settings = a_state(tmp_path)
    os.makedirs(settings.state_dir)
    os.chmod(settings.state_dir, 0o777)
    with pytest.raises(LabError, match="writable by others"):
        labstate.save_state(state, settings)
    os.chmod(settings.state_dir, 0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    with pytest.raises(LabError, match="not a directory"):
        labstate.save_state(state, LabSettings(state_dir=str(link)))
    assert list(elsewhere.iterdir()) == []


def test_state_files_are_written_and_read_without_following_links(tmp_path: Path) -> None:
    state, settings = a_state(tmp_path)
    labstate.save_state(state, settings, "clusters: []\n")
    folder = Path(state.folder(settings))
    assert stat.S_IMODE(os.stat(folder).st_mode) & 0o022 == 0
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # A link planted where the old code put its temporary file, and in place of the state.
    (folder / "state.json.tmp").symlink_to(victim)
    labstate.save_state(state, settings)
    assert victim.read_text() == "precious\n"
    assert json.loads((folder / "state.json").read_text())["name"] == state.name
    os.unlink(folder / "state.json")
    (folder / "state.json").symlink_to(victim)
    with pytest.raises(LabError, match="unreadable"):
        labstate.load_state(state.name, settings)
    labstate.remove_state(state.name, settings)


# --- lock files -----------------------------------------------------------------------------------


def lock_path(name: str) -> str:
    return os.path.join(labstate.OWNERS, f"{name}.lock")


@pytest.mark.lab  # /run/peerwall/owners is root's
def test_the_lock_file_goes_away_with_the_lab(tmp_path: Path) -> None:
    state, settings = a_state(tmp_path)
    with labstate.locked(state.name, settings):
        assert os.path.exists(lock_path(state.name))
        labstate.save_state(state, settings)
    assert os.path.exists(lock_path(state.name)), "the lab is up: its lock stays"
    with labstate.locked(state.name, settings):
        labstate.remove_state(state.name, settings)
    assert not os.path.exists(lock_path(state.name))
    assert not os.path.exists(os.path.join(labstate.OWNERS, state.name))


@pytest.mark.lab
def test_lab_down_of_a_lab_that_is_not_up_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEERWALL_STATE_DIR", str(tmp_path / "labs"))
    name = f"t{secrets.token_hex(3)}"
    assert labs.down(name) == []
    assert not os.path.exists(lock_path(name))
