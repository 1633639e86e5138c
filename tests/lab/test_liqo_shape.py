"""``peerwall lab up --shape liqo`` (issue 17 item 1): Liqo v1's shape, driven by real kubectl.

One lab of the seed (Liqo cluster IDs c1, c2; both pod CIDRs 10.244.0.0/16, so remapped) serves
the module. ``test_kubectl_edits_are_enforced_and_proved_by_lab_probe`` is the only test that
edits it, and checks the table before its edits itself, so the order of the tests does not
matter.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from liqokit import PROBE_ATTEMPTS, LiqoLab, dropped, edited, liqo_lab, until_dropped

from peerwall.lab.agents import SUPERVISOR, live_processes
from peerwall.lab.apiserver.layout import API_ADDRESS, KUBE_API_PORT, gateway_pod
from peerwall.lab.apiserver.liqo_objects import peering_security
from peerwall.lab.liqo import processes
from peerwall.lab.netns import list_namespaces
from peerwall.model import SecurityMode, load_topology

pytestmark = pytest.mark.lab
HERE = Path(__file__).parent
SEED = (HERE.parent / "agent" / "kube" / "seed-topology.yaml").read_text()
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiqoLab]:
    with liqo_lab(SEED, tmp_path_factory.mktemp("liqolab")) as lab:
        yield lab


def ip_json(ns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", "-n", ns, *args], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout or "[]"))


def agent_processes(folder: str) -> dict[int, list[bytes]]:
    """The lab's agent processes (not their supervisors), each with its command line; one gone
    since ``processes`` listed it (a killed agent, reaped meanwhile) is left out."""
    agents = set(processes(folder)["agents"])
    return {pid: argv for pid, argv in live_processes() if pid in agents and SUPERVISOR not in argv}


def test_the_gateway_pod_copy_is_the_charts() -> None:
    """The lab runs its agents with the chart's arguments and rights: the packaged copy
    (lab/apiserver/gateway_pod.yaml) is what ``helm template`` renders today."""
    from kubeapi.chart import chart_objects, rbac_objects

    objs = chart_objects()
    (template,) = [o for o in objs if o["kind"] == "WgGatewayServerTemplate"]
    pod = template["spec"]["template"]["spec"]["deployment"]["spec"]["template"]["spec"]
    (agent,) = [c for c in pod["containers"] if c["name"] == "peerwall"]
    container, rbac = gateway_pod()
    assert container["args"] == agent["args"]
    assert container["env"] == agent["env"]
    assert rbac == rbac_objects(objs)


def test_liqos_shape_a_gateway_per_peer_with_its_tunnel_remapping_api_servers_and_agents(
    lab: LiqoLab,
) -> None:
    names = list_namespaces(f"pw-{lab.name}-")
    gw1, gw2 = lab.netns("lgw-c1-c2"), lab.netns("lgw-c2-c1")
    assert gw1 in names and gw2 in names
    # Each gateway: eth0 to its node, liqo-tunnel to the peer's gateway (the provider serves).
    for ns, mine in ((gw2, "169.254.18.1"), (gw1, "169.254.18.2")):
        (link,) = ip_json(ns, "-4", "addr", "show", "dev", "liqo-tunnel")
        assert [a["local"] for a in link["addr_info"]] == [mine]  # type: ignore[index]
        rules = ip_json(ns, "rule", "show")
        assert any(r.get("iif") == "eth0" and r.get("table") == "100" for r in rules), rules
    # Overlapping pod CIDRs: each gateway remaps, destination before forward, source after.
    remap = subprocess.run(
        ["ip", "netns", "exec", gw1, "nft", "list", "table", "ip", "liqo-remap"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "dnat prefix to 10.244.0.0/16" in remap and "hook prerouting" in remap
    assert "ip saddr 10.244.0.0/16 snat prefix to" in remap and "hook postrouting" in remap
    # The agents: the chart's arguments, --source kubernetes, in the gateway's namespace.
    found = processes(str(lab.state_dir / lab.name))
    cmdlines = []
    for pid, argv in agent_processes(str(lab.state_dir / lab.name)).items():
        cmdlines.append([a.decode() for a in argv])
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"KUBERNETES_SERVICE_HOST={API_ADDRESS}".encode() in env
        assert f"KUBERNETES_SERVICE_PORT={KUBE_API_PORT}".encode() in env
    assert sorted(a for c in cmdlines for a in c if a.startswith("--peer=")) == [
        "--peer=c1",
        "--peer=c2",
    ]
    assert all(
        "--source=kubernetes" in c and "--tunnel-pattern=liqo-tunnel*" in c for c in cmdlines
    )
    assert len(found["servers"]) >= 2  # a supervisor and the process serving the API servers
    # lab status reports them; kubectl reaches each cluster's API server.
    status = json.loads(lab.cli("lab", "status", "--name", lab.name, "-o", "json").stdout)
    (report,) = status["labs"]
    assert report["shape"] == "liqo" and not report["failed"]
    assert sorted(report["agents"]) == ["c1/c2", "c2/c1"]
    assert all(a["running"] and a["ready"] for a in report["agents"].values())
    assert all(s["running"] and s["kubeconfig"] for s in report["servers"].values())
    pods = lab.kubectl("c2", "get", "pods", "-A", "-o", "name")
    assert "pod/p5" in pods.split()
    foreign = lab.kubectl("c1", "get", "foreignclusters", "-o", "name")
    assert foreign.split() == ["foreigncluster.core.liqo.io/c2"]


def api_status(server: str, ca_file: str, token: str, path: str) -> int:
    """The HTTP status of GET ``path`` on ``server``, trusting only ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file)
    request = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_each_clusters_api_server_is_a_server_of_its_own(lab: LiqoLab) -> None:
    """One process serves the lab's API servers; each is still its own: its address, its CA and
    certificate, its ServiceAccount tokens (a gateway's token is refused by the other cluster's
    server) and its objects."""
    api = lab.state_dir / lab.name / "api"
    servers = {}
    for c in ("c1", "c2"):
        (entry,) = yaml.safe_load((api / c / "kubeconfig").read_text())["clusters"]
        servers[c] = (entry["cluster"]["server"], entry["cluster"]["certificate-authority"])
    (url1, ca1), (url2, ca2) = servers["c1"], servers["c2"]
    assert url1 != url2 and Path(ca1).read_bytes() != Path(ca2).read_bytes()
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        api_status(url2, ca1, "fake-token", "/version")  # c2's certificate is not c1's CA's
    # Each gateway's ServiceAccount (c1's gateway for c2, c2's for c1) at home and next door.
    token1 = (api / "c1" / "sa" / "gw-c2" / "token").read_text()
    token2 = (api / "c2" / "sa" / "gw-c1" / "token").read_text()
    assert token1 != token2
    foreign = "/apis/core.liqo.io/v1beta1/foreignclusters"
    assert api_status(url1, ca1, token1, foreign) == 200
    assert api_status(url2, ca2, token2, foreign) == 200
    assert api_status(url1, ca1, token2, foreign) == 401
    assert api_status(url2, ca2, token1, foreign) == 401
    assert lab.kubectl("c1", "get", "foreignclusters", "-o", "name").split() == [
        "foreigncluster.core.liqo.io/c2"
    ]
    assert lab.kubectl("c2", "get", "foreignclusters", "-o", "name").split() == [
        "foreigncluster.core.liqo.io/c1"
    ]


