"""The Helm chart deploy/helm/peerwall, rendered by a real helm and checked against the Kubernetes
schemas (kubernetes-validate).

Liqo's gateway template kinds are not Kubernetes kinds, so the Deployment and pod template they
embed are validated on their own, as Helm leaves them (Liqo's ``{{ .Name }}`` placeholders still
in) and as Liqo's gateway operator would render them for one peering (``liqo_render``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from peerwall.agent.kube.source import watch_specs
from peerwall.model import SecurityMode
from peerwall.settings import KubeSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "peerwall"
RELEASE = "peerwall"
NAMESPACE = "peerwall"
MODES = [m.value for m in SecurityMode]
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value
TEMPLATE_KINDS = {"WgGatewayServerTemplate", "WgGatewayClientTemplate"}
# The oldest Kubernetes the chart admits (Chart.yaml kubeVersion) and the newest the validator knows.
K8S_VERSIONS = ["1.26.0", kubernetes_validate.latest_version()]


def helm_binary() -> str:
    """helm beside this Python (make venv puts it in .venv/bin), in the repository's .venv, or on PATH."""
    for candidate in (Path(sys.executable).parent / "helm", ROOT / ".venv" / "bin" / "helm"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("helm")
    if found is None:
        pytest.fail("no helm binary: `make venv` extracts one into .venv/bin (see the Makefile)")
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, check=False, timeout=60
    )


def template_args(sets: tuple[str, ...]) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds"]
    for s in sets:
        args += ["--set", s]
    return args


@cache
def rendered(*sets: str) -> str:
    done = helm(*template_args(sets))
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(*sets: str) -> tuple[dict[str, Any], ...]:
    """The chart's objects for these ``--set`` values: helm runs once per values, the objects are
    parsed anew for each caller, which may change them."""
    return tuple(d for d in yaml.safe_load_all(rendered(*sets)) if d)


def render_error(*sets: str) -> str:
    done = helm(*template_args(sets))
    assert done.returncode != 0, f"helm template accepted {sets}"
    return done.stderr


