"""The topology file as written (DESIGN.md §2): pydantic schema, camelCase keys, no extras.

These classes only check shape and types; cross-references are checked in ``validate``.

Validation is strict: YAML reads ``12``, ``off`` or ``2001-01-01`` as a number, a boolean or a
date, and a name that silently became ``"12"`` or ``"False"`` (or an address built from the
integer 167772161) would hide the mistake. Only text is accepted where the file needs text.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic_core import PydanticCustomError

from peerwall.model.modes import SecurityMode as SecurityMode
from peerwall.model.reflection import ReflectionMark, ReflectionPolicy

NAME_RULE = (
    "1 to 63 characters: letters, digits, '.', '_', '-', starting and ending with a letter or digit"
)
# Names end up in namespace names, nft chain names and table labels: keep them plain.
Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"),
]
Labels = dict[Annotated[str, StringConstraints(min_length=1)], str]


def _text_for(kind: type) -> BeforeValidator:
    """Accept text (or a ready ``kind``), then let pydantic parse it: strict mode would accept only
    ``kind`` instances, lax mode would also turn the integer 167772161 into 10.0.0.1."""

    def check(value: Any) -> Any:
        if isinstance(value, str | kind):
            return value
        raise PydanticCustomError("not_text", "expected a string")

    return BeforeValidator(check)


Cidr = Annotated[IPv4Network, Strict(False), _text_for(IPv4Network)]
Address = Annotated[IPv4Address, Strict(False), _text_for(IPv4Address)]
Mode = Annotated[SecurityMode, Strict(False), _text_for(SecurityMode)]
Policy = Annotated[ReflectionPolicy, Strict(False), _text_for(ReflectionPolicy)]
Mark = Annotated[ReflectionMark, Strict(False), _text_for(ReflectionMark)]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ClusterSpec(_Item):
    name: Name
    pod_cidr: Cidr = Field(alias="podCIDR")
    service_cidr: Cidr | None = Field(default=None, alias="serviceCIDR")
    internet: Name | None = None
    api_server: Name | None = Field(default=None, alias="apiServer")
    security_mode: Mode | None = Field(default=None, alias="securityMode")
    external_cidr: Cidr | None = Field(default=None, alias="externalCIDR")
    full_masquerade: bool = Field(default=False, alias="fullMasquerade")
    api_server_addresses: int = Field(default=1, ge=1, le=8, alias="apiServerAddresses")


class PeeringSpec(_Item):
    consumer: Name
    provider: Name
    security_mode: Mode | None = Field(default=None, alias="securityMode")
    security_audit: bool | None = Field(default=None, alias="securityAudit")
    tunnels: int | None = Field(default=None, ge=1, le=8)
    reflection: Policy | None = None
    """The consumer's virtual kubelet for this provider: which services it reflects there
    (None: Liqo's default, DenyList)."""


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
    ip: Address | None = None


class ServiceSpec(_Item):
    name: Name
    cluster: Name
    namespace: Name = "default"
    selector: Labels = Field(default_factory=dict)
    reflection: Mark | None = None
    """Liqo's reflection annotation on the service (None: neither)."""


class TopologySpec(_Item):
    clusters: list[ClusterSpec] = Field(min_length=1)
    peerings: list[PeeringSpec] = Field(default_factory=list)
    namespaces: list[NamespaceSpec] = Field(default_factory=list)
    pods: list[PodSpec] = Field(default_factory=list)
    services: list[ServiceSpec] = Field(default_factory=list)
