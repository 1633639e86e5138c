"""The install works: Liqo's controller manager may create every gateway's ClusterRoleBinding.

Liqo's controller manager creates, for each WgGatewayServer and WgGatewayClient, the gateway's
ServiceAccount and a ClusterRoleBinding ``<role>-<namespace>-<name>`` to the ClusterRole named by
``--wg-gateway-{server,client}-cluster-role-name`` (liqotech/liqo
``pkg/liqo-controller-manager/networking/external-network/utils/rbac.go``
``EnsureServiceAccountAndClusterRoleBinding``, at 557c199c and v1.2.0). It has no ``bind`` on that
role, so Kubernetes' escalation check applies: it must hold every rule of the role. These tests
evaluate that check (``kubeapi.rbac``) on Liqo's own RBAC, rendered from its chart at each release
(``tests/kubeapi/liqo/``), plus what peerwall's chart adds.
"""

from __future__ import annotations

import pytest

from kubeapi.chart import LIQO_VERSIONS, chart_objects, liqo_objects, rbac_objects
from kubeapi.rbac import RBAC_GROUP, Policy, Request, User
from peerwall.agent.kube.model import Settings
from peerwall.agent.kube.source import watch_specs

LIQO_NS = "liqo"
CONTROLLER_MANAGER = User.service_account(LIQO_NS, "liqo-controller-manager")
TENANT = "liqo-tenant-cluster-b"
GATEWAY = "gw-cluster-b"
PEERWALL_ROLE = "peerwall-gateway"
LIQO_ROLE = "liqo-gateway"


def policy(version: str, *, with_chart: bool = True) -> Policy:
    objs = rbac_objects(liqo_objects(version, "rbac"))
    if with_chart:
        objs += rbac_objects(chart_objects())
    return Policy(objs)


def gateway_binding(role: str) -> dict[str, object]:
    """The ClusterRoleBinding as Liqo's EnsureServiceAccountAndClusterRoleBinding writes it."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": f"{role}-{TENANT}-{GATEWAY}",
            "labels": {
                "networking.liqo.io/gateway-name": GATEWAY,
                "networking.liqo.io/gateway-namespace": TENANT,
                "app.kubernetes.io/managed-by": "liqo",
            },
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": TENANT}],
    }


@pytest.mark.parametrize("version", LIQO_VERSIONS)
@pytest.mark.parametrize("role", [PEERWALL_ROLE, LIQO_ROLE])
def test_liqos_controller_manager_may_create_each_gateways_binding(version: str, role: str) -> None:
    # One binding per gateway, server and client alike: both flags name the same role.
    p = policy(version)
    assert p.allows(CONTROLLER_MANAGER, Request("create", "", "serviceaccounts", TENANT))
    assert p.allows(CONTROLLER_MANAGER, Request("create", RBAC_GROUP, "clusterrolebindings"))
    assert p.allows(CONTROLLER_MANAGER, Request("update", RBAC_GROUP, "clusterrolebindings"))
    assert p.may_write(CONTROLLER_MANAGER, gateway_binding(role)) is None


@pytest.mark.parametrize("version", LIQO_VERSIONS)
def test_without_the_charts_grant_kubernetes_refuses_the_binding(version: str) -> None:
    """The blocker of issue 16, reproduced: the evaluation is not vacuous."""
    p = policy(version)
    grant = p.cluster_bindings.pop("peerwall-grant-liqo-controller-manager")
    assert grant["roleRef"]["name"] == PEERWALL_ROLE
    why = p.may_write(CONTROLLER_MANAGER, gateway_binding(PEERWALL_ROLE))
    assert why is not None
    assert "attempting to grant RBAC permissions not currently held" in why
    assert "list peeringsecurities.peerwall.io" in why
    # Liqo's own role still works without it: Liqo grants that one itself.
    assert p.may_write(CONTROLLER_MANAGER, gateway_binding(LIQO_ROLE)) is None


@pytest.mark.parametrize("version", LIQO_VERSIONS)
def test_the_gateways_serviceaccount_gets_liqos_rules_and_every_watch_of_the_agent(
    version: str,
) -> None:
    p = policy(version)
    p.put(gateway_binding(PEERWALL_ROLE))
    sa = User.service_account(TENANT, GATEWAY)
    # Liqo's own gateway keeps what liqo-gateway gives it.
    for rule in p.cluster_role_rules(LIQO_ROLE):
        assert rule in p.cluster_role_rules(PEERWALL_ROLE)
    for spec, _ in [*watch_specs(Settings(peer="cluster-b")), *watch_specs(Settings())]:
        name = None
        if spec.fields and spec.fields.startswith("metadata.name="):
            name = spec.fields.removeprefix("metadata.name=")
        for verb in ("list", "watch"):
            req = Request(verb, spec.kind.group, spec.kind.plural, spec.namespace, name)
            assert p.allows(sa, req), req


def test_the_agents_roles_give_nothing_beyond_its_watches() -> None:
    """No verb but list and watch (the agent never gets one object), no kind it does not watch."""
    watched = {
        (spec.kind.group, spec.kind.plural)
        for peer in (None, "cluster-b")
        for spec, _ in watch_specs(Settings(peer=peer))
    }
    roles = [
        o
        for o in chart_objects()
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].startswith("peerwall-agent")
    ]
    assert len(roles) == 2
    granted = set()
    for role in roles:
        for rule in role["rules"]:
            assert sorted(rule["verbs"]) == ["list", "watch"], rule
            granted |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == watched
