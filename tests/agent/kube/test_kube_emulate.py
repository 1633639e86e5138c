"""``peerwall liqo emulate``: a topology's clusters served as Liqo leaves them, driven by real kubectl.

The command serves one TLS API server per cluster of the seed; real ``kubectl`` edits them as a
user would (delete a shadow pod, apply a PeeringSecurity, take a service's backend away), and
``peerwall export --kubeconfig`` reads each change back into the topology, whose table moves as
the change implies. Before any edit, the clusters' table is the file's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from peerwall.model import Topology, load_topology
from peerwall.model.spec import SecurityMode
from peerwall.policy import Verdict, expect

HERE = Path(__file__).parent
SEED = HERE / "seed-topology.yaml"
PEERWALL = str(Path(sys.executable).parent / "peerwall")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
TIMEOUT = 120

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="no kubectl (Debian: apt-get install kubernetes-client)"
)


@pytest.fixture
def emulated(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """``peerwall liqo emulate`` of the seed, running; its kubeconfigs by cluster."""
    folder = tmp_path / "kube"
    proc = subprocess.Popen(
        [PEERWALL, "liqo", "emulate", "-f", str(SEED), "-o", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving"):
                break
        assert lines and lines[-1].startswith("serving"), (
            lines,
            proc.stderr and proc.stderr.read(),
        )
        assert [ln.split(":")[0] for ln in lines[:-1]] == ["c1", "c2"]
        yield {c: folder / f"{c}.kubeconfig" for c in ("c1", "c2")}
    finally:
        proc.terminate()  # SIGTERM: the command stops its servers and removes its kubeconfigs
        proc.wait(TIMEOUT)
    assert proc.returncode == 0
    assert not list(folder.glob("*.kubeconfig"))


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def exported(configs: dict[str, Path]) -> Topology:
    args = [a for k in configs.values() for a in ("--kubeconfig", str(k))]
    done = subprocess.run(
        [PEERWALL, "export", *args], capture_output=True, text=True, timeout=TIMEOUT,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return load_topology(done.stdout, "exported")


def verdict(t: Topology, mode: SecurityMode, src: str, dst: str) -> Verdict:
    return expect(t, mode).table[src, dst]


def table(t: Topology, mode: SecurityMode) -> dict[tuple[str, str], Any]:
    return {(s, d): v for s, d, v in expect(t, mode).table.cells()}


def test_kubectl_edits_of_the_emulated_clusters_show_in_the_topology(
    emulated: dict[str, Path],
) -> None:
    seed = load_topology(SEED.read_text())
    live = exported(emulated)
    names = {p.name: p.name.lower() for p in seed.pods} | {
        s.name: s.name.lower() for s in seed.services
    }
    names |= {"I1": "internet@c1", "I2": "internet@c2", "A1": "apiserver.c1", "A2": "apiserver.c2"}
    for mode in (FULL, SEG):
        want = {(names[s], names[d]): v for (s, d), v in table(seed, mode).items()}
        assert table(live, mode) == want

    # What Liqo made: p4 runs in c2 as a shadow pod, in the namespace c2 made for c1's.
    pods = kubectl(emulated["c2"], "get", "pods", "-A", "-o", "name")
    assert "pod/p4" in pods.split()
    assert kubectl(emulated["c2"], "get", "pod", "p4", "-n", "offloaded-c1", "-o", "name") == (
        "pod/p4\n"
    )

    # A PeeringSecurity applied in c1 sets the peering's mode: segregation with no --set.
    ps = {
        "apiVersion": "peerwall.io/v1alpha1",
        "kind": "PeeringSecurity",
        "metadata": {"name": "c2"},
        "spec": {"clusterID": "c2", "securityMode": SEG.value},
    }
    kubectl(emulated["c1"], "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(ps))
    live = exported(emulated)
    assert live.peering_mode("c1", "c2") is SEG
    assert table(live, FULL) == table(live, SEG)
    assert verdict(live, FULL, "p4", "p1") is Verdict.NO

    # s2's only backend taken away: nobody reaches s2 any more, from either cluster.
    assert verdict(live, FULL, "p5", "s2") is Verdict.YES
    kubectl(emulated["c1"], "delete", "pod", "p2", "-n", "offloaded")
    live = exported(emulated)
    assert "p2" not in live.pod_by_name
    assert live.service_by_name["s2"].backends == ()
    assert verdict(live, FULL, "p5", "s2") is Verdict.NO

    # The shadow pod deleted in c2: p4 no longer runs anywhere (until Liqo recreates it).
    kubectl(emulated["c2"], "delete", "pod", "p4", "-n", "offloaded-c1")
    live = exported(emulated)
    assert "p4" not in live.pod_by_name
    assert sorted(live.pod_by_name) == ["p1", "p3", "p5"]
