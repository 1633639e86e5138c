"""The seed's reference tables and the generated (hidden) topologies' tables, observed by real
packets in Liqo's shape (``lab up --shape liqo``): a gateway per peer, agents reading each
cluster's emulated API server, the table expected computed from the file that built the lab.

Liqo cluster IDs are DNS labels, so the clusters' names are lowercased; nothing else changes
(pod, service, Internet and API server names stay as the tables name them).
"""

from __future__ import annotations

import json
import socket
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from liqokit import PROBE_ATTEMPTS, LiqoLab, dropped, liqo_lab, until_dropped

from gen import generate
from peerwall.lab.apiserver.liqo_objects import peering_security
from peerwall.liqo import API_SERVER_PORT as API_PORT
from peerwall.model import SecurityMode, load_topology
from peerwall.nsenter import entered
from peerwall.policy import Verdict, expect
from support import REFERENCE

pytestmark = pytest.mark.lab


def lowercase_ids(data: dict[str, Any]) -> str:
    """A topology document with its cluster names lowercased, as text."""
    low = str.lower
    for c in data["clusters"]:
        c["name"] = low(c["name"])
    for p in data.get("peerings", []):
        p["consumer"], p["provider"] = low(p["consumer"]), low(p["provider"])
    for n in data.get("namespaces", []):
        n["cluster"] = low(n["cluster"])
        n["offloadedTo"] = [low(x) for x in n.get("offloadedTo", [])]
    for item in (*data.get("pods", []), *data.get("services", [])):
        item["cluster"] = low(item["cluster"])
        if item.get("runsOn"):
            item["runsOn"] = low(item["runsOn"])
    return yaml.safe_dump(data, sort_keys=False)


FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def mode_args(mode: SecurityMode) -> tuple[str, str]:
    return ("--set", f"networking.securityMode={mode.value}")


@pytest.mark.parametrize("mode", list(SecurityMode), ids=lambda m: m.value)
def test_the_seed_tables_in_liqos_shape_equal_the_reference(
    mode: SecurityMode, tmp_path: Path
) -> None:
    reference = json.loads((REFERENCE / "seed-matrices.json").read_text())
    text = lowercase_ids(yaml.safe_load((REFERENCE / "seed-topology.yaml").read_text()))
    with liqo_lab(text, tmp_path, *mode_args(mode)) as lab:
        code, seen = lab.probe()
        assert code == 0
        assert seen["matrix"] == reference[mode.value]


@pytest.mark.parametrize(
    ("seed", "clusters", "mode"),
    [(1, 3, SecurityMode.FULL_POD_TO_POD), (2, 4, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)],
)
def test_generated_topologies_in_liqos_shape_observed_equal_computed(
    seed: int, clusters: int, mode: SecurityMode, tmp_path: Path
) -> None:
    text = lowercase_ids(generate(seed, clusters))
    topology = load_topology(text)
    expected = expect(topology, mode).table
    with liqo_lab(text, tmp_path, *mode_args(mode)) as lab:
        code, seen = lab.probe()
        assert seen["matrix"] == expected.to_dict()["matrix"]
        assert code == 0
    # Not trivially all one verdict: the generated topologies exercise YES, NO and PARTIAL.
    assert {Verdict.YES, Verdict.NO, Verdict.PARTIAL} <= {v for _, _, v in expected.cells()}


def node_sees(lab: LiqoLab, cluster: str, pod: str, port: int = 9300) -> list[str]:
    """A hostNetwork connection from ``cluster``'s node to ``pod``: the sources ``pod`` saw."""
    t = lab.topology
    address = str(t.addresses.pod_seen_from(t.pod_by_name[pod], cluster))
    with entered(lab.netns(f"pod-{pod}")):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with server:
        server.bind(("0.0.0.0", port))
        server.listen(4)
        server.settimeout(2.0)
        with entered(lab.netns(f"gw-{cluster}")):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(2.0)
            try:
                client.connect((address, port))
            except OSError:
                return []
            conn, (host, _) = server.accept()
            conn.close()
            return [host]


