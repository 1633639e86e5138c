"""What the Kubernetes source reads from a Liqo v1 cluster, and where in Liqo each fact comes from.

Every name below was checked in liqotech/liqo at master 557c199c (2026-07, the v1.2 line); paths
are relative to that repository. Facts only (the standard library, nothing of peerwall), low in
the layers: ``settings.KubeSettings`` takes its defaults from here, and the lab builds Liqo's shape
with the same names.

Data path (why the addresses are what they are)
-----------------------------------------------
Each peer has its own gateway pod, ``gw-<name>`` (``pkg/gateway/forge/utils.go``
``GatewayResourceName``), owned by a GatewayServer or GatewayClient labelled
``liqo.io/remote-cluster-id`` in the tenant namespace ``liqo-tenant-<clusterID>``
(``pkg/tenantNamespace/const.go``, ``namespaceManager.go``). Its tunnel is ``liqo-tunnel``
(``pkg/gateway/tunnel/const.go``; ``netlink.go`` ``GetTunnelName`` adds ``liqo-tunnel1``, ...).

CIDR remapping is done by the gateway's FirewallConfiguration ``remap-podcidr``
(``pkg/liqo-controller-manager/networking/external-network/remapping/cidr.go``): traffic that
*arrives from the tunnel* with a source in the peer's original pod CIDR
(``Configuration.spec.remote.cidr.pod``) is source-NATed to the remapped CIDR
(``status.remote.cidr.pod``) at **postrouting**; traffic *to* the peer is destination-NATed from
the remapped CIDR back to the original at prerouting, before it leaves. So at the gateway's
forward hook, which sits between the two, traffic from the peer still carries the peer's
**original** pod address as source; and its destination is already a real local address (the
peer's own gateway undid its remapping of us before sending). Hence ``PeerState.sources`` is
``spec.remote.cidr.pod``, and every peer address we learn in remapped form (a local pod's status
IP, see below) is translated back to the original.

The local API server as peers reach it: the controller manager creates the IP ``api-server``
(``ipam.liqo.io/v1alpha1``, label ``ipam.liqo.io/ip-type=api-server``, in the Liqo namespace)
whose ``spec.ip`` is the ClusterIP of ``default/kubernetes``
(``pkg/utils/ipam/mapping/ips.go`` ``EnforceAPIServerIPRemapping``; with
``networking.apiServerAccessThroughEndpointSlices`` one IP per endpoint of that service instead,
``pkg/liqo-controller-manager/ipmapping/endpointslice_controller.go``). Offloaded pods address its
remapped ``status.ip`` through a host alias of ``kubernetes.default``
(``pkg/virtualKubelet/forge/pods.go`` ``RemoteHostAliasesAPIServerSupport``) on port
``KUBERNETES_SERVICE_PORT``, 443 by default (``pkg/virtualKubelet/forge/forge.go``). Every
gateway DNATs ``status.ip`` to ``spec.ip`` at prerouting (``remapping/ip.go``
``ensureFirewallConfigurationDNATRules``, table ``remap-ipmapping-gw``), so at the forward hook
the API server is ``spec.ip``:443.

Sources as Liqo sends them
--------------------------
Every node of the peer runs the FirewallConfiguration
``<configuration>-masquerade-bypass``
(``pkg/liqo-controller-manager/networking/internal-network/configuration-controller/firewall.go``
``forgeFirewallNatRule``), which source-NATs traffic towards our pod (and external) CIDR that does
not come from one of its pods (NodePort, hostNetwork), and with ``--fabric-full-masquerade-enabled``
(``networking.fabric.config.fullMasquerade``) all of it, to ``GetUnknownSourceIP`` of its primary
external CIDR: its first address (``pkg/utils/ipam/ips.go``; ``GetPrimary`` is the first of the
list). We know that CIDR as ``Configuration.spec.remote.cidr.external``; our gateway remaps it
(``remap-externalcidr``, ``remapping/cidr.go``) at postrouting, after the forward hook, so the
forward hook sees the peer's own address, as for pods.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

LIQO_COMMIT = "557c199cf41ad6f7ef4685c6624af1a26565d456"

# --- labels, annotations, names ----------------------------------------------------------------

REMOTE_CLUSTER_ID = "liqo.io/remote-cluster-id"
"""On Configurations, GatewayServers/Clients, virtual nodes, tenant namespaces and the namespaces
a provider creates for a consumer's offloaded namespace (``pkg/consts/namespace_mapping.go``;
``pkg/liqo-controller-manager/offloading/namespacemap-controller/enforcement.go``)."""

TYPE_LABEL = "liqo.io/type"
VIRTUAL_NODE = "virtual-node"
"""Virtual nodes carry ``liqo.io/type=virtual-node`` and ``liqo.io/remote-cluster-id=<provider>``
(``pkg/consts/namespace_mapping.go``; ``pkg/utils/getters/dataGetters.go``
``RetrieveRemoteClusterIDFromNode``)."""

MANAGED_BY = "liqo.io/managed-by"
MANAGED_BY_SHADOWPOD = "shadowpod"
"""Pods a provider runs for a consumer are created by a ShadowPod and labelled
``liqo.io/managed-by=shadowpod`` (``pkg/consts/replication.go``;
``pkg/liqo-controller-manager/offloading/shadowpod-controller/shadowpod_controller.go``)."""

ORIGIN = "offloading.liqo.io/origin"
"""Cluster ID of the consumer that reflected an object here (``pkg/virtualKubelet/forge/meta.go``
``LiqoOriginClusterIDKey``): on a provider, the consumer an offloaded pod belongs to."""

LOCAL_OFFLOADED_POD = "liqo.io/shadowPod"
"""Label the virtual kubelet puts on a consumer's local pods once offloaded
(``pkg/consts/replication.go`` ``LocalPodLabelKey``; ``pkg/virtualKubelet/forge/pods.go``
``LocalPodOffloadedLabel``). Liqo selects offloaded pods with it too
(``pkg/liqo-controller-manager/offloading/podstatus-controller``)."""

SKIP_REFLECTION = "liqo.io/skip-reflection"
ALLOW_REFLECTION = "liqo.io/allow-reflection"
"""Reflection annotations (``pkg/consts/replication.go``); their semantics are in ``objects``."""

SERVICE_NAME = "kubernetes.io/service-name"
"""The virtual kubelet's EndpointSlice reflector reflects *every* slice of an offloaded namespace
(its informer is scoped by namespace, with no label selector:
``pkg/virtualKubelet/reflection/exposition/endpointslice.go`` ``NewNamespacedEndpointSliceReflector``),
whoever manages it, except ``default/kubernetes``; which slices are reflected is decided by the
annotations and the reflection policy (``objects.reflected``)."""

GATEWAY_COMPONENT = "networking.liqo.io/component"
GATEWAY_POD = "gateway"
"""Every gateway pod carries ``networking.liqo.io/component=gateway``: the templates' selector
labels (``deployments/liqo/templates/_helpers.tpl`` ``liqo.selectorTemplate``) and the gateway's own
(``pkg/gateway/label.go`` ``ForgeActiveGatewayPodLabels``). Gateways are pods, inside the pod CIDR,
but never a backend: an endpoint naming one is not opened."""

VK_OPTIONS_DEFAULT = "virtual-kubelet-default"
"""The VkOptionsTemplate the chart installs in Liqo's namespace
(``deployments/liqo/templates/liqo-vk-options-template.yaml``), which the webhook gives every
VirtualNode that names none (``pkg/webhooks/virtualnode/virtualnode.go``,
``--vk-options-default-template``)."""
SERVICE_REFLECTOR = "service"
"""The key of ``VkOptionsTemplate.spec.reflectorsConfig`` whose ``type`` (DenyList, AllowList) the
EndpointSlice reflector inherits (``cmd/virtual-kubelet/root/root.go`` ``getReflectorsConfigs``);
``pkg/vkMachinery/forge/forge.go`` turns it into ``--service-reflection-type`` and appends
``spec.extraArgs`` after it, so a flag there wins."""


SERVICE_REFLECTION_FLAG = "--service-reflection-type"
DISABLE_IP_REFLECTION_FLAG = "--disable-ip-reflection"
"""``networking.reflectIPs=false`` puts this flag in the template's ``extraArgs``; the virtual
kubelet then starts no EndpointSlice reflector (``pkg/virtualKubelet/provider/provider.go``) and
reflects no offloaded pod's IP (``forge.OpaqueIPTranslationMutator``)."""

