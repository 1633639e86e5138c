"""The peers and what each one's ``PeerState`` says: the join's part that declares peers.

From the local cluster's identity (its cluster ID ConfigMap), pod CIDRs (``pod-cidr`` Networks)
and API server (the ``api-server`` IP), and of each peer its ForeignCluster, Configuration,
GatewayServer or GatewayClient and PeeringSecurity (citations in ``peerwall.liqo``):

* ``sources`` of a peer: its *original* pod CIDRs, ``Configuration.spec.remote.cidr.pod``: Liqo
  source-NATs the peer's traffic into the remapped CIDR only at postrouting, after our forward hook.
  ``masquerade``: the first address of its (original) primary external CIDR,
  ``spec.remote.cidr.external[0]``, which its nodes give NodePort/hostNetwork traffic (and, with
  ``fullMasquerade``, all of it); see ``peerwall.liqo``.
* A peer exists when a ForeignCluster names it and its Configuration gives its pod CIDRs. Its mode
  is its PeeringSecurity's, else the chart default; two PeeringSecurities that disagree, or one
  with an unknown mode, give IntraClusterTrafficSegregation (the stricter, fail-closed). It audits
  segregation if its PeeringSecurity's ``securityAudit`` says so, else as the chart's default;
  PeeringSecurities that disagree audit nothing (enforcing is the fail-closed side).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from peerwall import liqo
from peerwall.agent.desired import DesiredState
from peerwall.agent.kube.contribution import fmt
from peerwall.agent.kube.objects import (
    Obj,
    Remap,
    labels_of,
    read_configuration,
    tunnel_count,
    v4,
    v4_networks,
    valid_cluster_id,
)
from peerwall.compile import names
from peerwall.compile.state import ApiServer, PeerState
from peerwall.model.spec import SecurityMode
from peerwall.settings import KubeSettings

__all__ = ["Peers"]

log = logging.getLogger("peerwall.agent.kube")


class Peers:
    """The local cluster's facts and each peer's, declared in the ``DesiredState`` as peers."""

    def __init__(self, desired: DesiredState, settings: KubeSettings) -> None:
        self.desired = desired
        self.settings = settings
        self.cluster_id: str | None = None
        self._networks: dict[str, tuple[IPv4Network, ...]] = {}
        self._api_ips: dict[str, IPv4Address] = {}
        self._foreign: dict[str, str] = {}
        self._configs: dict[str, tuple[str, Remap]] = {}
        self._gateways: dict[tuple[str, str], tuple[str, int]] = {}
        """(kind, key) -> (peer, number of tunnels) of each GatewayServer/GatewayClient."""
        self._masquerade: dict[str, IPv4Address] = {}
        """Configuration key -> the peer's masquerade source."""
        self._security: dict[str, tuple[str, SecurityMode | None]] = {}
        self._audits: dict[str, tuple[str, bool]] = {}
        """PeeringSecurity key -> (peer, its securityAudit), for those that set it."""
        self._declared: dict[str, PeerState] = {}
        self._clashes: dict[str, str] = {}
        """Peers refused because they share a tunnel or a hash with another (logged once)."""

    # --- identity, local CIDRs, API server, peers ---------------------------------------------

    def on_configmap(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        cid = None if deleted else (obj.get("data") or {}).get(liqo.CLUSTER_ID_KEY)
        if cid and cid != self.cluster_id:
            log.info("local cluster ID: %s (configmap %s)", cid, k)
            self.cluster_id = cid
            self.desired.cluster = cid

    def on_network(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> bool:
        """Whether the local pod CIDRs changed (peers are declared anew if so)."""
        before = self.local_pod_cidrs()
        if deleted:
            self._networks.pop(k, None)
        else:
            spec = obj.get("spec") or {}
            self._networks[k] = v4_networks([spec.get("cidr")], f"network {k}")
        if self.local_pod_cidrs() == before:
            return False
        log.info("local pod CIDRs: %s", ", ".join(map(str, self.local_pod_cidrs())) or "(none)")
        self.declare()
        return True

    def on_ip(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        ip = None if deleted else v4((obj.get("spec") or {}).get("ip"))
        if ip is None:
            self._api_ips.pop(k, None)
        else:
            self._api_ips[k] = ip
        self.declare()

    def on_foreign(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        cid = None if deleted else (obj.get("spec") or {}).get("clusterID")
        if cid and not valid_cluster_id(cid):
            # It names nftables objects: never let the API's text into a script unchecked.
            log.error(
                "foreigncluster %s: clusterID %r is not a valid cluster ID (1 to 63 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit): ignored",
                k,
                cid if isinstance(cid, str) else type(cid).__name__,
            )
            cid = None
        if cid:
            self._foreign[k] = cid
        else:
            self._foreign.pop(k, None)
        self.declare()

    def on_configuration(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> set[str]:
        """The peers whose CIDR remapping may have changed (the one named now and before)."""
        peer = labels_of(obj).get(liqo.REMOTE_CLUSTER_ID)
        old = self._configs.pop(k, None)
        self._masquerade.pop(k, None)
        if not deleted and peer:
            remap, masquerade = read_configuration(obj, f"configuration {k}")
            if masquerade is not None:
                self._masquerade[k] = masquerade
            self._configs[k] = (peer, remap)
        self.declare()
        return {str(p) for p in {peer, old[0] if old else None} - {None}}

    def on_gateway(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        peer = labels_of(obj).get(liqo.REMOTE_CLUSTER_ID)
        if deleted or not peer:
            self._gateways.pop((kind.kind, k), None)
        else:
            self._gateways[(kind.kind, k)] = (peer, tunnel_count(obj))
        self.declare()

    def on_security(self, kind: liqo.Kind, k: str, obj: Obj, deleted: bool) -> None:
        spec = obj.get("spec") or {}
        peer = spec.get("clusterID")
        self._audits.pop(k, None)
        if deleted or not peer:
            self._security.pop(k, None)
        else:
            if isinstance(spec.get("securityAudit"), bool):
                self._audits[k] = (peer, spec["securityAudit"])
            try:
                mode: SecurityMode | None = SecurityMode(spec.get("securityMode"))
            except ValueError:
                log.error(
                    "peeringsecurity %s: unknown securityMode %r (valid: %s): enforcing %s",
                    k,
                    spec.get("securityMode"),
                    SecurityMode.valid_values(),
                    SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value,
                )
                mode = None
            self._security[k] = (peer, mode)
        self.declare()

    # --- what the other parts read -------------------------------------------------------------

    def local_pod_cidrs(self) -> tuple[IPv4Network, ...]:
        if self.settings.pod_cidrs is not None:
            return self.settings.pod_cidrs
        return tuple(sorted({n for nets in self._networks.values() for n in nets}))

    def local(self, addrs: Iterable[IPv4Address]) -> frozenset[IPv4Address]:
        """The addresses inside the local pod CIDRs."""
        cidrs = self.local_pod_cidrs()
        return frozenset(a for a in addrs if any(a in c for c in cidrs))

    def api_server(self) -> ApiServer | None:
        if self.settings.api_server is not None:
            return self.settings.api_server
        if not self._api_ips:
            return None
        # Several with apiServerAccessThroughEndpointSlices: one per endpoint of
        # default/kubernetes, each the address some offloaded pods are given.
        ips = sorted(set(self._api_ips.values()))
        return ApiServer(ips[0], self.settings.api_port, tuple(ips[1:]))

    def config_of(self, peer: str) -> Remap | None:
        """The peer's pod CIDRs, original and remapped (its Configuration's)."""
        found = sorted((k, r) for k, (p, r) in self._configs.items() if p == peer)
        if not found:
            return None
        if len(found) > 1:
            tenant = [r for k, r in found if k.startswith(f"liqo-tenant-{peer}/")]
            log.warning(
                "peer %s: several Configurations (%s)", peer, ", ".join(k for k, _ in found)
            )
            if tenant:
                return tenant[0]
        return found[0][1]

    # --- declaring ----------------------------------------------------------------------------

    def _mode(self, peer: str) -> SecurityMode:
        modes = [mode for p, mode in self._security.values() if p == peer]
        known = {m for m in modes if m is not None}
        if not modes:
            return self.settings.default_mode
        if len(known) == 1 and None not in modes:
            return known.pop()
        if len(known) > 1:
            log.error(
                "peer %s: PeeringSecurities disagree (%s): enforcing %s",
                peer,
                ", ".join(sorted(m.value for m in known)),
                SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION.value,
            )
        return SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION

    def _audit(self, peer: str) -> bool:
        said = {audit for p, audit in self._audits.values() if p == peer}
        if not said:
            return self.settings.default_audit
        return said == {True}

    def _gateways_of(self, peer: str) -> tuple[IPv4Address, ...]:
        """The peer gateway's address on each tunnel: the client's if we are the server."""
        found = {(kind, n) for (kind, _), (p, n) in self._gateways.items() if p == peer}
        if len(found) != 1:
            return ()
        ((kind, n),) = found
        peer_is_server = kind == liqo.GATEWAY_CLIENT.kind
        return tuple(liqo.tunnel_ip(peer_is_server, i) for i in range(n))

    def _masquerade_of(self, peer: str) -> IPv4Address | None:
        found = sorted((k, a) for k, a in self._masquerade.items() if self._configs[k][0] == peer)
        tenant = [a for k, a in found if k.startswith(f"liqo-tenant-{peer}/")]
        candidates = tenant or [a for _, a in found]
        return candidates[0] if candidates else None

    def declare(self) -> None:
        """Make the desired state's peers those the facts imply, each with its ``PeerState``."""
        cidrs = self.local_pod_cidrs()
        api = self.api_server()
        full = list(cidrs)
        if api is not None:
            full += [IPv4Network(a) for a in api.addresses if not any(a in c for c in cidrs)]
        wanted: dict[str, PeerState] = {}
        for peer in sorted(set(self._foreign.values())):
            if not self.settings.serves(peer):
                continue
            remap = self.config_of(peer)
            if remap is None or not remap.original:
                continue  # no network configuration yet: no tunnel either
            tunnel = self.settings.tunnel(peer)
            gateways = self._gateways_of(peer)
            more = len(gateways) - 1 if tunnel == liqo.TUNNEL else 0
            wanted[peer] = PeerState(
                name=peer,
                tunnel=tunnel,
                mode=self._mode(peer),
                audit=self._audit(peer),
                sources=remap.original,
                full_access=tuple(full),
                api=api,
                gateway=gateways[0] if gateways else None,
                masquerade=self._masquerade_of(peer),
                more_tunnels=tuple(liqo.tunnel_name(i) for i in range(1, more + 1)),
                more_gateways=gateways[1 : more + 1],
            )
        # Two peers on one tunnel (no --peer in a gateway pod of one tunnel), or with one hash:
        # the last would win the tunnel or share the sets. Neither is enforced; the tunnel stays
        # unknown, and so fails closed.
        clash = names.clashes((p.name, p.tunnel) for p in wanted.values())
        if clash != self._clashes:
            for peer, why in sorted(clash.items()):
                log.error("peer %s refused: %s (run one agent per peer: --peer)", peer, why)
            self._clashes = clash
        for name in clash:
            del wanted[name]
        for name in [n for n in self._declared if n not in wanted]:
            log.info("peer %s removed", name)
            del self._declared[name]
            self.desired.remove_peer(name)
        for name, state in wanted.items():
            old = self._declared.get(name)
            if old == state:
                continue
            if old is None:
                log.info("peer %s declared: %s", name, _describe(state))
            else:
                log.info("peer %s changed: %s", name, _diff(old, state))
            self._declared[name] = state
            self.desired.upsert_peer(state)


def _describe(p: PeerState) -> str:
    return (
        f"mode={p.mode.value} tunnel={p.tunnel} sources={','.join(map(str, p.sources))} "
        f"full_access={','.join(map(str, p.full_access)) or '-'} "
        f"api={f'{fmt(p.api.addresses)}:{p.api.port}' if p.api else '-'} "
        f"gateway={fmt(p.gateways) or '-'} masquerade={p.masquerade or '-'} "
        f"tunnels={','.join(p.tunnels)}"
    )


def _diff(old: PeerState, new: PeerState) -> str:
    changed = []
    for name in (
        "mode",
        "audit",
        "tunnel",
        "sources",
        "full_access",
        "api",
        "gateway",
        "masquerade",
        "more_tunnels",
        "more_gateways",
    ):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            show = (lambda v: v.value) if name == "mode" else str
            changed.append(f"{name} {show(a)} -> {show(b)}")
    return "; ".join(changed)
