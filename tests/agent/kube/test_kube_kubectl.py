"""A real client against the fake API server: /usr/bin/kubectl (the machine image's; Debian's
``kubernetes-client`` elsewhere) over TLS with bearer tokens, reading, watching, applying and
deleting Liqo's objects and PeeringSecurities, and refused what RBAC does not grant.

kubectl's own client-side schema check needs the server's OpenAPI documents, which the fake does
not serve, so ``apply`` runs with ``--validate=false``: the fake validates every object it stores
against the same schemas (kubernetes-validate, the CRDs) and refuses unknown fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from kubeapi import liqo_objects as L
from kubeapi.chart import chart_objects, liqo_objects, rbac_objects
from kubeapi.fake import FakeApiServer
from kubeapi.harness import TIMEOUT, run
from peerwall.model.load import load_topology

HERE = Path(__file__).parent
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
SEG = "IntraClusterTrafficSegregation"

pytestmark = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="no kubectl (Debian: apt-get install kubernetes-client)"
)


def seed_objects() -> list[dict[str, object]]:
    return L.cluster_objects(load_topology((HERE / "seed-topology.yaml").read_text()), "c2")


async def kubectl(kubeconfig: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def watching(kubeconfig: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``kubectl get -w``, stopped (by its PID) at the end."""
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", str(kubeconfig), "get", "-w", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def next_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().strip()


def write(path: Path, obj: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(obj))
    return path