def test_masqueraded_sources_in_liqos_shape(tmp_path: Path) -> None:
    """Item 3: ``externalCIDR`` and ``fullMasquerade`` (Liqo's masquerade of what is not from a
    local pod, and with fullMasquerade of all traffic towards peers, to the first address of the
    external CIDR) in Liqo's shape, under segregation: the table the probes observe is the one
    computed (c2's pods reach no home API server in c1: rule api-masqueraded), and a node's own
    connection arrives from the masquerade source, judged by its destination only."""
    data = yaml.safe_load((REFERENCE / "seed-topology.yaml").read_text())
    for c, external in zip(data["clusters"], ("10.70.0.0/16", "10.71.0.0/16"), strict=True):
        c["externalCIDR"] = external
        c["apiServer"] = f"A{c['name'][1:]}"
    data["clusters"][1]["fullMasquerade"] = True
    text = lowercase_ids(data)
    topology = load_topology(text)
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    expected = expect(topology, mode)
    # The switch matters: without the masquerade, P4 (homed in c1) reaches A1.
    assert expected.table["P4", "A1"] is Verdict.NO
    with liqo_lab(text, tmp_path, *mode_args(mode)) as lab:
        code, seen = lab.probe()
        assert seen["matrix"] == expected.table.to_dict()["matrix"]
        assert code == 0
        assert node_sees(lab, "c1", "P4") == ["10.70.0.0"]  # offloaded by c1 into c2: admitted
        assert node_sees(lab, "c1", "P5") == []  # c2's own pod: dropped under segregation