NAMESPACE_OFFLOADING = "offloading"
"""The one NamespaceOffloading of an offloaded namespace (``pkg/consts/namespace_mapping.go``
``DefaultNamespaceOffloadingName``)."""

OFFLOADING_REQUIRED = "OffloadingRequired"
"""``status.remoteNamespacesConditions`` is keyed by the provider's cluster ID (the NamespaceMap's
name, ``foreignclusterutils.UniqueName``); this condition is True for every provider selected
(``pkg/liqo-controller-manager/offloading/namespaceoffloading-controller/status.go``)."""

CLUSTER_ID_CONFIGMAP = "liqo-clusterid-configmap"
CLUSTER_ID_KEY = "CLUSTER_ID"
"""The local cluster ID: ConfigMap ``liqo-clusterid-configmap`` in the Liqo namespace (the Helm
release's, ``deployments/liqo/templates/liqo-clusterid-configmap.yaml``). Liqo itself finds it by
the label ``app.kubernetes.io/name=clusterid-configmap`` (``pkg/consts/clusterid.go``); we select
it by name, which RBAC can restrict to (``resourceNames``) where a label cannot be."""

NETWORK_TYPE = "ipam.liqo.io/network-type"
POD_CIDR_NETWORK = "pod-cidr"
"""The local pod CIDRs: Networks of this type in the Liqo namespace, never remapped
(``deployments/liqo/templates/liqo-ipam-networks.yaml``; ``pkg/utils/ipam/networks.go``)."""

