"""The topology file as written (DESIGN.md §2): pydantic schema, camelCase keys, no extras.

These classes only check shape and types; cross-references are checked in ``validate``.
"""

from __future__ import annotations

from enum import Enum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class SecurityMode(str, Enum):
    """The connectivity security modes, spelled as Liqo's ``networking.securityMode``."""

    FULL_POD_TO_POD = "FullPodToPod"
    INTRA_CLUSTER_TRAFFIC_SEGREGATION = "IntraClusterTrafficSegregation"

    @classmethod
    def valid_values(cls) -> str:
        return ", ".join(m.value for m in cls)


# Names end up in namespace names, nft chain names and table labels: keep them plain.
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"),
]
Labels = dict[Annotated[str, StringConstraints(min_length=1)], str]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterSpec(_Item):
    name: Name
    pod_cidr: IPv4Network = Field(alias="podCIDR")
    service_cidr: IPv4Network | None = Field(default=None, alias="serviceCIDR")
    internet: Name | None = None
    api_server: Name | None = Field(default=None, alias="apiServer")
    security_mode: SecurityMode | None = Field(default=None, alias="securityMode")


class PeeringSpec(_Item):
    consumer: Name
    provider: Name
    security_mode: SecurityMode | None = Field(default=None, alias="securityMode")


class NamespaceSpec(_Item):
    name: Name
    cluster: Name
    offloaded_to: list[Name] = Field(default_factory=list, alias="offloadedTo")


class PodSpec(_Item):
    name: Name
    cluster: Name
    namespace: Name = "default"
    runs_on: Name | None = Field(default=None, alias="runsOn")
    labels: Labels = Field(default_factory=dict)
    ip: IPv4Address | None = None


class ServiceSpec(_Item):
    name: Name
    cluster: Name
    namespace: Name = "default"
    selector: Labels = Field(default_factory=dict)


class TopologySpec(_Item):
    clusters: list[ClusterSpec] = Field(min_length=1)
    peerings: list[PeeringSpec] = Field(default_factory=list)
    namespaces: list[NamespaceSpec] = Field(default_factory=list)
    pods: list[PodSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
