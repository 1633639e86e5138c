"""The agent as it runs in a gateway pod, against the fake API server speaking TLS and enforcing RBAC.

Everything the pod gives it, and nothing else: a network namespace of its own (``pw-t-…``) where
the API server is at ``KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`` (the fake's socket is
bound inside it), and the gateway's ServiceAccount volume (``token``, ``ca.crt``, ``namespace``)
at /var/run/secrets/kubernetes.io/serviceaccount, bind-mounted in a mount namespace of the agent's
own. The fake holds the RBAC that Liqo and the chart install (``helm template``) and the
ClusterRoleBinding Liqo's controller manager creates for the gateway; the agent's command line is
the chart's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubeapi import liqo_objects as L
from kubeapi.chart import chart_objects, liqo_objects, rbac_objects
from kubeapi.fake import FakeApiServer
from kubeapi.harness import TIMEOUT, run
from peerwall.model.load import load_topology
from peerwall.nsenter import entered

HERE = Path(__file__).parent
SA_MOUNT = "/run/secrets/kubernetes.io/serviceaccount"
"""/var/run is /run: where the kubelet mounts a pod's ServiceAccount volume."""
PEER = "c1"
TENANT = L.tenant(PEER)
GATEWAY = f"gw-{PEER}"
METRICS_PORT = 9090
POD_IP = "127.0.0.1"

pytestmark = pytest.mark.lab

# Inside the agent's own mount namespace: a private /run (the host's is not touched), the
# ServiceAccount volume where the kubelet puts it, then the agent.
POD_SHELL = (
    'mount -t tmpfs pod-run /run && mkdir -p "$0" && mount --bind "$1" "$0" && shift && exec "$@"'
)


def gateway_binding() -> dict[str, object]:
    """As Liqo's EnsureServiceAccountAndClusterRoleBinding writes it for this gateway."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"peerwall-gateway-{TENANT}-{GATEWAY}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "peerwall-gateway",
        },
        "subjects": [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": TENANT}],
    }


def agent_args() -> list[str]:
    return agent_args_for(PEER)


def agent_args_for(peer: str) -> list[str]:
    """The agent's command line from the chart's server template, ``$(PEERWALL_PEER)`` and
    ``$(POD_IP)`` filled in as the Downward API would (this pod's namespace has only loopback, so
    its address is 127.0.0.1)."""
    (template,) = [o for o in chart_objects() if o["kind"] == "WgGatewayServerTemplate"]
    pod = template["spec"]["template"]["spec"]["deployment"]["spec"]["template"]["spec"]
    (agent,) = [c for c in pod["containers"] if c["name"] == "peerwall"]
    assert f"--metrics-address=$(POD_IP):{METRICS_PORT}" in agent["args"]
    args = [a.replace("$(PEERWALL_PEER)", peer).replace("$(POD_IP)", POD_IP) for a in agent["args"]]
    return args


def readyz(netns: str) -> int:
    """The kubelet's readiness probe: GET /readyz on the pod's address, from its namespace."""
    with entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(TIMEOUT)
        sock.connect((POD_IP, METRICS_PORT))
        sock.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
        head = sock.recv(64).decode()
    return int(head.split()[1])


@contextlib.asynccontextmanager
async def agent_pod(
    fake: FakeApiServer, netns: str, tmp_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    volume = fake.service_account_volume(tmp_path / "serviceaccount", TENANT, GATEWAY)
    env = {
        "PATH": os.environ["PATH"],
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(fake.port),
        "HOME": str(tmp_path),
    }
    cmd = [
        "ip", "netns", "exec", netns,
        "unshare", "--mount", "--propagation", "private",
        "sh", "-c", POD_SHELL, SA_MOUNT, str(volume),
        str(Path(sys.executable).parent / "peerwall"), *agent_args(),
        "--status-file", str(tmp_path / "status.json"),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until(condition: object, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def status(tmp_path: Path) -> dict[str, object]:
    try:
        return dict(json.loads((tmp_path / "status.json").read_text()))
    except (FileNotFoundError, ValueError):
        return {}


async def load(fake: FakeApiServer, *, drop_rule_of: str | None = None) -> None:
    for obj in rbac_objects(liqo_objects("master", "rbac")) + rbac_objects(chart_objects()):
        if (
            drop_rule_of
            and obj["kind"] == "ClusterRole"
            and obj["metadata"]["name"] == ("peerwall-agent")
        ):
            obj["rules"] = [r for r in obj["rules"] if drop_rule_of not in r["resources"]]
        fake.create(obj)
    fake.create(gateway_binding())
    for obj in L.cluster_objects(load_topology((HERE / "seed-topology.yaml").read_text()), "c2"):
        fake.create(obj)


def lo_up(netns: str) -> None:
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)


def test_the_agent_works_in_a_pod_with_exactly_the_charts_rights(
    netns: str, tmp_path: Path
) -> None:
    lo_up(netns)

    async def main() -> None:
        async with FakeApiServer(tls=True, netns=netns) as fake:
            await load(fake)
            async with agent_pod(fake, netns, tmp_path) as proc:
                try:
                    await until(lambda: status(tmp_path).get("ready") is True, "the agent ready")
                except AssertionError:
                    assert proc.stderr is not None
                    raise AssertionError((await proc.stderr.read()).decode()[-3000:]) from None
                assert readyz(netns) == 200
                assert status(tmp_path)["peers"] == [PEER]
                assert proc.returncode is None
            # Every request was the gateway's, over TLS, and none was refused.
            assert fake.denied == []
            users = {u.name for t, u in fake.tokens.items() if t != "fake-token"}
            assert users == {f"system:serviceaccount:{TENANT}:{GATEWAY}"}

    run(main())


def test_one_rule_less_and_the_agent_says_so_in_one_line_and_is_not_ready(
    netns: str, tmp_path: Path
) -> None:
    lo_up(netns)

    async def main() -> None:
        async with FakeApiServer(tls=True, netns=netns) as fake:
            await load(fake, drop_rule_of="peeringsecurities")
            async with agent_pod(fake, netns, tmp_path) as proc:
                refused = lambda: [m for m in fake.denied if "peeringsecurities" in m]  # noqa: E731
                # Refused, retried (with backoff), and meanwhile every other watch is open.
                await until(lambda: len(refused()) >= 2, "the list refused twice")
                await until(lambda: "ready" in status(tmp_path), "a status written")
                assert status(tmp_path)["ready"] is False
                assert readyz(netns) == 503
                assert proc.returncode is None, "not ready, but running: it retries"
            assert proc.stderr is not None
            err = (await proc.stderr.read()).decode()
            lines = [line for line in err.splitlines() if "forbidden" in line]
            assert lines, err
            # One line says it all: what was refused and to whom; no traceback.
            assert (
                'peeringsecurities.peerwall.io is forbidden: User "system:serviceaccount:'
                f'{TENANT}:{GATEWAY}" cannot list resource "peeringsecurities" in API group '
                '"peerwall.io" at the cluster scope'
            ) in lines[0]
            assert "Traceback" not in err
            assert all("peeringsecurities" in line for line in lines)

    run(main())