def one(objs: tuple[dict[str, Any], ...], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{len(found)} objects of kind {kind} named {name}"
    return found[0]


def deployment_of(template: dict[str, Any]) -> dict[str, Any]:
    """The Deployment a gateway template describes, as an apps/v1 object."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        **template["spec"]["template"]["spec"]["deployment"],
    }


def pod_of(template: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a gateway template's Deployment, as a v1 Pod (its spec: a PodSpec)."""
    return {"apiVersion": "v1", "kind": "Pod", **deployment_of(template)["spec"]["template"]}


def container(template: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod_of(template)["spec"]["containers"] if c["name"] == name]
    return found


def agents(*sets: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The peerwall container of each gateway template, with the template's kind."""
    for o in render(*sets):
        if o["kind"] in TEMPLATE_KINDS:
            yield o["kind"], container(o, "peerwall")


def validate(obj: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.absolute_path)
            pytest.fail(
                f"{obj['kind']} {obj['metadata'].get('name')} at {path} (Kubernetes {version}): {e.message}"
            )


# --- Liqo's rendering of a gateway template, in Python --------------------------------------------

# Liqo v1.2.0, pkg/liqo-controller-manager/networking/external-network/utils/template.go,
# RenderTemplate: every string of the template is a Go text/template; a result that parses as an
# integer becomes one, except under a map that has a "labels" or "annotations" key (metadata),
# whose values stay strings; a key "?k" becomes "k", and is dropped when its value renders empty.
# Only the placeholders the chart uses are understood: any other template text fails the test.
PLACEHOLDER = re.compile(r"\{\{\s*(?:(index)\s+)?\.([A-Za-z.]+)(?:\s+(\d+))?\s*\}\}")


def _lookup(data: dict[str, Any], path: str, index: str | None) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if index is not None:
        value = value[int(index)]
    return value


def _render_string(text: str, data: dict[str, Any]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = _lookup(data, m.group(2), m.group(3) if m.group(1) else None)
        return "" if value is None else str(value)

    out = PLACEHOLDER.sub(sub, text)
    assert "{{" not in out, f"template text Liqo's renderer is not mimicked for: {text!r}"
    return out


def liqo_render(obj: Any, data: dict[str, Any], force_string: bool = False) -> Any:
    if isinstance(obj, str):
        out = _render_string(obj, data)
        if not force_string and re.fullmatch(r"[+-]?\d+", out):
            return int(out)
        return out
    if isinstance(obj, dict):
        strings = force_string or "labels" in obj or "annotations" in obj
        result: dict[str, Any] = {}
        for key, value in obj.items():
            rendered = liqo_render(value, data, strings)
            if key.startswith("?"):
                if rendered in ("", 0):
                    continue
                key = key[1:]
            result[key] = rendered
        return result
    if isinstance(obj, list):
        return [liqo_render(v, data, force_string) for v in obj]
    if force_string:  # Go's fmt.Sprintf("%v", obj)
        return str(obj).lower() if isinstance(obj, bool) else str(obj)
    return obj


def peering_data(kind: str) -> dict[str, Any]:
    """What Liqo's gateway operator passes to a template for one peering (templateData)."""
    endpoint: dict[str, Any] = {"Port": 51840, "ServiceType": "LoadBalancer", "NodePort": None}
    if kind == "WgGatewayClientTemplate":
        endpoint = {"Addresses": ["203.0.113.7"], "Port": 51840, "Protocol": "UDP"}
    return {
        "Name": "cluster-b",
        "Namespace": "liqo-tenant-cluster-b",
        "ClusterID": "cluster-b",
        "GatewayUID": "5f0c8f1e-3c7a-4d0e-9a57-8d4a1b2c3d4e",
        "SecretName": "gw-keys-cluster-b",
        "Spec": {"MTU": 1340, "Endpoint": endpoint, "SecretRef": {"Name": "gw-keys-cluster-b"}},
    }


# --- helm lint and schema validation of every rendered object -------------------------------------


def test_helm_lint_passes() -> None:
    done = helm("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_validator_is_not_vacuous() -> None:
    pod = pod_of(one(render(), "WgGatewayServerTemplate"))
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = "NET_ADMIN"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSIONS[0], strict=True)


def test_default_values_render_objects_that_validate() -> None:
    objs = render()
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ClusterRole", "peerwall-agent"),
        ("ClusterRole", "peerwall-agent-liqo-namespace"),
        ("ClusterRole", "peerwall-gateway"),
        ("ClusterRoleBinding", "peerwall-grant-liqo-controller-manager"),
        ("CustomResourceDefinition", "peeringsecurities.peerwall.io"),
        ("WgGatewayClientTemplate", "peerwall-wireguard-client"),
        ("WgGatewayServerTemplate", "peerwall-wireguard-server"),
    ]
    for o in objs:
        if o["kind"] in TEMPLATE_KINDS:
            validate(deployment_of(o))
            validate(pod_of(o))
        else:
            validate(o)


@pytest.mark.parametrize("kind", sorted(TEMPLATE_KINDS))
def test_liqo_renders_each_template_into_valid_objects(kind: str) -> None:
    template = one(render(), kind)
    assert template["apiVersion"] == "networking.liqo.io/v1beta1"
    assert template["metadata"]["namespace"] == "liqo"
    assert template["spec"]["objectKind"] == {
        "apiVersion": "networking.liqo.io/v1beta1",
        "kind": kind.removesuffix("Template"),
    }
    data = peering_data(kind)
    spec = liqo_render(template["spec"]["template"]["spec"], data)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", **spec["deployment"]}
    validate(deployment)
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["liqo.io/remote-cluster-id"] == data["ClusterID"]
    assert set(deployment["spec"]["selector"]["matchLabels"].items()) <= set(
        pod["metadata"]["labels"].items()
    )
    assert [c["name"] for c in pod["spec"]["containers"]] == [
        "gateway",
        "wireguard",
        "geneve",
        "peerwall",
    ]
    if kind == "WgGatewayServerTemplate":
        service = {"apiVersion": "v1", "kind": "Service", **spec["service"]}
        validate(service)
        assert service["spec"]["ports"] == [
            {"port": 51840, "protocol": "UDP", "targetPort": 51840}
        ], "?nodePort must be dropped when the endpoint has none"
        assert set(service["spec"]["selector"].items()) <= set(pod["metadata"]["labels"].items())


# --- the agent container ---------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [(), (f"networking.securityMode={SEG}",)])
def test_the_mode_reaches_the_agent_in_both_templates(sets: tuple[str, ...]) -> None:
    mode = sets[0].split("=", 1)[1] if sets else SecurityMode.FULL_POD_TO_POD.value
    found = dict(agents(*sets))
    assert set(found) == TEMPLATE_KINDS
    for agent in found.values():
        assert f"--set=networking.securityMode={mode}" in agent["args"]
        assert sum("securityMode" in a for a in agent["args"]) == 1


def test_audit_reaches_the_agent_and_must_be_a_boolean() -> None:
    found = dict(agents("networking.securityAudit=true"))
    assert set(found) == TEMPLATE_KINDS
    for agent in found.values():
        assert "--set=networking.securityAudit=true" in agent["args"]
    assert "securityAudit" in render_error("networking.securityAudit=maybe")


def test_agent_command_line_follows_the_contract() -> None:
    sets = (
        "agent.resyncInterval=30",
        "agent.metricsPort=9464",
        "agent.tunnelPattern=wg*",
        "agent.logLevel=debug",
        "image.repository=registry.example.com/peerwall",
        "image.tag=1.2.3",
    )
    for _, agent in agents(*sets):
        assert agent["image"] == "registry.example.com/peerwall:1.2.3"
        assert agent["args"] == [
            "agent",
            "--source=kubernetes",
            "--peer=$(PEERWALL_PEER)",
            f"--set=networking.securityMode={MODES[0]}",
            "--set=networking.securityAudit=false",
            "--tunnel-pattern=wg*",
            "--resync-interval=30",
            "--metrics-address=$(POD_IP):9464",
            "--log-level=debug",
            "--liqo-namespace=liqo",
        ]
        assert agent["env"] == [
            {
                "name": "PEERWALL_PEER",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['liqo.io/remote-cluster-id']"}
                },
            },
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
        assert agent["ports"] == [{"containerPort": 9464, "name": "pw-metrics", "protocol": "TCP"}]
        assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "pw-metrics"}
        assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "pw-metrics"}


