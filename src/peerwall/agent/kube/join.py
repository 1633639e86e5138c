"""Liqo's objects -> contributions to a ``DesiredState``: the Kubernetes source's join, no I/O.

What each object says is read by ``objects``; this module joins those facts across kinds.

``LiqoJoin.apply``/``remove`` take one watched object at a time, in whatever order the watches
deliver them, and keep the desired state equal to what the objects seen so far imply. Facts that
join several kinds (a consumer's pod on a virtual node needs the node's provider and that
provider's CIDR remapping; an EndpointSlice needs its namespace's offloading and its Service's
annotations) are recomputed for the objects a change touches, so the result does not depend on
the order of arrival.

The join has four parts, each with the decisions on Liqo's semantics it makes (citations in
``peerwall.liqo``); this module hands each object to its part and, where a fact one part keeps
changes what another computed, has the other recompute:

* ``peers``: the local cluster's ID, pod CIDRs and API server, and each peer's ``PeerState``.
* ``offloaded_pods``: OFFLOADED (pods a consumer offloaded here) and API_CLIENTS (ours at a
  provider), with the namespaces and virtual nodes that say whose they are.
* ``backends``: BACKENDS (local endpoints of services reflected to a peer).
* ``reflection``: which slices each provider's virtual kubelet reflects.

Which set a pod's address joins is the rule of ``compile.membership``, shared with the file
source; an object's share of the sets is replaced whole (``contribution``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube import shape
from peerwall.agent.kube.backends import Backends
from peerwall.agent.kube.objects import Obj, key_of, labels_of
from peerwall.agent.kube.offloaded_pods import OffloadedPods
from peerwall.agent.kube.peers import Peers
from peerwall.agent.kube.reflection import Reflection
from peerwall.settings import KubeSettings

log = logging.getLogger("peerwall.agent.kube")

Handler = Callable[[liqo.Kind, str, Obj, bool], None]
"""What one kind's object does to the join: (kind, key, object, deleted)."""


class PodRole(Enum):
    """Which of the two pod watches an event comes from."""

    SHADOW = "shadow"
    """Pods offloaded here by a consumer (provider side)."""
    REMOTE = "remote"
    """Our pods offloaded to a provider (consumer side)."""
    GATEWAY = "gateway"
    """Liqo's gateway pods here: never opened as backends."""


class LiqoJoin:
    """What the watched objects imply for one gateway, kept in a ``DesiredState``."""

    def __init__(self, desired: DesiredState, settings: KubeSettings) -> None:
        self.desired = desired
        self.settings = settings
        self.peers = Peers(desired, settings)
        self.pods = OffloadedPods(desired, settings, self.peers)
        self.reflection = Reflection(settings)
        self.backends = Backends(desired, settings, self.peers, self.pods, self.reflection)
        peers, backends = self.peers, self.backends
        self._handlers: dict[liqo.Kind, Handler] = {
            liqo.CONFIGMAP: peers.on_configmap,
            liqo.NETWORK: self._on_network,
            liqo.IP: peers.on_ip,
            liqo.FOREIGN_CLUSTER: peers.on_foreign,
            liqo.CONFIGURATION: self._on_configuration,
            liqo.GATEWAY_SERVER: peers.on_gateway,
            liqo.GATEWAY_CLIENT: peers.on_gateway,
            liqo.PEERING_SECURITY: peers.on_security,
            liqo.NODE: self._on_node,
            liqo.NAMESPACE: self.pods.on_namespace,
            liqo.NAMESPACE_OFFLOADING_KIND: backends.on_offloading,
            liqo.SERVICE: backends.on_service,
            liqo.ENDPOINTSLICE: backends.on_slice,
            liqo.VIRTUAL_NODE_KIND: self._on_virtual_node,
            liqo.VK_OPTIONS_TEMPLATE: self._on_vk_template,
        }

    # --- dispatch --------------------------------------------------------------------------

    def apply(self, kind: liqo.Kind, obj: Obj, role: PodRole | None = None) -> None:
        """An object was listed, added or modified. Pods come from two watches (``role``): one
        may report a pod deleted (it left its selector) while the other still holds it."""
        self._handle(kind, obj, False, role)

    def remove(self, kind: liqo.Kind, obj: Obj, role: PodRole | None = None) -> None:
        """An object was deleted: ``obj`` is its last state from a watch, or only its name and
        namespace when a relist found it gone (the reflector keeps no objects); each part
        forgets by key what the object contributed."""
        self._handle(kind, obj, True, role)

    def _handle(self, kind: liqo.Kind, obj: Obj, deleted: bool, role: PodRole | None) -> None:
        bad = shape.problem(kind.kind, obj)
        if bad is not None:
            # Unreadable: refused in one line, and what it contributed goes (``shape``).
            obj = shape.skeleton(obj)
            log.error("%s %s refused: %s; handled as deleted", kind.kind, key_of(obj), bad)
            deleted = True
            if kind == liqo.POD and role is None:
                k = key_of(obj)
                self.pods.on_shadow_pod(k, obj, True)
                self.pods.on_remote_pod(k, obj, True)
                return
        k = key_of(obj)
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(kind, k, obj, deleted)
        elif kind == liqo.POD:
            labels = labels_of(obj)
            if role is PodRole.SHADOW or (role is None and liqo.MANAGED_BY in labels):
                self.pods.on_shadow_pod(k, obj, deleted)
            if role is PodRole.REMOTE or (role is None and liqo.LOCAL_OFFLOADED_POD in labels):
                self.pods.on_remote_pod(k, obj, deleted)
            if role is PodRole.GATEWAY or (role is None and liqo.GATEWAY_COMPONENT in labels):
                self.backends.on_gateway_pod(k, obj, deleted)
        else:
            raise ValueError(f"kind {kind.kind} is not watched")

    # --- facts of one part that others' results depend on ----------------------------------

    def _on_network(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        if self.peers.on_network(kind, k, obj, deleted):
            # The peers' full access (declared anew), which endpoints are local and which
            # offloaded pods' addresses are kept all depend on the local pod CIDRs.
            self.backends.recontribute()
            self.pods.recontribute_shadow()

    def _on_configuration(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        for provider in self.peers.on_configuration(kind, k, obj, deleted):
            self.pods.recontribute_remote_of(provider)  # its remapping maps our pods back

    def _on_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        if self.pods.on_node(kind, k, obj, deleted):
            self.backends.recontribute()  # endpoints on virtual nodes are never local

    def _on_virtual_node(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        self.reflection.on_virtual_node(kind, k, obj, deleted)
        self.backends.recontribute()

    def _on_vk_template(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        if self.reflection.on_vk_template(kind, k, obj, deleted):
            self.backends.recontribute()


__all__ = ["LiqoJoin", "PodRole"]
