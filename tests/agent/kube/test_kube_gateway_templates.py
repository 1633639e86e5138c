"""Gateway templates that follow the installed Liqo: ``peerwall liqo templates`` copies Liqo's own
WgGatewayServerTemplate/ClientTemplate with only the agent (and its /tmp volume) added. Tested on
Liqo's default templates as its chart renders them at v1.2.0 and at 557c199c
(``tests/kubeapi/liqo/``), served by the fake API server over TLS."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kubeapi.chart import LIQO_VERSIONS, chart_objects, liqo_objects
from kubeapi.fake import FakeApiServer
from kubeapi.harness import TIMEOUT, run
from peerwall.agent.kube.gateway_templates import (
    AGENT,
    INIT,
    POD_SPEC,
    TMP_VOLUME,
    AgentContainer,
    TemplateError,
    with_agent,
)

IMAGE = "registry.example.com/peerwall:0.1.0"
KINDS = ["WgGatewayServerTemplate", "WgGatewayClientTemplate"]


def template(version: str, kind: str) -> dict[str, Any]:
    (found,) = [t for t in liqo_objects(version, "gateway-templates") if t["kind"] == kind]
    return found


def pod_spec(t: dict[str, Any]) -> dict[str, Any]:
    obj: Any = t
    for key in POD_SPEC:
        obj = obj[key]
    assert isinstance(obj, dict)
    return obj


def without_agent(spec: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    pod = pod_spec({"spec": spec})
    pod["containers"] = [c for c in pod["containers"] if c["name"] != AGENT]
    inits = [c for c in pod.pop("initContainers", []) if c["name"] != INIT]
    if inits:
        pod["initContainers"] = inits
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != TMP_VOLUME]
    return spec


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("version", LIQO_VERSIONS)
def test_the_copy_is_liqos_template_with_the_agent_added_and_nothing_else(
    version: str, kind: str
) -> None:
    original = template(version, kind)
    before = copy.deepcopy(original)
    out = with_agent(original, AgentContainer(IMAGE))
    assert original == before, "the original is not changed"
    assert without_agent(out["spec"]) == original["spec"]
    assert (out["kind"], out["apiVersion"]) == (original["kind"], original["apiVersion"])
    assert out["metadata"]["name"] == original["metadata"]["name"] + "-peerwall"
    assert out["metadata"]["namespace"] == "liqo"
    liqos = [c["name"] for c in pod_spec(original)["containers"]]
    assert [c["name"] for c in pod_spec(out)["containers"]] == [*liqos, AGENT]
    # What differs between the releases is kept as each has it.
    (wireguard,) = [c for c in pod_spec(out)["containers"] if c["name"] == "wireguard"]
    if kind == "WgGatewayServerTemplate":
        flag = "--listen-ports=" if version == "master" else "--listen-port="
        assert any(a.startswith(flag) for a in wireguard["args"]), wireguard["args"]


def test_a_template_that_already_has_the_agent_is_refused() -> None:
    once = with_agent(template("master", "WgGatewayServerTemplate"), AgentContainer(IMAGE))
    with pytest.raises(TemplateError, match="already has a peerwall container"):
        with_agent(once, AgentContainer(IMAGE))
    broken = copy.deepcopy(template("master", "WgGatewayClientTemplate"))
    del broken["spec"]["template"]["spec"]["deployment"]
    with pytest.raises(
        TemplateError, match=r"wireguard-client: no spec\.template\.spec\.deployment"
    ):
        with_agent(broken, AgentContainer(IMAGE))


def test_the_agent_container_is_the_charts() -> None:
    """Same container as the chart's templates, but for where the peer's ID comes from."""
    (chart_template,) = [o for o in chart_objects() if o["kind"] == "WgGatewayServerTemplate"]
    (charts,) = [c for c in pod_spec(chart_template)["containers"] if c["name"] == AGENT]
    ours = AgentContainer(charts["image"]).container()
    assert "--peer={{ .ClusterID }}" in ours["args"]
    assert "--peer=$(PEERWALL_PEER)" in charts["args"]
    strip = lambda c: {  # noqa: E731
        **c,
        "args": [a for a in c["args"] if not a.startswith("--peer=")],
        "env": [e for e in c["env"] if e["name"] != "PEERWALL_PEER"],
    }
    assert strip(ours) == strip(charts)
    (chart_init,) = pod_spec(chart_template)["initContainers"]
    assert AgentContainer(charts["image"]).init_container() == chart_init


def test_the_agent_container_is_a_valid_container_once_liqo_renders_it() -> None:
    container = AgentContainer(IMAGE).container()
    container["args"] = [a.replace("{{ .ClusterID }}", "cluster-b") for a in container["args"]]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "gw"},
        "spec": {
            "containers": [container],
            "volumes": [{"name": TMP_VOLUME, "emptyDir": {"medium": "Memory"}}],
        },
    }
    kubernetes_validate.validate(pod, "1.33", strict=True)


async def peerwall(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "peerwall"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("version", LIQO_VERSIONS)
def test_peerwall_liqo_templates_reads_the_installed_templates_and_writes_copies(
    version: str, tmp_path: Path
) -> None:
    async def main() -> None:
        async with FakeApiServer(tls=True) as fake:
            served = [fake.create(t) for t in liqo_objects(version, "gateway-templates")]
            kc = fake.kubeconfig(tmp_path / "kubeconfig")
            out_dir = tmp_path / "out"
            code, out, err = await peerwall(
                "liqo", "templates", "--kubeconfig", str(kc), "--context", "fake",
                "--image", IMAGE, "--set", "networking.securityMode=IntraClusterTrafficSegregation",
                "-o", str(out_dir),
            )  # fmt: skip
            assert code == 0, err
            assert out.splitlines() == [
                f"wrote {out_dir}/wireguard-server-peerwall.yaml: WgGatewayServerTemplate "
                "wireguard-server-peerwall, from wireguard-server",
                f"wrote {out_dir}/wireguard-client-peerwall.yaml: WgGatewayClientTemplate "
                "wireguard-client-peerwall, from wireguard-client",
            ]
            written = sorted(p.name for p in out_dir.iterdir())
            assert written == ["wireguard-client-peerwall.yaml", "wireguard-server-peerwall.yaml"]
            for original in served:
                name = original["metadata"]["name"]
                copy_ = yaml.safe_load((out_dir / f"{name}-peerwall.yaml").read_text())
                assert without_agent(copy_["spec"]) == original["spec"]
                (agent,) = [c for c in pod_spec(copy_)["containers"] if c["name"] == AGENT]
                assert agent["image"] == IMAGE
                assert (
                    "--set=networking.securityMode=IntraClusterTrafficSegregation"
                    in (agent["args"])
                )
                # And the cluster accepts the copy (the fake checks it against Liqo's CRD).
                fake.create(copy_)
            code, _, err = await peerwall(
                "liqo", "templates", "--kubeconfig", str(kc), "--image", IMAGE,
                "--server-template", "nope",
            )  # fmt: skip
            assert (code, err) == (
                1,
                "error: no WgGatewayServerTemplate 'nope' in namespace 'liqo'\n",
            )

    run(main())