def test_agent_defaults() -> None:
    for _, agent in agents():
        assert agent["image"] == "peerwall:0.1.0", "image.tag defaults to the chart's appVersion"
        assert "--resync-interval=10" in agent["args"]
        assert "--metrics-address=$(POD_IP):9090" in agent["args"]
        assert "--tunnel-pattern=liqo-tunnel*" in agent["args"]
        assert "--log-level=info" in agent["args"]


def test_agent_strings_are_never_whole_numbers() -> None:
    """Liqo turns a rendered string that is a whole number into an integer (see liqo_render)."""

    def strings(x: Any) -> Iterator[str]:
        if isinstance(x, str):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)

    for _, agent in agents():
        assert [s for s in strings(agent) if re.fullmatch(r"[+-]?\d+", s)] == []


def test_agent_adds_net_admin_only_and_drops_everything_else() -> None:
    for _, agent in agents():
        sc = agent["securityContext"]
        assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
        assert sc["privileged"] is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True


def test_liqo_containers_keep_their_own_settings() -> None:
    """Liqo's three containers as in Liqo v1.2.0's templates: only the agent is new."""
    for o in render():
        if o["kind"] not in TEMPLATE_KINDS:
            continue
        mode = "server" if o["kind"] == "WgGatewayServerTemplate" else "client"
        gateway, wireguard = container(o, "gateway"), container(o, "wireguard")
        assert gateway["image"] == "ghcr.io/liqotech/gateway:v1.2.0"
        assert gateway["securityContext"] == {
            "privileged": True,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"]},
        }
        assert f"--mode={mode}" in gateway["args"] and f"--mode={mode}" in wireguard["args"]
        assert "--global-labels=liqo.io/managed=true" in gateway["args"]
        assert {v["name"] for v in pod_of(o)["spec"]["volumes"]} == {
            "wireguard-config",
            "ipc",
            "peerwall-tmp",
        }


# --- values that helm must refuse ------------------------------------------------------------------


