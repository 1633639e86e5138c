"""What the source keeps of each object (``shape.kept``) is all the join reads: a join fed the
kept objects builds the same desired state as one fed the whole objects; the rest (containers,
conditions, managed fields) goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubeapi import liqo_objects as L
from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import LiqoJoin
from peerwall.agent.kube.shape import BY_KIND, kept
from peerwall.agent.kube.source import watch_specs
from peerwall.model.load import load_topology
from peerwall.settings import KubeSettings

HERE = Path(__file__).parent
KINDS = {spec.kind.kind: spec.kind for spec, _ in watch_specs(KubeSettings())}


def state(objects: list[dict[str, Any]], peer: str, trim: bool) -> Any:
    join = LiqoJoin(DesiredState("x", liqo.TUNNEL_PATTERN, None), KubeSettings(peer=peer))
    for obj in objects:
        kind = KINDS.get(obj["kind"])
        if kind is not None:
            join.apply(kind, kept(kind.kind, obj) if trim else obj)
    return join.desired.snapshot()


def test_the_join_builds_the_same_state_from_kept_objects() -> None:
    topology = load_topology((HERE / "three-clusters.yaml").read_text())
    members = 0
    for cluster in topology.cluster_by_name:
        objects = L.cluster_objects(topology, cluster)
        assert {o["kind"] for o in objects} & set(BY_KIND)  # the kinds with fields of their own
        for peer in topology.peers[cluster]:  # one agent per peer, as on Liqo v1
            whole = state(objects, peer, trim=False)
            assert list(whole.peers) == [peer], (cluster, peer)
            members += sum(len(m) for m in whole.peers[peer].members.values())
            assert state(objects, peer, trim=True) == whole, (cluster, peer)
    assert members  # the sets hold addresses: pods, backends and API clients were read


def test_a_pod_keeps_what_the_join_and_the_reflector_read() -> None:
    pod = L.shadow_pod("a", "ns-c2", "10.10.0.5", "c2", {"app": "web"})
    pod["metadata"] |= {"uid": "u-1", "resourceVersion": "42", "managedFields": [{"x": 1}]}
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    small = kept("Pod", pod)
    assert small == {
        "metadata": {
            "name": "a",
            "namespace": "ns-c2",
            "uid": "u-1",
            "resourceVersion": "42",
            "labels": pod["metadata"]["labels"],
        },
        "spec": {"nodeName": L.WORKER},
        "status": {"phase": "Running", "podIP": "10.10.0.5", "podIPs": [{"ip": "10.10.0.5"}]},
    }
    # Two pods of one workload share one labels mapping.
    other = kept("Pod", L.shadow_pod("b", "ns-c2", "10.10.0.6", "c2", {"app": "web"}))
    assert other["metadata"]["labels"] is small["metadata"]["labels"]
