"""Topology -> a running emulated virtual cluster in network namespaces, and back to nothing.

``up`` is idempotent: it first removes whatever a lab of the same name left behind (a crashed run
included), then builds everything, and on any failure removes what it built before re-raising.
Nothing is ever added to the root namespace: every link is created from inside a ``pw-`` namespace
with its peer end moved straight into another one.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import stale
from peerwall.compile.names import FAMILY, TABLE
from peerwall.compile.state import GatewayState
from peerwall.dataplane.apply import SyncResult, sync
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.drift import Drift, drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.errors import LabError
from peerwall.lab import agents
from peerwall.lab.kube import cni_script, kube_script
from peerwall.lab.netns import delete_namespaces, ip_batch, list_namespaces, write_sysctl
from peerwall.lab.plan import (
    GATEWAY_LINK_IP,
    NOWHERE,
    UPLINK_GW,
    UPLINK_HOST,
    LabPlan,
    check_lab_name,
)
from peerwall.lab.state import LabState, lab_folder, load_state, locked, remove_state, save_state
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.nsenter import entered
from peerwall.settings import LabSettings

Progress = Callable[[str], None]

GATEWAY_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # The tunnel's nftables chain does anti-spoofing by interface; strict reverse-path filtering
    # would also drop legitimate remapped sources.
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
}


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces and nftables rules: run it as root")


def _gateway_links(plan: LabPlan, cluster: str) -> list[str]:
    """First pass in a gateway: its pods, API server, uplink, and the tunnels it creates."""
    t = plan.topology
    gw = f"{GATEWAY_LINK_IP}/32"
    lines = ["link set lo up"]
    hosts = [(plan.pod_veth(p), plan.pod_ns(p.name), p.ip) for p in t.pods if p.physical == cluster]
    c = t.cluster_by_name[cluster]
    if c.api_server:
        hosts.append(("api", plan.api_ns(cluster), plan.topology.addresses.api_ip(cluster)))
    for veth, ns, ip in hosts:
        lines += [
            f"link add name {veth} type veth peer name eth0 netns {ns}",
            f"addr add {gw} dev {veth}",
            f"link set {veth} up",
            f"route add {ip}/32 dev {veth}",
        ]
    lines += [
        f"link add name uplink type veth peer name eth0 netns {plan.internet_ns(cluster)}",
        f"addr add {UPLINK_GW} dev uplink",
        "link set uplink up",
    ]
    for tun in plan.tunnels:
        if tun.a == cluster:
            mine, ip, _ = plan.tunnel(cluster, tun.b)
            theirs, _, _ = plan.tunnel(tun.b, cluster)
            lines += [
                f"link add name {mine} type veth peer name {theirs} netns {plan.gateway_ns(tun.b)}",
                f"addr add {ip} dev {mine}",
                f"link set {mine} up",
            ]
    return lines


def _gateway_routes(plan: LabPlan, cluster: str) -> list[str]:
    """Second pass: the tunnel ends others created, then routes through every tunnel."""
    lines = []
    for tun in plan.tunnels:
        if tun.b == cluster:
            mine, ip, _ = plan.tunnel(cluster, tun.a)
            lines += [f"addr add {ip} dev {mine}", f"link set {mine} up"]
    for peer in plan.topology.peers[cluster]:
        ifname, _, peer_ip = plan.tunnel(cluster, peer)
        lines.append(
            f"route add {plan.topology.addresses.view(cluster, peer)} via {peer_ip} dev {ifname}"
        )
    lines += [
        f"route add unreachable {NOWHERE}",
        f"route add default via {UPLINK_HOST.ip} dev uplink",
    ]
    return lines


def _host_lines(ip: str) -> list[str]:
    return [
        "link set lo up",
        f"addr add {ip}/32 dev eth0",
        "link set eth0 up",
        f"route add {GATEWAY_LINK_IP} dev eth0 scope link",
        f"route add default via {GATEWAY_LINK_IP} dev eth0",
    ]


def desired_state(plan: LabPlan, cluster: str, mode: SecurityMode) -> GatewayState:
    """What ``cluster``'s gateway enforces in the lab: its tunnels are ``pwt-<hash8(peer)>``, the
    peer gateways are known by their tunnel addresses, and the gateways do the remapping."""
    gateways = {peer: plan.tunnel(cluster, peer)[2] for peer in plan.topology.peers[cluster]}
    return gateway_state(plan.topology, cluster, mode, gateways=gateways)


def clear_stale_flows(netns: str, state: GatewayState) -> int:
    """Delete the tracked connections ``state`` would not have let through (``compile.flows``)."""
    with Conntrack(netns) as ct:
        return len(ct.delete_where(functools.partial(stale, state)))


def apply_modes(
    plan: LabPlan, mode: SecurityMode, progress: Progress | None = None
) -> dict[str, SyncResult]:
    """Bring every gateway's ``inet peerwall`` table to the desired state for ``mode``, and clear
    the tracked connections that state forbids."""
    out = {}
    for c in plan.topology.clusters:
        state = desired_state(plan, c.name, mode)
        with LibNft(plan.gateway_ns(c.name)) as nft:
            out[c.name] = sync(nft, build(state))
        if out[c.name].changed:
            clear_stale_flows(plan.gateway_ns(c.name), state)
        if progress:
            o = out[c.name]
            kind = "full replace" if o.full else f"+{o.added}/-{o.removed} elements"
            progress(
                f"{c.name}: peerwall table synced ({kind})" if o.changed else f"{c.name}: in sync"
            )
    return out


def up(
    name: str,
    topology: Topology,
    topology_text: str,
    source: str,
    mode: SecurityMode,
    settings: LabSettings | None = None,
    progress: Progress | None = None,
) -> LabPlan:
    """Build the lab (replacing one of the same name) and start its agents; on any failure,
    remove what was built."""
    settings = settings or LabSettings()
    _require_root()
    say = progress or (lambda _msg: None)
    plan = LabPlan(name, topology)
    with locked(name, settings):
        _down(name, settings)
        try:
            _build(plan, settings, mode, say)
            save_state(LabState(name, source, mode.value), settings, topology_text)
            if settings.agents:
                started = time.perf_counter()
                digests = agents.write_inputs(plan, settings, mode, topology_text)
                agents.start(plan, settings)
                agents.wait(plan, settings, digests)
                say(
                    f"{len(digests)} agents enforcing {mode.value} in {time.perf_counter() - started:.1f} s"
                )
            else:
                apply_modes(plan, mode)
        except BaseException:
            _down(name, settings)
            raise
    return plan


def _build(plan: LabPlan, settings: LabSettings, mode: SecurityMode, say: Progress) -> None:
    topology = plan.topology
    started = time.perf_counter()
    namespaces = plan.namespaces()
    ip_batch(f"netns add {n}" for n in namespaces)
    say(f"{len(namespaces)} namespaces created")
    for c in topology.clusters:
        with entered(plan.gateway_ns(c.name)):
            write_sysctl(GATEWAY_SYSCTLS)
    for c in topology.clusters:
        ip_batch(_gateway_links(plan, c.name), plan.gateway_ns(c.name))
    for c in topology.clusters:
        ip_batch(_gateway_routes(plan, c.name), plan.gateway_ns(c.name))
    say(f"{len(topology.clusters)} gateways wired, {len(plan.tunnels)} tunnels")
    hosts = [(plan.pod_ns(p.name), _host_lines(str(p.ip))) for p in topology.pods]
    hosts += [
        (plan.api_ns(c.name), _host_lines(str(topology.addresses.api_ip(c.name))))
        for c in topology.clusters
        if c.api_server
    ]
    hosts += [
        (
            plan.internet_ns(c.name),
            [
                "link set lo up",
                f"addr add {UPLINK_HOST} dev eth0",
                f"addr add {plan.internet_ip(c.name)}/32 dev eth0",
                "link set eth0 up",
            ],
        )
        for c in topology.clusters
    ]
    # ip(8) spends its time in the kernel; a few workers overlap the process start-ups.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda h: ip_batch(h[1], h[0]), hosts))
    say(f"{len(topology.pods)} pods addressed")
    for c in topology.clusters:
        with LibNft(plan.gateway_ns(c.name)) as nft:
            nft.run(kube_script(plan, c.name, settings) + cni_script())
    say(f"services and source checks in place in {time.perf_counter() - started:.1f} s")


def set_mode(
    name: str,
    mode: SecurityMode,
    settings: LabSettings | None = None,
    progress: Progress | None = None,
) -> agents.Converged:
    """Change a running lab's global default mode at run time (through its agents: element
    transactions, and the flows the new mode forbids are cleared); returns when enforced."""
    settings = settings or LabSettings()
    with locked(name, settings):
        state = load_state(name, settings)
        plan = state.plan(settings)
        save_state(LabState(state.name, state.source, mode.value, state.generation + 1), settings)
        if not settings.agents:
            started = time.perf_counter()
            apply_modes(plan, mode, progress)
            return agents.Converged(time.perf_counter() - started, {})
        digests = agents.write_inputs(plan, settings, mode, state.topology_text(settings))
        return agents.wait(plan, settings, digests)


def repair(name: str, settings: LabSettings | None = None) -> dict[str, dict[str, Any]]:
    """Have the lab's agents read their tables back and repair any drift now (as they do every
    ``agent_resync_interval`` seconds); without agents, sync every gateway directly."""
    settings = settings or LabSettings()
    state = load_state(name, settings)
    plan = state.plan(settings)
    if not settings.agents:
        apply_modes(plan, SecurityMode(state.mode))
        return {}
    return agents.check_now(plan, settings)


def down(name: str, settings: LabSettings | None = None) -> list[str]:
    """Stop the lab's agents, remove every namespace of the lab and its state; returns the
    namespaces removed."""
    settings = settings or LabSettings()
    _require_root()
    check_lab_name(name)
    with locked(name, settings):
        return _down(name, settings)


def _down(name: str, settings: LabSettings) -> list[str]:
    agents.stop_all_in(lab_folder(name, settings))
    gone = list_namespaces(f"pw-{name}-")
    delete_namespaces(gone)
    remove_state(name, settings)
    return gone


def gateway_drift(plan: LabPlan, mode: SecurityMode) -> dict[str, list[Drift]]:
    """For each gateway, how its live ``inet peerwall`` table differs from the desired one."""
    out = {}
    for c in plan.topology.clusters:
        with LibNft(plan.gateway_ns(c.name)) as nft:
            live = read_table(nft, FAMILY, TABLE)
        out[c.name] = drift(live, build(desired_state(plan, c.name, mode)))
    return out
