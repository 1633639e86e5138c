"""Which EndpointSlices each provider's virtual kubelet reflects: the join's part that reads its
VirtualNodes and VkOptionsTemplates.

Each VirtualNode names its provider (``spec.clusterID``) and the VkOptionsTemplate its virtual
kubelet runs with (``spec.vkOptionsTemplateRef``; none: the chart's default template in Liqo's
namespace, ``peerwall.liqo.VK_OPTIONS_DEFAULT``). A template gives the reflection policy of
Services, which EndpointSlices inherit, and whether IPs are reflected at all (``objects.vk_options``);
a template not found gives ``KubeSettings.reflection``, the virtual kubelet's own default.
"""

from __future__ import annotations

import logging

from peerwall import liqo
from peerwall.agent.kube.objects import Obj, VkOptions, vk_options
from peerwall.settings import KubeSettings

__all__ = ["Reflection"]

log = logging.getLogger("peerwall.agent.kube")


class Reflection:
    """The reflection settings of each provider's virtual kubelets."""

    def __init__(self, settings: KubeSettings) -> None:
        self.settings = settings
        self._vnodes: dict[str, tuple[str, str]] = {}
        """VirtualNode key -> (provider, key of its VkOptionsTemplate)."""
        self._templates: dict[str, VkOptions] = {}

    def of(self, provider: str) -> list[VkOptions]:
        """The reflection of each virtual kubelet serving ``provider`` (the default template's
        when no VirtualNode is known); a template not found: ``KubeSettings.reflection``."""
        refs = {t for p, t in self._vnodes.values() if p == provider}
        if not refs:
            refs = {f"{self.settings.liqo_namespace}/{liqo.VK_OPTIONS_DEFAULT}"}
        fallback = VkOptions(self.settings.reflection)
        return [self._templates.get(ref, fallback) for ref in sorted(refs)]

    def on_virtual_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        spec = obj.get("spec") or {}
        provider = spec.get("clusterID")
        if deleted or not provider:
            self._vnodes.pop(k, None)
        else:
            ref = spec.get("vkOptionsTemplateRef") or {}
            if ref.get("name"):
                ns = ref.get("namespace") or obj.get("metadata", {}).get("namespace", "")
                template = f"{ns}/{ref['name']}"
            else:
                template = f"{self.settings.liqo_namespace}/{liqo.VK_OPTIONS_DEFAULT}"
            self._vnodes[k] = (str(provider), template)

    def on_vk_template(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> bool:
        """Whether the template's reflection changed."""
        before = self._templates.get(k)
        if deleted:
            self._templates.pop(k, None)
        else:
            self._templates[k] = vk_options(obj, self.settings.reflection)
        now = self._templates.get(k)
        if now == before:
            return False
        if now is not None and now.policy is None:
            log.error("vkoptionstemplate %s: unknown service reflection type: reflects nothing", k)
        log.info("vkoptionstemplate %s: %s", k, now or "deleted")
        return True