IP_TYPE = "ipam.liqo.io/ip-type"
API_SERVER_IP = "api-server"
"""``pkg/consts/ipam.go`` ``IPTypeLabelKey``/``IPTypeAPIServer``."""

API_SERVER_PORT = 443
"""The port offloaded pods use for their home API server (``KUBERNETES_SERVICE_PORT``)."""

TUNNEL = "liqo-tunnel"
TUNNEL_PATTERN = "liqo-tunnel*"

SERVER_TUNNEL_IP = IPv4Address("169.254.18.1")
CLIENT_TUNNEL_IP = IPv4Address("169.254.18.2")
"""WireGuard addresses of the first tunnel (``pkg/gateway/tunnel/netlink.go``); the connection
check pings the other end's (``pkg/gateway/connection/connections_controller.go``
``GetRemoteInterfaceIP``): a GatewayServer here means the peer is the client, and vice versa."""

MAX_TUNNELS = 64
"""A gateway has one WireGuard interface per port of ``spec.endpoint.ports`` (one for the legacy
``port``): the templates pass them as ``--listen-ports``/``--endpoint-ports``, at most 64
(``MaxWireguardInterfaces``, the CRDs' ``maxItems``)."""


def tunnel_name(index: int) -> str:
    """``GetTunnelName``: ``liqo-tunnel``, then ``liqo-tunnel1``, ``liqo-tunnel2``, ..."""
    return TUNNEL if index == 0 else f"{TUNNEL}{index}"


def tunnel_ip(server: bool, index: int) -> IPv4Address:
    """``GetInterfaceIP``: tunnel ``index`` is the /30 ``169.254.18.4*index``; the server holds
    its first host address, the client the second."""
    return SERVER_TUNNEL_IP + 4 * index + (0 if server else 1)


PEERWALL_GROUP = "peerwall.io"


# --- resources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One API resource: enough to build its REST paths."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


CONFIGMAP = Kind("ConfigMap", "", "v1", "configmaps", True)
NAMESPACE = Kind("Namespace", "", "v1", "namespaces", False)
NODE = Kind("Node", "", "v1", "nodes", False)
POD = Kind("Pod", "", "v1", "pods", True)
SERVICE = Kind("Service", "", "v1", "services", True)
ENDPOINTSLICE = Kind("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", True)
FOREIGN_CLUSTER = Kind("ForeignCluster", "core.liqo.io", "v1beta1", "foreignclusters", False)
CONFIGURATION = Kind("Configuration", "networking.liqo.io", "v1beta1", "configurations", True)
GATEWAY_SERVER = Kind("GatewayServer", "networking.liqo.io", "v1beta1", "gatewayservers", True)
GATEWAY_CLIENT = Kind("GatewayClient", "networking.liqo.io", "v1beta1", "gatewayclients", True)
NAMESPACE_OFFLOADING_KIND = Kind(
    "NamespaceOffloading", "offloading.liqo.io", "v1beta1", "namespaceoffloadings", True
)
NETWORK = Kind("Network", "ipam.liqo.io", "v1alpha1", "networks", True)
IP = Kind("IP", "ipam.liqo.io", "v1alpha1", "ips", True)
VIRTUAL_NODE_KIND = Kind("VirtualNode", "offloading.liqo.io", "v1beta1", "virtualnodes", True)
"""One per virtual kubelet: ``spec.clusterID`` (the provider) and ``spec.vkOptionsTemplateRef``."""
VK_OPTIONS_TEMPLATE = Kind(
    "VkOptionsTemplate", "offloading.liqo.io", "v1beta1", "vkoptionstemplates", True
)
PEERING_SECURITY = Kind("PeeringSecurity", PEERWALL_GROUP, "v1alpha1", "peeringsecurities", False)
"""peerwall's own: the security mode of one peering (``deploy/crds/peeringsecurity.yaml``)."""

ALL_KINDS = (
    CONFIGMAP,
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    ENDPOINTSLICE,
    FOREIGN_CLUSTER,
    CONFIGURATION,
    GATEWAY_SERVER,
    GATEWAY_CLIENT,
    NAMESPACE_OFFLOADING_KIND,
    NETWORK,
    IP,
    VIRTUAL_NODE_KIND,
    VK_OPTIONS_TEMPLATE,
    PEERING_SECURITY,
)
