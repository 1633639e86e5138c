"""The emulated API servers of a Liqo-shaped lab (``lab up --shape liqo``), one per cluster, in one
process.

``python -m peerwall.lab.apiserver.labserve --folder LAB --cluster C --netns NODE [--cluster C2
--netns NODE2 …]`` serves, for each cluster ``C``, the objects Liqo and Kubernetes would hold in
``C`` for the lab's topology (``liqo_objects.cluster_objects``), the chart's RBAC
(``gateway_pod.yaml``) and, for each peer, the ClusterRoleBinding Liqo's controller manager
creates for that peer's gateway. Each cluster's server is a server of its own (its objects,
resourceVersions, CA and certificate, tokens and RBAC, its sockets); they share the process only
(one interpreter, and the parsed schemas, instead of one per cluster: about 0.6 s of CPU per
cluster saved at every ``lab up``). Each listens twice:

* in the cluster's node namespace ``NODE`` at ``API_ADDRESS:KUBE_API_PORT``, which every gateway of
  the cluster reaches through its ``eth0`` (the certificate names that address);
* on 127.0.0.1 of this machine (a random port), for ``kubectl`` and ``peerwall lab kubeconfig``.

Each cluster's files are in ``LAB/api/C/``: ``pki/`` (kept across restarts), ``sa/gw-<peer>/``
(each gateway's ServiceAccount volume: ``token``, ``ca.crt``, ``namespace``; the token is kept
too, so an agent outlives a restart of its API server), ``kubeconfig`` (an admin's, written once
serving); the process's log is ``LAB/api/server.log``, each line naming its cluster. The objects
live in memory: a restart reloads them from the topology, and edits made meanwhile are lost (as
on a cluster whose etcd was wiped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from peerwall.lab.apiserver.layout import API_ADDRESS, KUBE_API_PORT, folder_of, gateway_pod
from peerwall.lab.apiserver.liqo_objects import cluster_objects, tenant
from peerwall.lab.apiserver.rbac import User
from peerwall.lab.apiserver.server import FakeApiServer
from peerwall.model import Topology, load_topology

Obj = dict[str, Any]


def gateway_account(peer: str) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount of the gateway for ``peer``: Liqo's
    ``gw-<peer>`` in the tenant namespace."""
    return tenant(peer), f"gw-{peer}"


def gateway_binding(peer: str) -> Obj:
    """As Liqo's EnsureServiceAccountAndClusterRoleBinding writes it for that gateway."""
    namespace, name = gateway_account(peer)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"peerwall-gateway-{namespace}-{name}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "peerwall-gateway",
        },
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


ENDPOINT_CONTROLLER = "endpointslice-controller.k8s.io"


class LabApiServer(FakeApiServer):
    """The emulated API server plus the one reaction of Kubernetes' EndpointSlice controller that
    the lab's edits need: a deleted pod (a Deployment scaled down, ``kubectl delete pod``) leaves
    the slices that controller manages in its namespace, so its services lose that backend.
    Slices reflected by Liqo (managed by its reflection) follow their home cluster's, not this."""

    def delete(self, obj: Obj) -> Obj:
        gone = super().delete(obj)
        if gone.get("kind") != "Pod":
            return gone
        address = (gone.get("status") or {}).get("podIP")
        namespace = gone["metadata"].get("namespace")
        for (res, ns, _), found in list(self.objects.items()):
            labels = found["metadata"].get("labels") or {}
            if (
                res.kind != "EndpointSlice"
                or ns != namespace
                or labels.get("endpointslice.kubernetes.io/managed-by") != ENDPOINT_CONTROLLER
            ):
                continue
            endpoints = found.get("endpoints") or []
            kept = [e for e in endpoints if address not in (e.get("addresses") or [])]
            if kept != endpoints:
                self.update({**found, "endpoints": kept})
        return gone


async def serve(lab: Path, clusters: Sequence[tuple[str, str]]) -> None:
    """Serve the API server of each (cluster, node namespace) until SIGINT or SIGTERM."""
    topology = load_topology((lab / "topology.yaml").read_text(), str(lab / "topology.yaml"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        fakes = {}
        for cluster, netns in clusters:
            fakes[cluster] = await stack.enter_async_context(
                cluster_server(lab, topology, cluster, netns)
            )
        await stop.wait()
        for cluster, fake in fakes.items():
            for message in fake.denied:
                print(f"{cluster}: refused: {message}")


@contextlib.asynccontextmanager
async def cluster_server(
    lab: Path, topology: Topology, cluster: str, netns: str
) -> AsyncIterator[LabApiServer]:
    """``cluster``'s API server, serving (its kubeconfig written) until the block ends."""
    here = folder_of(lab, cluster)
    (here / "pki").mkdir(parents=True, exist_ok=True)
    fake = LabApiServer(
        tls=True,
        binds=[(netns, str(API_ADDRESS), KUBE_API_PORT)],
        pki_dir=here / "pki",
    )
    async with fake:
        _, rbac = gateway_pod()
        for obj in rbac:
            fake.create(obj)
        # Liqo's IP resource of the API server holds the address of the lab's API host (the one
        # the probes dial, reached through the remapping as Liqo reaches a peer's); a file that
        # names no API server gives Liqo's IPAM none.
        for obj in cluster_objects(topology, cluster):
            fake.create(obj)
        for peer in topology.peers[cluster]:
            fake.create(gateway_binding(peer))
            namespace, name = gateway_account(peer)
            volume = here / "sa" / name
            token_file = volume / "token"
            if token_file.exists():
                fake.tokens[token_file.read_text()] = User.service_account(namespace, name)
            else:
                fake.service_account_volume(volume, namespace, name)
        fake.kubeconfig(here / ".kubeconfig.tmp")
        os.replace(here / ".kubeconfig.tmp", here / "kubeconfig")
        print(f"{cluster}: serving on {fake.url} and {API_ADDRESS}:{KUBE_API_PORT} in {netns}")
        sys.stdout.flush()
        yield fake


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m peerwall.lab.apiserver.labserve")
    parser.add_argument("--folder", required=True, type=Path)
    parser.add_argument("--cluster", required=True, action="append", help="repeatable")
    parser.add_argument(
        "--netns", required=True, action="append", help="the node of each --cluster, in order"
    )
    args = parser.parse_args(argv)
    if len(args.cluster) != len(args.netns):
        parser.error("give one --netns per --cluster, in the same order")
    asyncio.run(serve(args.folder, list(zip(args.cluster, args.netns, strict=True))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
