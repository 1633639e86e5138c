"""Liqo's gateway templates with the peerwall agent added, and nothing else changed.

Liqo builds each peering's gateway from a WgGatewayServerTemplate or WgGatewayClientTemplate in its
namespace (``wireguard-server`` and ``wireguard-client`` by default; liqoctl's
``--gw-server-template-name``/``--gw-client-template-name``). Those of the installed Liqo carry its
containers, arguments, images, scheduling (nodeSelector, affinity, tolerations, priorityClass),
imagePullSecrets, resources and replicas, all of which change between Liqo releases (v1.2.0's
wireguard container takes ``--listen-port``, master's ``--listen-ports``). So the agent is added to
a copy of the cluster's own template rather than to one of ours: the copy's ``spec`` is the
original's with one more container in the gateway pod (``peerwall``), an init container that
installs a fail-closed table before any other starts (``peerwall-fail-closed``), and the in-memory
volume their read-only root filesystems need (``peerwall-tmp``); its metadata is a new name beside the original.

The agent's container is the chart's (``deploy/helm/peerwall/templates/_helpers.tpl``
``peerwall.agentContainer``; a test keeps the two equal), except that the peer's cluster ID comes
from Liqo's ``{{ .ClusterID }}`` in its arguments instead of a pod label the copy must not add.
Liqo renders every string of a template with Go's text/template and turns an all-digit result
into a number, which ``--peer=<id>`` never is.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from peerwall.errors import TemplateError
from peerwall.liqo import Kind

__all__ = [
    "CLIENT_TEMPLATE",
    "DEFAULT_TEMPLATE_NAMES",
    "SERVER_TEMPLATE",
    "AgentContainer",
    "TemplateError",
    "with_agent",
]

Obj = dict[str, Any]

SERVER_TEMPLATE = Kind(
    "WgGatewayServerTemplate", "networking.liqo.io", "v1beta1", "wggatewayservertemplates", True
)
CLIENT_TEMPLATE = Kind(
    "WgGatewayClientTemplate", "networking.liqo.io", "v1beta1", "wggatewayclienttemplates", True
)
DEFAULT_TEMPLATE_NAMES = {SERVER_TEMPLATE: "wireguard-server", CLIENT_TEMPLATE: "wireguard-client"}
"""Liqo's own (``deployments/liqo/templates/liqo-wireguard-gateway-{server,client}-template.yaml``
and the defaults of ``pkg/liqo-controller-manager/networking/forge/gateway{server,client}.go``
``DefaultGw{Server,Client}TemplateName``, at v1.2.0 and 557c199c)."""

AGENT = "peerwall"
INIT = "peerwall-fail-closed"
TMP_VOLUME = "peerwall-tmp"
DERIVED_FROM = "peerwall.io/derived-from"


@dataclass(frozen=True)
class AgentContainer:
    """The agent container's settings (the chart's values of the same names)."""

    image: str
    pull_policy: str = "IfNotPresent"
    security_mode: str = "FullPodToPod"
    security_audit: bool = False
    liqo_namespace: str = "liqo"
    tunnel_pattern: str = "liqo-tunnel*"
    resync_interval: int = 10
    """Seconds between drift repairs."""
    metrics_port: int = 9090
    log_level: str = "info"
    resources: Obj = field(
        default_factory=lambda: {
            "requests": {"cpu": "10m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        }
    )

    def container(self) -> Obj:
        return {
            "name": AGENT,
            "image": self.image,
            "imagePullPolicy": self.pull_policy,
            "args": [
                "agent",
                "--source=kubernetes",
                "--peer={{ .ClusterID }}",
                f"--set=networking.securityMode={self.security_mode}",
                f"--set=networking.securityAudit={str(self.security_audit).lower()}",
                f"--tunnel-pattern={self.tunnel_pattern}",
                f"--resync-interval={self.resync_interval}",
                # The endpoint listens on the pod's address only (issue 14: not on every address).
                f"--metrics-address=$(POD_IP):{self.metrics_port}",
                f"--log-level={self.log_level}",
                f"--liqo-namespace={self.liqo_namespace}",
            ],
            "env": [
                {
                    "name": "POD_NAMESPACE",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
            "ports": [
                {"containerPort": self.metrics_port, "name": "pw-metrics", "protocol": "TCP"}
            ],
            # A stopped or hung agent is restarted within 10 s; the startup probe gives its first
            # sync a minute before the liveness probe counts (issue 18).
            "startupProbe": {
                "httpGet": {"path": "/healthz", "port": "pw-metrics"},
                "periodSeconds": 1,
                "failureThreshold": 60,
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "pw-metrics"},
                "periodSeconds": 5,
                "timeoutSeconds": 2,
                "failureThreshold": 2,
            },
            "readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "pw-metrics"},
                "periodSeconds": 5,
                "failureThreshold": 2,
            },
            "resources": copy.deepcopy(self.resources),
            "securityContext": copy.deepcopy(_SECURITY_CONTEXT),
            "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
        }

    def init_container(self) -> Obj:
        """Installs a fail-closed table before the gateway's containers start, so that the
        gateway never forwards before the agent's table is there."""
        return {
            "name": INIT,
            "image": self.image,
            "imagePullPolicy": self.pull_policy,
            "args": [
                "agent",
                "--source=kubernetes",
                f"--tunnel-pattern={self.tunnel_pattern}",
                "--fail-closed-only",
            ],
            "securityContext": copy.deepcopy(_SECURITY_CONTEXT),
            "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
        }


