"""Acceptance (issue 17, item 2): live clusters as input to every view.

Each cluster of a topology is an API server (the fake, over TLS) holding the objects Liqo would
create for it (``cluster_objects``). ``peerwall export --kubeconfig …`` reads them back through the
source's selections and client into a topology file; its truth table, in both modes, equals the
table of the file that produced the objects, cell for cell. Kubernetes holds neither the names of
Internets and API servers nor capitals in pod names, so the exported table names them by rule
(``internet@<id>``, ``apiserver.<id>``, the Kubernetes name); the comparison maps the original
names to those, nothing else. The views (matrix, explain, diff, topology) read the same clusters
with ``--kubeconfig``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeapi.fake import FakeApiServer
from kubeapi.harness import TIMEOUT, run
from kubeapi.liqo_objects import api_cluster_ip, cluster_objects, k8s_name, peering_security
from model.test_resolve import generated
from peerwall.agent.kube.picture import (
    ClusterObjects,
    PictureError,
    api_server_name,
    topology_document,
)
from peerwall.model import Topology, load_topology, topology_from_data
from peerwall.model.spec import SecurityMode
from peerwall.policy import expect

HERE = Path(__file__).parent

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def lowercase_clusters(data: dict[str, Any]) -> dict[str, Any]:
    """Liqo cluster IDs are DNS labels: the generated topology's clusters, lowercased."""
    text = yaml.safe_dump(data)
    for c in data["clusters"]:
        text = text.replace(f": {c['name']}\n", f": {c['name'].lower()}\n")
        text = text.replace(f"- {c['name']}\n", f"- {c['name'].lower()}\n")
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def seed() -> Topology:
    return load_topology((HERE / "seed-topology.yaml").read_text())


def generated_topology() -> Topology:
    return topology_from_data(lowercase_clusters(generated(60, 14, seed=17)), "generated")


def three_clusters() -> Topology:
    return load_topology((HERE / "three-clusters.yaml").read_text())


def renamed(t: Topology) -> dict[str, str]:
    """Each table name of ``t`` -> the name the exported topology gives it."""
    out = {p.name: k8s_name(p.name) for p in t.pods}
    out |= {s.name: k8s_name(s.name) for s in t.services}
    out |= {c.internet: f"internet@{c.name}" for c in t.clusters}
    out |= {c.api_server: api_server_name(c.name) for c in t.clusters if c.api_server}
    return out


def cells(t: Topology, mode: SecurityMode, names: dict[str, str] | None = None) -> set[Any]:
    n = names or {}
    return {(n.get(s, s), n.get(d, d), v) for s, d, v in expect(t, mode).table.cells()}


@asynccontextmanager
async def clusters_served(
    t: Topology, tmp_path: Path, extra: dict[str, list[dict[str, Any]]] | None = None
) -> AsyncIterator[list[Path]]:
    """One TLS API server per cluster of ``t`` with Liqo's objects; their kubeconfigs."""
    async with AsyncExitStack() as stack:
        configs = []
        for c in t.clusters:
            fake = await stack.enter_async_context(FakeApiServer(tls=True))
            # A file without an API server: Liqo's IPAM without the api-server IP.
            api = api_cluster_ip(t, c.name) if c.api_server else None
            for obj in cluster_objects(t, c.name, api):
                fake.create(obj)
            for obj in (extra or {}).get(c.name, []):
                fake.create(obj)
            configs.append(fake.kubeconfig(tmp_path / f"kubeconfig-{c.name}"))
        yield configs


async def peerwall(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "peerwall"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 4)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def kube_args(configs: Sequence[Path]) -> list[str]:
    return [a for k in configs for a in ("--kubeconfig", str(k))]


def reflection() -> Topology:
    return load_topology(
        resources.files("peerwall").joinpath("examples/reflection.yaml").read_text()
    )


@pytest.mark.parametrize(
    "make",
    [seed, three_clusters, generated_topology, reflection],
    ids=["seed", "three", "generated", "reflection"],
)
def test_the_exported_topologys_table_equals_the_files(make: Any, tmp_path: Path) -> None:
    original = make()

    async def main() -> None:
        async with clusters_served(original, tmp_path) as configs:
            out = tmp_path / "exported.yaml"
            code, _, err = await peerwall("export", *kube_args(configs), "-o", str(out))
            assert code == 0, err
            assert err.startswith(f"wrote {out}: {len(original.clusters)} clusters, ")
            exported = load_topology(out.read_text(), str(out))
            for mode in (FULL, SEG):
                assert cells(exported, mode) == cells(original, mode, renamed(original)), mode
            # The same pods where the file put them, at the file's addresses.
            names = renamed(original)
            for p in original.pods:
                q = exported.pod_by_name[names[p.name]]
                assert (q.home, q.physical, q.namespace, q.ip) == (
                    p.home,
                    p.physical,
                    p.namespace,
                    p.ip,
                )
            # The matrix of the live clusters is the exported file's.
            code, live, err = await peerwall(
                "matrix", *kube_args(configs), "-o", "json",
                "--set", f"networking.securityMode={SEG.value}",
            )  # fmt: skip
            assert code == 0, err
            code, from_file, err = await peerwall(
                "matrix", "-f", str(out), "-o", "json",
                "--set", f"networking.securityMode={SEG.value}",
            )  # fmt: skip
            assert code == 0, err
            assert json.loads(live) == json.loads(from_file)

    run(main(), timeout=600)