def test_an_unknown_mode_fails_naming_the_valid_ones() -> None:
    err = render_error("networking.securityMode=Bogus")
    assert (
        "- at '/networking/securityMode': value must be one of "
        "'FullPodToPod', 'IntraClusterTrafficSegregation'"
    ) in err


def test_an_unknown_top_level_key_fails() -> None:
    err = render_error("securitymode=FullPodToPod")
    assert "additional properties 'securitymode' not allowed" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("agent.resyncIntervall=5", "additional properties 'resyncIntervall' not allowed"),
        ("agent.metricsPort=0", "at '/agent/metricsPort'"),
        ("agent.logLevel=verbose", "at '/agent/logLevel'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
    ],
)
def test_misspelt_or_invalid_nested_values_fail(value: str, message: str) -> None:
    assert message in render_error(value)


# --- RBAC --------------------------------------------------------------------------------------------


def test_rbac_is_read_only_and_limited_to_the_watched_kinds() -> None:
    objs = render("agent.debugServiceAccount=true")
    roles = [o for o in objs if o["kind"] in ("ClusterRole", "Role")]
    for role in roles:
        for rule in role.get("rules", []):
            assert sorted(rule["verbs"]) == ["list", "watch"], rule
    agent_rules = [
        rule
        for name in ("peerwall-agent", "peerwall-agent-liqo-namespace")
        for rule in one(objs, "ClusterRole", name)["rules"]
    ]
    granted = {
        (group, resource)
        for rule in agent_rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    # Exactly what the Kubernetes source watches (sidecar mode or not): nothing more, and nothing
    # missing (a missing kind would be a 403 forever, and the agent would stay fail-closed).
    watched = {
        (spec.kind.group, spec.kind.plural)
        for peer in (None, "peer-1")
        for spec, _role in watch_specs(KubeSettings(peer=peer))
    }
    assert granted == watched
    # What is read only in Liqo's namespace is granted there only (to the agent's own account).
    in_liqo_ns = {
        (spec.kind.group, spec.kind.plural)
        for spec, _role in watch_specs(KubeSettings())
        if spec.namespace is not None
    }
    namespaced = one(objs, "ClusterRole", "peerwall-agent-liqo-namespace")["rules"]
    assert {
        (g, r) for rule in namespaced for g in rule["apiGroups"] for r in rule["resources"]
    } == (in_liqo_ns)
    (configmaps,) = [r for r in agent_rules if "configmaps" in r["resources"]]
    assert configmaps["resources"] == ["configmaps"]
    assert configmaps["resourceNames"] == ["liqo-clusterid-configmap"]
    subject = [{"kind": "ServiceAccount", "name": "peerwall-agent", "namespace": NAMESPACE}]
    binding = one(objs, "ClusterRoleBinding", "peerwall-agent")
    assert (binding["roleRef"]["name"], binding["subjects"]) == ("peerwall-agent", subject)
    local = one(objs, "RoleBinding", "peerwall-agent")
    assert local["metadata"]["namespace"] == "liqo"
    assert (local["roleRef"]["name"], local["subjects"]) == (
        "peerwall-agent-liqo-namespace",
        subject,
    )


def test_the_charts_gateway_templates_are_optional() -> None:
    assert {o["kind"] for o in render()} >= TEMPLATE_KINDS
    off = render("liqo.gatewayTemplates=false")
    assert not {o["kind"] for o in off} & TEMPLATE_KINDS
    # The RBAC that makes the install work does not depend on them.
    assert one(off, "ClusterRoleBinding", "peerwall-grant-liqo-controller-manager")


def test_the_debugging_serviceaccount_is_optional() -> None:
    kinds = {o["kind"] for o in render()}
    assert not kinds & {"ServiceAccount", "RoleBinding"}
    assert {o["kind"] for o in render("agent.debugServiceAccount=true")} >= {
        "ServiceAccount",
        "RoleBinding",
    }


def test_gateway_role_aggregates_liqos_gateway_role_and_the_agents() -> None:
    objs = render()
    gateway_role = one(objs, "ClusterRole", "peerwall-gateway")
    assert "rules" not in gateway_role, "an aggregated role's rules are filled by Kubernetes"
    selectors = [s["matchLabels"] for s in gateway_role["aggregationRule"]["clusterRoleSelectors"]]
    for name in ("peerwall-agent", "peerwall-agent-liqo-namespace"):
        labels = one(objs, "ClusterRole", name)["metadata"]["labels"]
        assert any(set(s.items()) <= set(labels.items()) for s in selectors), name
    assert {
        "app.kubernetes.io/name": "gateway",
        "app.kubernetes.io/component": "networking",
        "app.kubernetes.io/part-of": "liqo",
    } in selectors


# --- the PeeringSecurity CRD ---------------------------------------------------------------------


def crd() -> dict[str, Any]:
    return one(render(), "CustomResourceDefinition", "peeringsecurities.peerwall.io")


def test_peeringsecurity_crd_shape() -> None:
    spec = crd()["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        "peerwall.io",
        "Cluster",
        "PeeringSecurity",
    )
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["ClusterID"] == ".spec.clusterID"
    assert columns["Mode"] == ".spec.securityMode"
    body = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert sorted(body["required"]) == ["clusterID", "securityMode"]
    assert body["properties"]["clusterID"]["type"] == "string"
    assert body["properties"]["securityMode"]["enum"] == MODES


def test_the_modes_are_spelt_alike_in_code_crd_and_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["networking"]["properties"]["securityMode"]["enum"] == MODES
    assert (
        yaml.safe_load((CHART / "values.yaml").read_text())["networking"]["securityMode"]
        == MODES[0]
    )


def peering_security(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "peerwall.io/v1alpha1",
        "kind": "PeeringSecurity",
        "metadata": {"name": "cluster-b"},
        "spec": {"clusterID": "cluster-b", "securityMode": mode},
    }


def test_peeringsecurity_objects_are_checked_by_the_crd_schema() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.validate(peering_security(SEG), schema)
    with pytest.raises(jsonschema.ValidationError, match="is not one of"):
        jsonschema.validate(peering_security("Bogus"), schema)
    missing = peering_security(SEG)
    del missing["spec"]["clusterID"]
    with pytest.raises(jsonschema.ValidationError, match="'clusterID' is a required property"):
        jsonschema.validate(missing, schema)


def test_the_rendered_agent_command_line_is_one_the_agent_accepts() -> None:
    """The chart and the CLI agree: the container's args parse as `peerwall agent` options (the
    parsed values are checked; nothing runs)."""
    import typer.main

    from peerwall.cli.main import app

    command = typer.main.get_command(app)
    for _, agent in agents(f"networking.securityMode={SEG}"):
        args = [
            a.replace("$(PEERWALL_PEER)", "cluster-b").replace("$(POD_IP)", "10.0.0.7")
            for a in agent["args"]
        ]
        assert args[0] == "agent"
        sub = command.get_command(None, "agent")  # type: ignore[attr-defined]
        ctx = sub.make_context("agent", args[1:])
        assert ctx.params["source"] == "kubernetes"
        assert ctx.params["peer"] == "cluster-b"
        assert ctx.params["set_"] == [
            f"networking.securityMode={SEG}",
            "networking.securityAudit=false",
        ]
        assert ctx.params["tunnel_pattern"] == "liqo-tunnel*"
        assert ctx.params["resync_interval"] == 10.0
        assert ctx.params["liqo_namespace"] == "liqo"
        assert ctx.params["metrics_address"] == "10.0.0.7:9090"


def test_an_init_container_installs_a_fail_closed_table_before_the_gateway_starts() -> None:
    import typer.main

    from peerwall.cli.main import app

    command = typer.main.get_command(app)
    for o in render("agent.tunnelPattern=wg*"):
        if o["kind"] not in TEMPLATE_KINDS:
            continue
        (init,) = pod_of(o)["spec"]["initContainers"]
        assert init["name"] == "peerwall-fail-closed"
        assert init["image"] == container(o, "peerwall")["image"]
        assert init["args"] == [
            "agent",
            "--source=kubernetes",
            "--tunnel-pattern=wg*",
            "--fail-closed-only",
        ]
        assert init["securityContext"] == container(o, "peerwall")["securityContext"]
        sub = command.get_command(None, "agent")  # type: ignore[attr-defined]
        ctx = sub.make_context("agent", init["args"][1:])
        assert ctx.params["fail_closed_only"] is True
        assert ctx.params["tunnel_pattern"] == "wg*"


# --- the agent's endpoint: bound to the pod IP, reachable by the scraper only ---------------------


def test_the_endpoint_binds_to_the_pod_ip_and_the_agent_parses_it() -> None:
    from peerwall.agent.endpoint import split_address

    for _, agent in agents():
        env = {e["name"]: e.get("valueFrom") for e in agent["env"]}
        assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        (address,) = [a for a in agent["args"] if a.startswith("--metrics-address=")]
        value = address.split("=", 1)[1]
        assert value == "$(POD_IP):9090"
        assert split_address(value.replace("$(POD_IP)", "10.244.1.9")) == ("10.244.1.9", 9090)
        assert split_address(value.replace("$(POD_IP)", "fd00:10::9")) == ("fd00:10::9", 9090)


def network_policies(*sets: str) -> list[dict[str, Any]]:
    return [o for o in render(*sets) if o["kind"] == "NetworkPolicy"]


def test_no_namespace_no_policy_and_disabled_means_none() -> None:
    assert network_policies() == []
    assert (
        network_policies("networkPolicy.namespaces={liqo-tenant-a}", "networkPolicy.enabled=false")
        == []
    )


def test_the_network_policy_admits_only_the_scraper_to_the_agents_port() -> None:
    sets = (
        "networkPolicy.namespaces={liqo-tenant-a,liqo-tenant-b}",
        "agent.metricsPort=9464",
    )
    policies = network_policies(*sets)
    assert [p["metadata"]["namespace"] for p in policies] == ["liqo-tenant-a", "liqo-tenant-b"]
    # It selects the gateway pods the templates make.
    pod_labels = pod_of(one(render(*sets), "WgGatewayServerTemplate"))["metadata"]["labels"]
    for policy in policies:
        validate(policy)
        spec = policy["spec"]
        assert set(spec["podSelector"]["matchLabels"].items()) <= set(pod_labels.items())
        assert spec["policyTypes"] == ["Ingress"]
        scraper, rest = spec["ingress"]
        assert scraper["from"] == [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
            }
        ]
        assert scraper["ports"] == [{"protocol": "TCP", "port": 9464}]
        # Everyone else: every port but the agent's, so Liqo's ports stay as they were.
        assert "from" not in rest
        tcp = [(p["port"], p["endPort"]) for p in rest["ports"] if p["protocol"] == "TCP"]
        assert tcp == [(1, 9463), (9465, 65535)]
        assert {p["protocol"] for p in rest["ports"]} == {"TCP", "UDP", "SCTP"}
        for p in rest["ports"]:
            if p["protocol"] != "TCP":
                assert (p["port"], p["endPort"]) == (1, 65535)


