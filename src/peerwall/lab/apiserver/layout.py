"""Where a Liqo-shaped lab's API servers listen and keep their files, and the chart's gateway pod
they serve: what the lab's commands need without the server itself (``labserve``, which brings
aiohttp, jsonschema and kubernetes-validate: ~0.4 s of CPU that every ``peerwall lab`` command
paid at start when ``lab.liqo`` imported it for these names).
"""

from __future__ import annotations

from functools import cache
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

API_ADDRESS = IPv4Address("169.254.99.1")
"""On the node's loopback in each cluster: KUBERNETES_SERVICE_HOST of its gateways' agents."""
KUBE_API_PORT = 6443
GATEWAY_POD = Path(__file__).parent / "gateway_pod.yaml"

Obj = dict[str, Any]


@cache
def gateway_pod() -> tuple[Obj, list[Obj]]:
    """(the chart's peerwall container, the chart's RBAC objects), from ``gateway_pod.yaml``."""
    docs = [d for d in yaml.safe_load_all(GATEWAY_POD.read_text()) if d]
    (container,) = [d for d in docs if d["kind"] == "Container"]
    return container, [d for d in docs if d["kind"] != "Container"]


def folder_of(lab: Path, cluster: str) -> Path:
    """The files of ``cluster``'s API server in the lab folder ``lab``."""
    return lab / "api" / cluster


def log_path(lab: Path) -> Path:
    """The log of the process serving the lab's API servers."""
    return lab / "api" / "server.log"