def test_kubectl_gets_watches_applies_and_deletes_liqo_objects_and_peeringsecurities(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with FakeApiServer(tls=True) as fake:
            assert fake.url.startswith("https://")
            for obj in seed_objects():
                fake.create(obj)
            kc = fake.kubeconfig(tmp_path / "kubeconfig")
            code, out, err = await kubectl(kc, "get", "configurations.networking.liqo.io", "-A")
            assert code == 0, err
            assert out.split()[:3] == ["NAMESPACE", "NAME", "AGE"]
            code, out, err = await kubectl(kc, "get", "foreignclusters", "-o", "name")
            assert (code, out.split()) == (0, ["foreigncluster.core.liqo.io/c1"]), err

            async with watching(kc, "peeringsecurities", "-o", "name") as w:
                # The list is empty: the first line is the first event.
                ps = write(tmp_path / "ps.yaml", L.peering_security("c1", SEG))
                code, out, err = await kubectl(kc, "apply", "--validate=false", "-f", str(ps))
                assert (code, out.strip()) == (0, "peeringsecurity.peerwall.io/c1 created"), err
                assert await next_line(w) == "peeringsecurity.peerwall.io/c1"
                # Applied again, changed: a patch of the object the fake holds.
                write(ps, L.peering_security("c1", "FullPodToPod"))
                code, out, err = await kubectl(kc, "apply", "--validate=false", "-f", str(ps))
                assert (code, out.strip()) == (0, "peeringsecurity.peerwall.io/c1 configured"), err
                assert await next_line(w) == "peeringsecurity.peerwall.io/c1"
                held = fake.get(L.peering_security("c1", SEG))
                assert held is not None and held["spec"]["securityMode"] == "FullPodToPod"
                code, out, err = await kubectl(kc, "delete", "peeringsecurity", "c1")
                assert code == 0, err
                assert await next_line(w) == "peeringsecurity.peerwall.io/c1"
                assert fake.get(L.peering_security("c1", SEG)) is None

            # A Liqo object, applied and read back as YAML, then deleted.
            conf = L.configuration("c9", ["10.99.0.0/16"], None)
            code, out, err = await kubectl(
                kc, "apply", "--validate=false", "-f", str(write(tmp_path / "c.yaml", conf))
            )
            assert code == 0, err
            code, out, err = await kubectl(
                kc, "get", "configuration", "-n", L.tenant("c9"), "c9", "-o", "yaml"
            )
            assert code == 0, err
            got = yaml.safe_load(out)
            assert got["spec"] == conf["spec"]
            assert got["metadata"]["resourceVersion"]
            code, out, err = await kubectl(kc, "delete", "-f", str(tmp_path / "c.yaml"))
            assert code == 0, err
            assert fake.get(conf) is None
            # An object the schema refuses is refused through kubectl too.
            bad = L.peering_security("c8", "Open")
            code, out, err = await kubectl(
                kc, "apply", "--validate=false", "-f", str(write(tmp_path / "bad.yaml", bad))
            )
            assert code != 0 and "Open" in err

    run(main())


def test_kubectl_with_a_serviceaccounts_token_gets_what_rbac_grants_and_no_more(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with FakeApiServer(tls=True) as fake:
            for obj in rbac_objects(chart_objects("agent.debugServiceAccount=true")):
                fake.create(obj)
            fake.create(L.peering_security("c1", SEG))
            token = fake.service_account_token("peerwall", "peerwall-agent")
            kc = fake.kubeconfig(tmp_path / "kubeconfig", token)
            code, out, err = await kubectl(kc, "get", "peeringsecurities", "-o", "name")
            assert (code, out.strip()) == (0, "peeringsecurity.peerwall.io/c1"), err
            # The agent lists and watches; it never gets one object, nor writes.
            code, out, err = await kubectl(kc, "get", "peeringsecurity", "c1")
            assert code != 0
            assert (
                'peeringsecurities.peerwall.io "c1" is forbidden: User '
                '"system:serviceaccount:peerwall:peerwall-agent" cannot get resource '
                '"peeringsecurities" in API group "peerwall.io" at the cluster scope'
            ) in err
            code, out, err = await kubectl(kc, "delete", "peeringsecurity", "c1")
            assert code != 0 and "cannot delete resource" in err
            # Liqo's namespace only: the IPAM objects elsewhere are not the agent's to read.
            code, out, err = await kubectl(kc, "get", "networks.ipam.liqo.io", "-n", "liqo")
            assert code == 0, err
            code, out, err = await kubectl(kc, "get", "networks.ipam.liqo.io", "-n", "other")
            assert code != 0 and 'cannot list resource "networks"' in err
            # A token nobody issued.
            bad = fake.kubeconfig(tmp_path / "bad", "not-a-token")
            code, out, err = await kubectl(bad, "get", "peeringsecurities")
            assert code != 0 and "Unauthorized" in err

    run(main())


@pytest.mark.parametrize("version", ["v1.2.0", "master"])
def test_rbac_writes_pass_the_escalation_check_over_the_api(tmp_path: Path, version: str) -> None:
    """What Liqo's controller manager does for each gateway, through the API with its token."""

    async def main() -> None:
        async with FakeApiServer(tls=True) as fake:
            for obj in [
                *rbac_objects(liqo_objects(version, "rbac")),
                *rbac_objects(chart_objects()),
            ]:
                fake.create(obj)
            token = fake.service_account_token("liqo", "liqo-controller-manager")
            kc = fake.kubeconfig(tmp_path / "kubeconfig", token)
            binding = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "peerwall-gateway-liqo-tenant-c1-gw-c1"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "peerwall-gateway",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "gw-c1", "namespace": "liqo-tenant-c1"}
                ],
            }
            path = write(tmp_path / "crb.yaml", binding)
            code, out, err = await kubectl(kc, "create", "--validate=false", "-f", str(path))
            assert (code, out.strip()) == (
                0,
                "clusterrolebinding.rbac.authorization.k8s.io/peerwall-gateway-liqo-tenant-c1-gw-c1 created",
            ), err
            # Without the chart's grant, Kubernetes' answer of issue 16.
            fake.delete(binding)
            grant = {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "peerwall-grant-liqo-controller-manager"},
            }
            fake.delete(grant)
            code, _out, err = await kubectl(kc, "create", "--validate=false", "-f", str(path))
            assert code != 0
            assert "attempting to grant RBAC permissions not currently held" in err

    run(main())
