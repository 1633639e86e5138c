"""Liqo's service reflection policy: whether a consumer's service exists in a provider.

A module of its own, without pydantic (as ``modes``): the Kubernetes source reads the same policy
from VkOptionsTemplates and needs the names, not the topology's schema.

Liqo (v1.2, commit 557c199c): the consumer's virtual kubelet for a provider reflects each Service
of an offloaded namespace into that provider unless ``ShouldSkipReflection`` says otherwise
(``pkg/virtualKubelet/reflection/exposition/service.go`` ``Handle``). Its policy is the
VkOptionsTemplate's ``reflectorsConfig.service.type`` (``cmd/virtual-kubelet/root/root.go``
``getReflectorsConfigs``; the chart's ``offloading.reflection.service.type``, default DenyList),
and ``pkg/virtualKubelet/reflection/generic/namespaced.go`` ``ShouldSkipReflection`` reads it so:

- DenyList: reflected unless the Service carries ``liqo.io/skip-reflection`` (any value but
  ``false``, case-insensitive);
- AllowList: reflected only if the Service carries ``liqo.io/allow-reflection`` (any value but
  ``false``).

The EndpointSlice reflector inherits the Service reflector's type and asks the same question of
the slice's Service (``exposition/endpointslice.go`` ``ShouldSkipReflection``), so a service that
is not reflected has no reflected endpoints either: in the provider it does not exist.
"""

from __future__ import annotations

from peerwall.model.describe import Choice

__all__ = ["ReflectionMark", "ReflectionPolicy", "reflects"]


class ReflectionPolicy(Choice):
    """The virtual kubelet's reflection type for Services (and so EndpointSlices), spelled as
    Liqo's ``ReflectionType`` (``apis/offloading/v1beta1``); the chart's default is DenyList."""

    DENY_LIST = "DenyList"
    ALLOW_LIST = "AllowList"


class ReflectionMark(Choice):
    """A service's reflection annotation, as the topology file names it."""

    ALLOW = "allow"
    """``liqo.io/allow-reflection: "true"``."""
    SKIP = "skip"
    """``liqo.io/skip-reflection: "true"``."""


def reflects(policy: ReflectionPolicy, mark: ReflectionMark | None) -> bool:
    """Whether a virtual kubelet with ``policy`` reflects a service marked ``mark`` (None: no
    annotation) into its provider."""
    if policy is ReflectionPolicy.ALLOW_LIST:
        return mark is ReflectionMark.ALLOW
    return mark is not ReflectionMark.SKIP