def test_a_peeringsecurity_is_the_peerings_mode_and_every_view_reads_the_clusters(
    tmp_path: Path,
) -> None:
    original = seed()
    # c1 sets its peering with c2 to segregation: the mode of that connection, on both sides.
    extra = {"c1": [peering_security("c2", SEG.value)]}

    async def main() -> None:
        async with clusters_served(original, tmp_path, extra) as configs:
            args = kube_args(configs)
            code, out, err = await peerwall("export", *args)
            assert code == 0, err
            doc = yaml.safe_load(out)
            assert doc["peerings"] == [
                {"consumer": "c1", "provider": "c2", "securityMode": SEG.value}
            ]
            want = cells(original, SEG, renamed(original))
            assert cells(load_topology(out), FULL) == want

            code, out, err = await peerwall("explain", "p4", "p1", *args)
            assert code == 0, err
            assert "NO" in out.splitlines()[0] and "IntraClusterTrafficSegregation" in out

            code, out, err = await peerwall(
                "diff", *args, "--after", str(HERE / "seed-topology.yaml")
            )
            # Names differ (P1 in the file, p1 live): the live cells disappear, none is lost.
            assert code == 0, err

            code, out, err = await peerwall("topology", *args)
            assert code == 0, err
            assert out.lstrip().startswith("<") and "p4" in out

            # One kubeconfig, one context per cluster: the same topology.
            merged = tmp_path / "merged"
            docs = [yaml.safe_load(k.read_text()) for k in configs]
            merged.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "clusters": [
                            {"name": f"k{i}", "cluster": d["clusters"][0]["cluster"]}
                            for i, d in enumerate(docs)
                        ],
                        "users": [{"name": "u", "user": {"token": "fake-token"}}],
                        "contexts": [
                            {"name": f"k{i}", "context": {"cluster": f"k{i}", "user": "u"}}
                            for i in range(len(docs))
                        ],
                    }
                )
            )
            code, again, err = await peerwall(
                "export", "--kubeconfig", str(merged), "--context", "k0", "--context", "k1"
            )
            assert code == 0, err
            assert yaml.safe_load(again)["pods"] == doc["pods"]

    run(main(), timeout=600)


def test_a_peer_not_given_is_named_in_one_line(tmp_path: Path) -> None:
    original = seed()

    async def main() -> None:
        async with clusters_served(original, tmp_path) as configs:
            code, out, err = await peerwall("matrix", "--kubeconfig", str(configs[0]))
            assert (code, out) == (2, "")
            assert err == (
                f"kubeconfig {configs[0]}: cluster c1 is peered with c2, whose objects "
                "were not read: give its kubeconfig (or context) too\n"
            )
            code, _, err = await peerwall("matrix")
            assert code == 2 and "give a topology file" in err and "--kubeconfig" in err, err
        # A server that is gone: unreachable, said in one line; a CA file that is gone too.
        gone = tmp_path / "gone"
        doc = yaml.safe_load(configs[0].read_text())
        doc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        gone.write_text(yaml.safe_dump(doc))
        code, out, err = await peerwall("export", "--kubeconfig", str(gone))
        assert (code, out, len(err.splitlines())) == (2, "", 1), err
        assert err.startswith(f"kubeconfig {gone}: "), err
        assert "No such file or directory" in err and "certificate" in err, err
        del doc["clusters"][0]["cluster"]["certificate-authority"]
        doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
        gone.write_text(yaml.safe_dump(doc))
        code, out, err = await peerwall("export", "--kubeconfig", str(gone))
        assert (code, out, len(err.splitlines())) == (2, "", 1), err
        assert err.startswith(f"kubeconfig {gone}: cannot reach the API server: "), err

    run(main(), timeout=300)


def objects_of(t: Topology, cluster: str) -> ClusterObjects:
    """``cluster_objects`` as ``snapshot`` hands them to ``topology_document``, by kind."""
    found = ClusterObjects(f"cluster {cluster}")
    for obj in cluster_objects(t, cluster, api_cluster_ip(t, cluster)):
        found.objects.setdefault(str(obj["kind"]), []).append(obj)
    return found


def test_the_reflection_policy_is_exported_and_one_a_file_cannot_say_is_refused() -> None:
    """Issue 17.3: a provider's VkOptionsTemplate (AllowList) becomes its peering's
    ``reflection``, the services' annotations their ``reflection`` marks (DenyList and unmarked
    services stay implicit, as in the file); a virtual kubelet that reflects no EndpointSlice
    (``--disable-ip-reflection``) is refused, naming it."""
    t = reflection()
    doc = topology_document([objects_of(t, c.name) for c in t.clusters])
    assert [p.get("reflection") for p in doc["peerings"]] == ["AllowList", None]
    assert {s["name"]: s.get("reflection") for s in doc["services"]} == {
        "s1": None, "s2": "allow", "s4": None, "s3": None, "s6": "skip", "s7": None,
    }  # fmt: skip
    c1 = objects_of(t, "c1")
    for template in c1.objects["VkOptionsTemplate"]:
        template["spec"]["extraArgs"].append("--disable-ip-reflection")  # type: ignore[index]
    with pytest.raises(PictureError, match="cluster c1's virtual kubelet for c2 reflects no"):
        topology_document([c1, objects_of(t, "c2")])
