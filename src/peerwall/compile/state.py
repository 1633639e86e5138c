"""The desired state of one gateway: what every peer may reach, in addresses.

This is the contract between the sources of state (a topology file, the Kubernetes API) and the
compiler. It says nothing of how it was derived: the file source computes it from a ``Topology``
(``compile.desired.gateway_state``), the Kubernetes source from Liqo's objects, and the same
ruleset comes out of both.

Addresses are as the gateway's forward hook sees them: a peer's traffic carries the peer's pod
addresses as this cluster sees them (remapped or not) as source, and the real local address as
destination (any NAT of the receiver happens before, at prerouting).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from peerwall.model.modes import SecurityMode

API_PORT = 6443
"""TCP port of a cluster's API server (kube-apiserver's secure port)."""

CONNCHECK_PORT = 12345
"""UDP port of Liqo's gateway connection check (``--ping-port``, pkg/gateway/connection)."""


class SetKind(str, Enum):
    """The per-peer address sets. The values name the nft sets (``<kind>-<hash8(peer)>``)."""

    OFFLOADED = "offloaded"
    """Local pods the peer offloaded here (home: the peer; physical: here)."""
    BACKENDS = "backends"
    """Local backends of services whose namespace is offloaded to the peer (reflected there)."""
    API_CLIENTS = "api-clients"
    """Sources of the peer that may reach the local API server: pods whose home is here."""

    # Enum's own hash is a Python function (of the member's name): every dict keyed by
    # (peer, kind), on every element event, paid for a call. The string's, in C, also agrees
    # with the equality a str enum has (SetKind.OFFLOADED == "offloaded").
    __hash__ = str.__hash__


RING_SIZE = 1024
"""Events ``/flows`` keeps, newest first out; older ones are counted as ring drops."""

FLOW_LOG_GROUP = 19
"""NFLOG group the drop rules log to (``log group``), read by the agent (nfnetlink_log)."""

FLOW_LOG_RATE = 50
"""Packets per second each drop rule hands to the agent, at most (``limit rate``): beyond it the
packet is still dropped, just not reported. Per rule: per peer, hook and reason."""

FLOW_LOG_BURST = 2 * FLOW_LOG_RATE
"""Packets a drop rule may report at once above its rate (``limit ... burst``)."""


@dataclass(frozen=True)
class FlowLog:
    """How drop rules report to the agent: a copy of each dropped packet's headers goes to NFLOG
    group ``group``, at most ``rate`` per second (and ``burst`` at once) per rule, limited in the
    kernel. Nothing waits on it: without a listener, or with its buffer full, the kernel discards
    the copy, never the verdict."""

    group: int = FLOW_LOG_GROUP
    rate: int = FLOW_LOG_RATE
    burst: int = FLOW_LOG_BURST


@dataclass(frozen=True)
class ApiServer:
    """The local API server as a peer reaches it (at the forward hook: its real address)."""

    address: IPv4Address
    port: int = API_PORT
    more: tuple[IPv4Address, ...] = ()
    """Further addresses of the same API server: Liqo with
    ``networking.apiServerAccessThroughEndpointSlices`` gives offloaded pods one per endpoint."""

    @property
    def addresses(self) -> tuple[IPv4Address, ...]:
        return (self.address, *self.more)


@dataclass(frozen=True)
class PrefixNat:
    """Remapping done by this gateway for one peer (the lab's job; Liqo v1 does its own).

    The peer addresses our pods through ``remapped`` (our pod CIDR remapped in the peer): traffic
    from the peer to it is destination-NATed to ``local``, and our traffic to the peer
    source-NATed into it.
    """

    remapped: IPv4Network
    local: IPv4Network


@dataclass(frozen=True)
class PeerState:
    """Everything the gateway enforces on traffic arriving from one peer."""

    name: str
    tunnel: str
    """Interface the peer's traffic arrives on (``pwt-<hash8>`` in the lab, ``liqo-tunnel`` in
    a Liqo v1 gateway pod)."""
    mode: SecurityMode
    sources: tuple[IPv4Network, ...]
    """The peer's pods as they reach this gateway: with ``masquerade``, the only sources its
    traffic may carry (anti-spoofing: anything else is dropped)."""
    full_access: tuple[IPv4Network, ...]
    """What FullPodToPod opens to the peer: the local pod CIDR (and the API server if outside)."""
    members: Mapping[SetKind, frozenset[IPv4Address]] = field(default_factory=dict)
    api: ApiServer | None = None
    gateway: IPv4Address | None = None
    """The peer gateway's address on the tunnel, source of the link's own needs (health checks);
    None: only the tunnel interface identifies it."""
    nat: PrefixNat | None = None
    masquerade: IPv4Address | None = None
    """The source the peer's nodes give traffic that is not from its pods (NodePort, hostNetwork;
    with Liqo's ``fullMasquerade``, all of it): the first address of its external CIDR. A valid
    source, judged by its destination only: never an API client."""
    more_tunnels: tuple[str, ...] = ()
    """Further interfaces of the same peer: a Liqo gateway with several WireGuard tunnels has
    ``liqo-tunnel``, ``liqo-tunnel1``, ... (``pkg/gateway/tunnel/netlink.go`` ``GetTunnelName``)."""
    more_gateways: tuple[IPv4Address, ...] = ()
    """The peer gateway's addresses on ``more_tunnels``."""
    audit: bool = False
    """Audit segregation: what segregation would drop is accepted and reported as would-drop
    (only under IntraClusterTrafficSegregation, only within ``full_access``)."""

    def addresses(self, kind: SetKind) -> frozenset[IPv4Address]:
        return self.members.get(kind, frozenset())

    @property
    def tunnels(self) -> tuple[str, ...]:
        return (self.tunnel, *self.more_tunnels)

    @property
    def gateways(self) -> tuple[IPv4Address, ...]:
        return () if self.gateway is None else (self.gateway, *self.more_gateways)

    @property
    def valid_sources(self) -> tuple[IPv4Network, ...]:
        """Every source the peer's traffic may carry: its pods, and its masquerade address."""
        if self.masquerade is None:
            return self.sources
        return (*self.sources, IPv4Network(self.masquerade))


@dataclass(frozen=True)
class GatewayState:
    """The desired state of one gateway: its peers, and how to recognise tunnels not yet known."""

    cluster: str
    peers: Mapping[str, PeerState]
    tunnel_pattern: str
    """nft wildcard of every tunnel interface (``pwt-*``, ``liqo-tunnel*``): traffic from a
    tunnel whose peer is not (yet) known is dropped, so a new or restarting gateway fails closed."""
    conncheck_port: int | None = CONNCHECK_PORT
    """UDP port of the gateways' connection check, accepted from a peer's gateway; None: none."""
    flow_log: FlowLog | None = FlowLog()
    """How drops are reported to the agent; None: they are not (no log rules)."""
