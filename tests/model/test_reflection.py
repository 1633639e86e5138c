"""Liqo's service reflection policy in the topology (issue 17.3): a peering's ``reflection``
(the consumer's virtual kubelet for that provider: AllowList or DenyList) and a service's
``reflection`` mark (Liqo's ``liqo.io/allow-reflection`` / ``liqo.io/skip-reflection``) decide
which providers a service exists in. Files without them are what they were."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from peerwall.errors import TopologyInvalid
from peerwall.model import load_topology
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy, reflects

ALLOW, DENY = ReflectionPolicy.ALLOW_LIST, ReflectionPolicy.DENY_LIST


def example_text() -> str:
    return resources.files("peerwall").joinpath("examples/reflection.yaml").read_text()


@pytest.mark.parametrize(
    ("policy", "mark", "reflected"),
    [
        # pkg/virtualKubelet/reflection/generic/namespaced.go ShouldSkipReflection (557c199c)
        (DENY, None, True),
        (DENY, ReflectionMark.ALLOW, True),
        (DENY, ReflectionMark.SKIP, False),
        (ALLOW, None, False),
        (ALLOW, ReflectionMark.ALLOW, True),
        (ALLOW, ReflectionMark.SKIP, False),
    ],
)
def test_liqos_rule(policy: ReflectionPolicy, mark: ReflectionMark | None, reflected: bool) -> None:
    assert reflects(policy, mark) is reflected


def test_a_service_exists_where_it_is_reflected() -> None:
    t = load_topology(example_text(), "reflection.yaml")
    by = t.service_by_name
    assert [p.reflection for p in t.peerings] == [ALLOW, DENY]
    # c1 -> c2 under AllowList: only S2 (marked allow) is reflected.
    assert (by["S2"].offloaded_to, by["S2"].reflected_to) == (("c2",), ("c2",))
    assert (by["S4"].offloaded_to, by["S4"].reflected_to) == (("c2",), ())
    assert by["S4"].present_in == ("c1",)
    # c2 -> c1 under DenyList: S6 (marked skip) is not, S7 is.
    assert (by["S6"].reflection, by["S6"].reflected_to) == (ReflectionMark.SKIP, ())
    assert by["S7"].reflected_to == ("c1",)
    # ClusterIPs exist only where the service does.
    assert ("S4", "c2") not in t.addresses.service_ips
    assert ("S2", "c2") in t.addresses.service_ips


def test_without_the_fields_every_offloaded_service_is_reflected() -> None:
    data = yaml.safe_load(example_text())
    for item in (*data["peerings"], *data["services"]):
        item.pop("reflection", None)
    t = load_topology(yaml.safe_dump(data))
    assert all(s.reflected_to == s.offloaded_to for s in t.services)
    assert all(p.reflection is DENY for p in t.peerings)
    # DenyList said explicitly is the default.
    data["peerings"][0]["reflection"] = "DenyList"
    explicit = load_topology(yaml.safe_dump(data))
    assert [s.reflected_to for s in explicit.services] == [s.reflected_to for s in t.services]


def test_bad_values_name_the_file_and_the_field() -> None:
    data = yaml.safe_load(example_text())
    data["peerings"][0]["reflection"] = "Allowlist"
    data["peerings"][1]["reflection"] = True
    data["services"][1]["reflection"] = "deny"
    data["services"][2]["reflection"] = 3
    with pytest.raises(TopologyInvalid) as info:
        load_topology(yaml.safe_dump(data), "bad.yaml")
    assert str(info.value).splitlines() == [
        "bad.yaml: peerings[0].reflection: unknown reflection policy 'Allowlist' (valid: "
        "DenyList, AllowList: Liqo's reflectorsConfig.service.type)",
        "bad.yaml: peerings[1].reflection: expected a reflection policy (DenyList, AllowList), "
        "got the boolean true",
        "bad.yaml: services[1].reflection: unknown reflection mark 'deny' (valid: allow, skip: "
        "Liqo's liqo.io/allow-reflection, liqo.io/skip-reflection)",
        "bad.yaml: services[2].reflection: expected a reflection mark (allow, skip), got the "
        "integer 3",
    ]


def test_service_cidr_room_counts_only_reflected_services() -> None:
    """A provider's service CIDR needs room for the services that exist there: a service not
    reflected takes no ClusterIP in it."""
    text = """
clusters:
  - {name: C1, podCIDR: 10.1.0.0/16}
  - {name: C2, podCIDR: 10.2.0.0/16, serviceCIDR: 10.97.0.0/30}
peerings:
  - {consumer: C1, provider: C2, reflection: AllowList}
namespaces:
  - {name: ns, cluster: C1, offloadedTo: [C2]}
services:
  - {name: S1, cluster: C1, namespace: ns}
  - {name: S2, cluster: C1, namespace: ns}
  - {name: S3, cluster: C1, namespace: ns, reflection: allow}
"""
    t = load_topology(text)  # C2's /30 holds 2 ClusterIPs: S3 only is reflected there
    assert [s.name for s in t.services if "C2" in s.present_in] == ["S3"]
    with pytest.raises(TopologyInvalid, match=r"clusters\[1\]\.serviceCIDR: 3 services exist"):
        load_topology(text.replace("reflection: AllowList", "reflection: DenyList"))
