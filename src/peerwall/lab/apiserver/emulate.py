"""Serve a topology's clusters as Liqo v1 would leave them: one emulated API server per cluster.

Each server (``server.FakeApiServer``, TLS with its own CA, RBAC, ``fake-token`` an admin) holds
the objects Liqo and Kubernetes would hold there once Liqo has peered the topology
(``liqo_objects.cluster_objects``): ForeignClusters, Configurations, gateways, virtual nodes,
NamespaceOffloadings, pods (shadow and offloaded ones), services and their reflected slices, IPAM.
A kubeconfig per cluster is written into a folder, for ``kubectl`` and for
``peerwall matrix|export --kubeconfig``. Only the API: no packets flow (``lab up`` builds those).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from peerwall.lab.apiserver.liqo_objects import api_cluster_ip, check_cluster_ids, cluster_objects
from peerwall.lab.apiserver.server import FakeApiServer
from peerwall.model import Topology

__all__ = ["check_cluster_ids", "serve"]


async def serve(
    topology: Topology, folder: Path, say: Callable[[str], None], stop: asyncio.Event | None = None
) -> None:
    """Serve every cluster until ``stop`` is set (or SIGINT/SIGTERM); kubeconfigs in ``folder``,
    removed at the end."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        async with AsyncExitStack() as stack:
            for c in topology.clusters:
                fake = await stack.enter_async_context(FakeApiServer(tls=True))
                # A file without an API server gives Liqo's IPAM no api-server IP, so that the
                # clusters read back give the same table as the file.
                api = api_cluster_ip(topology, c.name) if c.api_server else None
                for obj in cluster_objects(topology, c.name, api):
                    fake.create(obj)
                path = fake.kubeconfig(folder / f"{c.name}.kubeconfig")
                written.append(path)
                say(f"{c.name}: {fake.url} (kubectl --kubeconfig {path})")
            say("serving; Ctrl-C stops")
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for path in written:
            path.unlink(missing_ok=True)