def test_the_scraper_can_be_chosen_and_a_bad_namespace_fails() -> None:
    (policy,) = network_policies(
        "networkPolicy.namespaces={liqo-tenant-a}",
        "networkPolicy.scraper.ipBlock.cidr=10.9.0.0/24",
        "networkPolicy.scraper.namespaceSelector=null",
        "networkPolicy.scraper.podSelector=null",
    )
    validate(policy)
    assert policy["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.9.0.0/24"}}]
    assert "namespaces" in render_error("networkPolicy.namespaces={Not_A_Name}")


def test_a_dead_or_stopped_agent_is_restarted_by_the_kubelet() -> None:
    """Issue 18.1 in a pod: the pod restarts containers, and the liveness probe catches a loop
    that no longer runs (``/healthz`` fails 5 s after the loop's last beat) within seconds."""
    for o in render():
        if o["kind"] not in TEMPLATE_KINDS:
            continue
        assert pod_of(o)["spec"]["restartPolicy"] == "Always"
        agent = container(o, "peerwall")
        live = agent["livenessProbe"]
        assert live["httpGet"]["path"] == "/healthz"
        assert live["periodSeconds"] * live["failureThreshold"] <= 10
        assert agent["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert agent["readinessProbe"]["httpGet"]["path"] == "/readyz"