def test_kubectl_edits_are_enforced_and_proved_by_lab_probe(lab: LiqoLab) -> None:
    t = lab.topology
    # As built: FullPodToPod (the chart's default), the seed's table.
    lab.until_probed(t, FULL, "as built")

    # A PeeringSecurity applied with kubectl in each cluster: segregation on the peering.
    for cluster, peer in (("c1", "c2"), ("c2", "c1")):
        ps = yaml.safe_dump(peering_security(peer, SEG.value))
        out = lab.kubectl(cluster, "apply", "--validate=false", "-f", "-", stdin=ps)
        assert out == f"peeringsecurity.peerwall.io/{peer} created\n"

    def with_mode(peerings: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{**p, "securityMode": SEG.value} for p in peerings]

    text = edited(SEED, peerings=with_mode)
    lab.until_probed(load_topology(text), FULL, "after the PeeringSecurities")
    p5, p2 = lab.netns("pod-P5"), t.pod_by_name["P2"]
    p2_from_c2 = str(t.addresses.pod_seen_from(p2, "c2"))
    assert not dropped(p5, p2_from_c2)  # P2 backs S2, reflected to c2: admitted

    # S2 scaled to no backend: its one backend's pod deleted (what a scale-down does).
    assert lab.kubectl("c1", "delete", "pod", "p2", "-n", "offloaded") == 'pod "p2" deleted\n'
    text = edited(text, pods=lambda pods: [p for p in pods if p["name"] != "P2"])
    seen = lab.until_probed(load_topology(text), FULL, "S2 without backends")
    assert seen["matrix"]["P5"]["S2"] == "NO"
    until_dropped(p5, p2_from_c2, True, "c1 admits no c2 pod to P2 any more")

    # P4's shadow pod deleted in its provider: c2 no longer admits c1's pods to P4.
    p1, p4 = lab.netns("pod-P1"), t.pod_by_name["P4"]
    p4_from_c1 = str(t.addresses.pod_seen_from(p4, "c1"))
    assert not dropped(p1, p4_from_c1)
    assert lab.kubectl("c2", "delete", "pod", "p4", "-n", "offloaded-c1") == 'pod "p4" deleted\n'
    text = edited(text, pods=lambda pods: [p for p in pods if p["name"] != "P4"])
    lab.until_probed(load_topology(text), FULL, "P4's shadow pod deleted")
    until_dropped(p1, p4_from_c1, True, "c2 admits no c1 pod to P4 any more")


