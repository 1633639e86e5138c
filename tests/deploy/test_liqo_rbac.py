"""The install works: Liqo's controller manager may create every gateway's ClusterRoleBinding.

Liqo's controller manager creates, for each WgGatewayServer and WgGatewayClient, the gateway's
ServiceAccount and a ClusterRoleBinding ``<role>-<namespace>-<name>`` to the ClusterRole named by
``--wg-gateway-{server,client}-cluster-role-name`` (liqotech/liqo
``pkg/liqo-controller-manager/networking/external-network/utils/rbac.go``
``EnsureServiceAccountAndClusterRoleBinding``, at 557c199c and v1.2.0). It has no ``bind`` on that
role, so Kubernetes' escalation check applies: it must hold every rule of the role. These tests
evaluate that check (``peerwall.lab.apiserver.rbac``) on Liqo's own RBAC, rendered from its chart at each release
(``tests/kubeapi/liqo/``), plus what peerwall's chart adds.
"""

from __future__ import annotations

import pytest

from kubeapi.chart import LIQO_VERSIONS, chart_objects, liqo_objects, rbac_objects
from kubeapi.rbac import RBAC_GROUP, Policy, Request, User
from peerwall.agent.kube.source import watch_specs
from peerwall.settings import KubeSettings

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
    for spec, _ in [*watch_specs(KubeSettings(peer="cluster-b")), *watch_specs(KubeSettings())]:
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
        for spec, _ in watch_specs(KubeSettings(peer=peer))
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


def _binding(kind: str, role: str, sa_ns: str, sa: str, ns: str | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": f"{role}-{sa}"}
    if ns is not None:
        meta["namespace"] = ns
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
    }


@pytest.mark.parametrize("version", LIQO_VERSIONS)
def test_liqos_other_bindings_pass_the_same_check_with_the_chart_installed(version: str) -> None:
    """The evaluation is not too strict either: Liqo's own bindings (the virtual kubelet's,
    ``pkg/vkMachinery/forge/creation.go``; the tenant namespace's, ``pkg/tenantNamespace/
    bindings.go``) are allowed, as they are on a real cluster."""
    p = policy(version)
    vk = "virtual-kubelet-c1"
    for binding in (
        _binding("ClusterRoleBinding", "liqo-virtual-kubelet-local", TENANT, vk),
        _binding("RoleBinding", "liqo-virtual-kubelet-remote", TENANT, vk, ns=TENANT),
        _binding("ClusterRoleBinding", "liqo-virtual-kubelet-remote-clusterwide", TENANT, vk),
    ):
        assert p.may_write(CONTROLLER_MANAGER, binding) is None, binding


def test_the_escalation_rule_as_kubernetes_states_it() -> None:
    """Covers (policy_comparator.go): every atomic rule held, wildcards covering, a named rule
    never covering the whole resource; ``bind`` on the role instead; ``escalate`` for roles."""
    user = User.service_account("ns", "creator")
    holder = {"kind": "ServiceAccount", "name": "creator", "namespace": "ns"}

    def world(*rules: dict[str, object]) -> Policy:
        return Policy(
            [
                {"kind": "ClusterRole", "metadata": {"name": "held"}, "rules": list(rules)},
                {
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "held"},
                    "roleRef": {"kind": "ClusterRole", "name": "held"},
                    "subjects": [holder],
                },
                {
                    "kind": "ClusterRole",
                    "metadata": {"name": "wanted"},
                    "rules": [
                        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}
                    ],
                },
            ]
        )

    wanted = _binding("ClusterRoleBinding", "wanted", "x", "y")
    pods = {"apiGroups": [""], "resources": ["pods"]}
    assert world({**pods, "verbs": ["list", "watch"]}).may_write(user, wanted) is None
    assert world({**pods, "verbs": ["*"]}).may_write(user, wanted) is None
    assert (
        world({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}).may_write(user, wanted)
        is None
    )
    why = world({**pods, "verbs": ["list"]}).may_write(user, wanted)
    assert why is not None and "watch pods at the cluster scope" in why
    assert "list pods" not in why
    named = {**pods, "verbs": ["list", "watch"], "resourceNames": ["one"]}
    assert world(named).may_write(user, wanted) is not None
    # In a namespace only: not enough for a ClusterRoleBinding.
    p = world()
    p.put(
        {
            "kind": "RoleBinding",
            "metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"kind": "ClusterRole", "name": "wanted"},
            "subjects": [holder],
        }
    )
    assert p.may_write(user, wanted) is not None
    assert p.may_write(user, _binding("RoleBinding", "wanted", "x", "y", ns="ns")) is None
    # bind on that role (by name) instead of its rules.
    bind = {"apiGroups": [RBAC_GROUP], "resources": ["clusterroles"], "verbs": ["bind"]}
    assert world({**bind, "resourceNames": ["wanted"]}).may_write(user, wanted) is None
    assert world({**bind, "resourceNames": ["other"]}).may_write(user, wanted) is not None
    # Roles: escalate, or hold the rules.
    role = {
        "kind": "ClusterRole",
        "metadata": {"name": "new"},
        "rules": [{**pods, "verbs": ["get"]}],
    }
    assert world({**pods, "verbs": ["list"]}).may_write(user, role) is not None
    escalate = {"apiGroups": [RBAC_GROUP], "resources": ["clusterroles"], "verbs": ["escalate"]}
    assert world(escalate).may_write(user, role) is None