def rx_packets(netns: str, ifname: str) -> int:
    out = subprocess.run(
        ["ip", "-j", "-s", "-n", netns, "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["stats64"]["rx"]["packets"])


def test_several_tunnels_in_liqos_shape(tmp_path: Path) -> None:
    """Item 3: a connection with several tunnels (``tunnels: 2`` on the peering: Liqo's Gateway
    lists two ports, each gateway has ``liqo-tunnel`` and ``liqo-tunnel1``, 169.254.18.1/2 and
    .5/.6, and flows spread over both). The probed table is the computed one, both tunnels carry
    probes both ways; and once kubectl leaves c2's GatewayServer one port, c2's agent no longer
    takes liqo-tunnel1 for c1's and the probes through it fail: the table was right because the
    agent read the Gateway's ports."""
    data = yaml.safe_load((REFERENCE / "seed-topology.yaml").read_text())
    data["peerings"][0]["tunnels"] = 2
    text = lowercase_ids(data)
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    expected = expect(load_topology(text), mode).table.to_dict()["matrix"]
    with liqo_lab(text, tmp_path, *mode_args(mode)) as lab:
        code, seen = lab.probe()
        assert seen["matrix"] == expected
        assert code == 0
        for gw in ("lgw-c1-c2", "lgw-c2-c1"):
            assert rx_packets(lab.netns(gw), "liqo-tunnel") > 0
            assert rx_packets(lab.netns(gw), "liqo-tunnel1") > 0
        one_port = '{"spec": {"endpoint": {"ports": [51840]}}}'
        lab.kubectl("c2", "patch", "gatewayserver", "c1", "-n", "liqo-tenant-c1",
                    "--type=merge", "-p", one_port)  # fmt: skip
        for _ in range(PROBE_ATTEMPTS):
            code, seen = lab.probe()
            if code == 1:
                break
        assert code == 1 and seen["matrix"] != expected


def test_several_api_server_addresses_in_liqos_shape(tmp_path: Path) -> None:
    """Item 3: ``apiServerAddresses: 3`` on c1 (Liqo's apiServerAccessThroughEndpointSlices: one
    IP resource per endpoint of ``kubernetes``, the API host answering on each). Under
    segregation the probed table is the computed one, and on every address, through the
    remapping, c1's API server admits P4 (homed in c1, running in c2) and not P5 (c2's own)."""
    data = yaml.safe_load((REFERENCE / "seed-topology.yaml").read_text())
    data["clusters"][0] |= {"apiServer": "A1", "apiServerAddresses": 3}
    text = lowercase_ids(data)
    topology = load_topology(text)
    mode = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
    expected = expect(topology, mode).table.to_dict()["matrix"]
    addresses = topology.addresses.api_ips("c1")
    assert len(set(addresses)) == 3
    with liqo_lab(text, tmp_path, *mode_args(mode)) as lab:
        code, seen = lab.probe()
        assert seen["matrix"] == expected
        assert code == 0
        ips = json.loads(lab.kubectl("c1", "get", "ips", "-n", "liqo", "-o", "json"))["items"]
        assert sorted(i["spec"]["ip"] for i in ips) == sorted(map(str, addresses))
        for address in addresses:
            seen_from_c2 = str(topology.addresses.seen_from(address, "c1", "c2"))
            assert not dropped(lab.netns("pod-P4"), seen_from_c2, API_PORT), address
            assert dropped(lab.netns("pod-P5"), seen_from_c2, API_PORT), address
        # One IP resource deleted with kubectl: that address is no longer c1's API server.
        last = addresses[-1]
        lab.kubectl("c1", "delete", "ip", f"kubernetes-{str(last).replace('.', '-')}", "-n", "liqo")
        last_from_c2 = str(topology.addresses.seen_from(last, "c1", "c2"))
        until_dropped(
            lab.netns("pod-P4"), last_from_c2, True, "P4 to a deleted API address", API_PORT
        )


def reflection_example(strip: bool = False) -> str:
    """``examples/reflection.yaml`` (c1 reflects to c2 under AllowList, S2 marked allow and S4
    not; c2 to c1 under DenyList, S6 marked skip); ``strip``: without the reflection fields."""
    data = yaml.safe_load(
        resources.files("peerwall").joinpath("examples/reflection.yaml").read_text()
    )
    if strip:
        for item in (*data["peerings"], *data["services"]):
            item.pop("reflection", None)
    return yaml.safe_dump(data, sort_keys=False)


def test_reflection_policy_in_liqos_shape(tmp_path: Path) -> None:
    """Item 3: Liqo's reflection policy (the lab writes c1's VkOptionsTemplate for c2 with
    ``reflectorsConfig.service.type: AllowList`` and the services' ``liqo.io/allow-reflection`` /
    ``liqo.io/skip-reflection``; the agents on ``--source kubernetes`` read them). Probed in
    FullPodToPod, then with PeeringSecurities applied by kubectl in segregation: observed equals
    computed, and the cells the policy changes (against the same file without the fields) are
    among them. Then kubectl marks S4 allowed: c1's agent opens its backend P3 to c2."""
    text = reflection_example()
    topology, plain = load_topology(text), load_topology(reflection_example(strip=True))
    for mode in (FULL, SEG):
        changed = expect(topology, mode).table.differing(expect(plain, mode).table)
        assert {("P4", "S4"), ("P1", "S6")} <= changed
    seg_only = {("P4", "P3"), ("P5", "P3"), ("P1", "P6"), ("P2", "P6")}
    assert seg_only <= expect(topology, SEG).table.differing(expect(plain, SEG).table)
    with liqo_lab(text, tmp_path, *mode_args(FULL)) as lab:
        code, seen = lab.probe()
        assert seen["matrix"] == expect(topology, FULL).table.to_dict()["matrix"]
        assert code == 0
        assert (seen["matrix"]["P4"]["S4"], seen["matrix"]["P1"]["S6"]) == ("NO", "NO")
        for cluster, peer in (("c1", "c2"), ("c2", "c1")):
            ps = yaml.safe_dump(peering_security(peer, SEG.value))
            lab.kubectl(cluster, "apply", "--validate=false", "-f", "-", stdin=ps)
        seen = lab.until_probed(topology, SEG, "after the PeeringSecurities")
        assert {seen["matrix"][s][d] for s, d in seg_only} == {"NO"}
        assert seen["matrix"]["P4"]["P2"] == seen["matrix"]["P1"]["P7"] == "YES"  # reflected
        p3_from_c2 = str(topology.addresses.pod_seen_from(topology.pod_by_name["P3"], "c2"))
        assert dropped(lab.netns("pod-P5"), p3_from_c2)
        lab.kubectl("c1", "annotate", "service", "s4", "-n", "offloaded",
                    "liqo.io/allow-reflection=true")  # fmt: skip
        until_dropped(lab.netns("pod-P5"), p3_from_c2, False, "S4 allowed: its backend P3 open")