def test_lab_down_removes_the_api_servers_and_agents(tmp_path: Path) -> None:
    with liqo_lab(SEED, tmp_path) as lab:
        folder = str(tmp_path / lab.name)
        found = processes(folder)
        assert found["servers"] and found["agents"]
        lab.peerwall("lab", "down", "--name", lab.name)
        assert processes(folder) == {"servers": [], "agents": []}
        assert list_namespaces(f"pw-{lab.name}-") == []
        done = lab.peerwall("lab", "kubeconfig", "c1", "--name", lab.name, check=False)
        assert done.returncode == 2 and f"no lab named '{lab.name}'" in done.stderr


def test_a_killed_agent_is_restarted_and_the_commands_of_the_simple_shape_refuse(
    lab: LiqoLab,
) -> None:
    """The lab's supervisor restarts a gateway's agent, as the kubelet restarts a container;
    commands that rewrite the lab's files (its agents read the API servers) refuse, in one line."""
    folder = str(lab.state_dir / lab.name)

    def agent_of_c2() -> list[int]:
        return [pid for pid, argv in agent_processes(folder).items() if b"--peer=c1" in argv]

    (old,) = agent_of_c2()
    os.kill(old, signal.SIGKILL)
    for _ in range(PROBE_ATTEMPTS):
        now = agent_of_c2()
        # Exit 1 while the new agent is not ready yet: the document is what counts here.
        report = lab.cli("lab", "status", "--name", lab.name, "-o", "json", check=False)
        agent = json.loads(report.stdout)["labs"][0]["agents"]["c2/c1"]
        if now and now != [old] and agent.get("ready") and agent["pid"] == now[0]:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"c2's agent was not restarted: {now}, {agent}")
    for command in (("set-mode", "--set", f"networking.securityMode={SEG.value}"), ("repair",)):
        done = lab.peerwall("lab", *command, "--name", lab.name, check=False)
        assert done.returncode == 2
        assert f"lab {lab.name} has Liqo's shape: lab {command[0]} does not apply" in done.stderr
    done = lab.peerwall("lab", "kubeconfig", "c9", "--name", lab.name, check=False)
    assert done.returncode == 2 and "has no cluster 'c9' (its clusters: c1, c2)" in done.stderr