_SECURITY_CONTEXT: Obj = {
    "runAsUser": 0,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _at(obj: Any, path: tuple[str, ...], where: str) -> Any:
    for i, key in enumerate(path):
        if not isinstance(obj, dict) or key not in obj:
            raise TemplateError(f"{where}: no {'.'.join(path[: i + 1])}")
        obj = obj[key]
    return obj


POD_SPEC = ("spec", "template", "spec", "deployment", "spec", "template", "spec")


def with_agent(template: Obj, agent: AgentContainer, suffix: str = "-peerwall") -> Obj:
    """A copy of Liqo's gateway template ``template`` named ``<name><suffix>`` beside it, whose
    gateway pod also runs the agent. The original is not changed."""
    meta = template.get("metadata") or {}
    where = f"{template.get('kind', '?')} {meta.get('namespace', '')}/{meta.get('name', '?')}"
    if template.get("kind") not in (SERVER_TEMPLATE.kind, CLIENT_TEMPLATE.kind):
        raise TemplateError(f"{where}: not a Liqo WireGuard gateway template")
    spec = copy.deepcopy(template["spec"])
    pod = _at({"spec": spec}, POD_SPEC, where)
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        raise TemplateError(f"{where}: the gateway pod has no containers")
    names = {c.get("name") for c in containers} | {
        c.get("name") for c in pod.get("initContainers") or []
    }
    if AGENT in names or INIT in names:
        raise TemplateError(f"{where}: already has a {AGENT} container")
    volumes = pod.setdefault("volumes", [])
    if any(v.get("name") == TMP_VOLUME for v in volumes):
        raise TemplateError(f"{where}: already has a volume {TMP_VOLUME}")
    containers.append(agent.container())
    pod.setdefault("initContainers", []).insert(0, agent.init_container())
    volumes.append({"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}})
    return {
        "apiVersion": template["apiVersion"],
        "kind": template["kind"],
        "metadata": {
            "name": f"{meta.get('name')}{suffix}",
            "namespace": meta.get("namespace"),
            "labels": {
                "app.kubernetes.io/part-of": "peerwall",
                DERIVED_FROM: str(meta.get("name")),
            },
            "annotations": {
                f"{DERIVED_FROM}-resource-version": str(meta.get("resourceVersion", "")),
            },
        },
        "spec": spec,
    }
