"""Liqo v1's shape of a lab (``lab up --shape liqo``): a gateway per peer, agents on Kubernetes.

What the simple shape puts in one gateway per cluster is split as Liqo v1 splits it:

* the cluster's **node** (``pw-<lab>-gw-<cluster>``, the simple shape's gateway namespace) keeps the
  pods, the API and Internet hosts, kube-proxy's service DNAT and Liqo's masquerade (``lab.kube``)
  and routes each peer's pods, as the cluster sees them, to that peer's gateway;
* one **gateway** per peer (``pw-<lab>-lgw-<cluster>-<peer>``, as Liqo runs ``gw-<peer>`` in the
  tenant namespace) joined to the node by ``eth0`` and to the peer's gateway by a veth named
  ``liqo-tunnel`` (the provider's end is the server: 169.254.18.1). Liqo's policy routing sends
  what comes from the node to the tunnel (``ip rule iif eth0 lookup 100``). Where the two pod
  CIDRs overlap, the gateway remaps as Liqo's does (``pkg/gateway/remapping/cidr.go`` at liqotech/
  liqo 557c199c: the ``DNAT`` rule of the prerouting chain rewrites the destination of traffic
  from the cluster, our view of the peer, to the peer's own addresses; the ``SNAT`` rule of the
  postrouting chain rewrites the source of traffic from the tunnel, the peer's addresses, to our
  view of them). The forward hook in between, where peerwall's table filters, sees the peer's
  original source and our real destination, as on Liqo v1;
* one emulated **API server** per cluster holding the objects Liqo would create for the topology,
  listening at ``API_ADDRESS`` on the node's loopback (every gateway reaches it through ``eth0``)
  and on 127.0.0.1 for ``kubectl`` (``lab kubeconfig``); one process serves them all
  (``lab.apiserver.labserve``), each with its own objects, certificate, tokens and RBAC;
* one **agent** per gateway, ``--source kubernetes`` with the chart's arguments, in the pod's
  shape: the ServiceAccount volume at /run/secrets/kubernetes.io/serviceaccount in a mount
  namespace of its own, ``KUBERNETES_SERVICE_HOST``/``PORT``, under the lab's supervisor
  (``lab.supervise``) as the kubelet would restart it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from peerwall.compile.build import fail_closed
from peerwall.compile.names import tunnel_ifname
from peerwall.dataplane.nft import LibNft
from peerwall.errors import LabError
from peerwall.lab.agents import live_processes, log_tail
from peerwall.lab.apiserver.layout import (
    API_ADDRESS,
    KUBE_API_PORT,
    folder_of,
    gateway_pod,
    log_path,
)
from peerwall.lab.apiserver.liqo_objects import is_gateway_server, tunnels
from peerwall.lab.kube import cni_script, kube_script
from peerwall.lab.netns import ip_batch
from peerwall.lab.plan import LabPlan
from peerwall.lab.rewire import apply_steps
from peerwall.lab.state import lab_folder, make_folder
from peerwall.lab.wiring import (
    GATEWAY_SYSCTLS,
    Address,
    End,
    Netns,
    Role,
    Route,
    Sysctl,
    Veth,
    Wiring,
    rewire_steps,
    wiring,
)
from peerwall.liqo import API_SERVER_PORT
from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.nft.objects import render_replace
from peerwall.settings import LabSettings

SHAPE = "liqo"
TUNNEL = "liqo-tunnel"
TUNNEL_PATTERN = "liqo-tunnel*"
NODE_LINKS = IPv4Network("169.254.100.0/24")
"""Node <-> gateway links, a /30 per peer (the same in every cluster: each node is its own
namespace); 63 peers per cluster at most."""
ROUTE_TABLE = 100
REMAP_TABLE = "liqo-remap"
SA_MOUNT = "/run/secrets/kubernetes.io/serviceaccount"
"""/var/run is /run: where the kubelet mounts a pod's ServiceAccount volume."""
POD_SHELL = (
    # The lab folder is under /run by default, which the pod's private /run hides: keep it through
    # the working directory (a shadowed directory stays reachable from a process inside it).
    'cd "$1" && mount -t tmpfs pod-run /run && mkdir -p "$0" "$1" && mount --bind "$2" "$0" && '
    'mount --bind . "$1" && shift 2 && exec "$@"'
)
"""Inside the agent's own mount namespace: a private /run (the host's is not touched), the
ServiceAccount volume where the kubelet puts it, the lab folder where it was, then the agent."""
CONVERGE_TIMEOUT = 60.0
SERVER_MODULE = "peerwall.lab.apiserver.labserve"


def gateway_ns(plan: LabPlan, cluster: str, peer: str) -> str:
    return f"{plan.prefix}lgw-{cluster}-{peer}"


def node_ns(plan: LabPlan, cluster: str) -> str:
    return plan.gateway_ns(cluster)


def gateways(plan: LabPlan) -> list[tuple[str, str]]:
    """(cluster, peer) of every gateway, in topology order."""
    t = plan.topology
    return [(c.name, peer) for c in t.clusters for peer in t.peers[c.name]]


def namespaces(plan: LabPlan) -> list[str]:
    return plan.namespaces() + [gateway_ns(plan, c, p) for c, p in gateways(plan)]


def is_server(plan: LabPlan, cluster: str, peer: str) -> bool:
    """``liqoctl peer`` puts the gateway server at the provider (of the pair's first peering)."""
    return is_gateway_server(plan.topology, cluster, peer)


def liqo_wiring(plan: LabPlan) -> Wiring:
    """The simple shape's wiring with each node-to-node tunnel replaced by two gateways (one per
    side) and a ``liqo-tunnel`` between them."""
    t = plan.topology
    base = wiring(plan)
    nodes = {node_ns(plan, c.name) for c in t.clusters}
    direct = {v for v in base.veths if v.a.ns in nodes and v.b.ns in nodes}
    gone = {e for v in direct for e in v.ends}
    ns = list(base.namespaces)
    veths = [v for v in base.veths if v not in direct]
    addresses = [a for a in base.addresses if a.end not in gone]
    routes = [r for r in base.routes if r.dev is None or End(r.ns, r.dev) not in gone]
    sysctls = list(base.sysctls)
    for c in t.clusters:
        node = node_ns(plan, c.name)
        if c.api_server:
            for address in t.addresses.api_ips(c.name)[1:]:
                # The API server's other addresses (apiServerAddresses), on its host.
                addresses.append(Address(plan.api_ns(c.name), "eth0", f"{address}/32"))
                routes.append(Route(node, f"{address}/32 dev api"))
        for k, peer in enumerate(t.peers[c.name]):
            gw = gateway_ns(plan, c.name, peer)
            here, there = NODE_LINKS[4 * k + 1], NODE_LINKS[4 * k + 2]
            ifname = tunnel_ifname(peer)  # lab.kube's masquerade matches it as the way out
            ns.append(Netns(gw, Role.GATEWAY))
            sysctls += [Sysctl(gw, key, value) for key, value in GATEWAY_SYSCTLS.items()]
            veths.append(Veth(End(node, ifname), End(gw, "eth0")))
            addresses += [Address(node, ifname, f"{here}/30"), Address(gw, "eth0", f"{there}/30")]
            routes.append(
                Route(node, f"{t.addresses.remapped(c.name, peer)} via {there} dev {ifname}")
            )
            external = t.cluster_by_name[peer].external_cidr
            if external is not None:
                # Replies to the peer's masquerade source (Liqo routes its external CIDR so too).
                routes.append(Route(node, f"{external} via {there} dev {ifname}"))
            routes.append(Route(gw, f"default via {here} dev eth0"))
    for tun in plan.tunnels:
        a, b = tun.a, tun.b
        server, client = (a, b) if is_server(plan, a, b) else (b, a)
        s_ns, c_ns = gateway_ns(plan, server, client), gateway_ns(plan, client, server)
        for i in range(tunnels(t, a, b)):
            name, (s_ip, c_ip) = tunnel_name(i), tunnel_ips(i)
            veths.append(Veth(End(s_ns, name), End(c_ns, name)))
            addresses += [Address(s_ns, name, f"{s_ip}/30"), Address(c_ns, name, f"{c_ip}/30")]
        if tunnels(t, a, b) > 1:
            # Flows spread over the tunnels by ports too (table 100 is multipath), so probes
            # cross every one of them.
            sysctls += [
                Sysctl(ns, "net.ipv4.fib_multipath_hash_policy", "1") for ns in (s_ns, c_ns)
            ]
    # The simple shape's permanent neighbour entries of the links kept (pods, API servers,
    # uplinks); the gateways' own links resolve by ARP.
    neighbours = tuple(n for n in base.neighbours if n.end not in gone)
    return Wiring(
        tuple(ns), tuple(veths), tuple(addresses), tuple(routes), tuple(sysctls), neighbours
    )


def tunnel_name(i: int) -> str:
    """Liqo's name of a gateway's tunnel ``i`` (``pkg/gateway/tunnel/netlink.go``,
    ``GetTunnelName``): liqo-tunnel, liqo-tunnel1, …"""
    return TUNNEL if i == 0 else f"{TUNNEL}{i}"


def tunnel_ips(i: int) -> tuple[IPv4Address, IPv4Address]:
    """(server end, client end) of tunnel ``i``: 169.254.18.(4i+1) and (4i+2) (``GetInterfaceIP``)."""
    base = IPv4Address("169.254.18.0") + 4 * i
    return base + 1, base + 2


def remap_script(plan: LabPlan, cluster: str, peer: str) -> str | None:
    """Liqo's remapping in ``cluster``'s gateway for ``peer``, or None where the CIDRs do not
    overlap (Liqo remaps nothing then)."""
    t = plan.topology
    remapped, original = t.addresses.remapped(cluster, peer), t.cluster_by_name[peer].pod_cidr
    if remapped == original:
        return None
    return f"""add table ip {REMAP_TABLE}
delete table ip {REMAP_TABLE}
table ip {REMAP_TABLE} {{
\tchain pre {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname "eth0" ip daddr {remapped} dnat ip prefix to {original}
\t}}
\tchain post {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tiifname "{TUNNEL_PATTERN}" ip saddr {original} snat ip prefix to {remapped}
\t}}
}}
"""


def build(plan: LabPlan, settings: LabSettings) -> int:
    """Create the namespaces, links, routes and tables; returns how many namespaces."""
    w = liqo_wiring(plan)
    steps = rewire_steps(None, w)
    closed = {
        gateway_ns(plan, c, p): render_replace(fail_closed(c, TUNNEL_PATTERN))
        for c, p in gateways(plan)
    }
    apply_steps(steps, closed)
    t = plan.topology
    for c in t.clusters:
        node = node_ns(plan, c.name)
        ip_batch([f"addr add {API_ADDRESS}/32 dev lo"], node)
        with LibNft(node) as nft:
            nft.run(kube_script(plan, c.name, settings) + cni_script())
    for cluster, peer in gateways(plan):
        gw = gateway_ns(plan, cluster, peer)
        hops = []
        for i in range(tunnels(t, cluster, peer)):
            s_ip, c_ip = tunnel_ips(i)
            hops.append(
                f"via {c_ip if is_server(plan, cluster, peer) else s_ip} dev {tunnel_name(i)}"
            )
        route = hops[0] if len(hops) == 1 else " ".join(f"nexthop {h}" for h in hops)
        ip_batch(
            [
                f"rule add iif eth0 lookup {ROUTE_TABLE}",
                f"route add default table {ROUTE_TABLE} {route}",
            ],
            gw,
        )
        if (script := remap_script(plan, cluster, peer)) is not None:
            with LibNft(gw) as nft:
                nft.run(script)
    return len(w.namespaces)


def probe_settings(settings: LabSettings) -> LabSettings:
    """The lab's settings as the probes of a Liqo-shaped lab use them: offloaded pods reach their
    home API server at its IP resource's address, port 443 (``peerwall.liqo.API_SERVER_PORT``)."""
    return dataclasses.replace(settings, api_port=API_SERVER_PORT)


def resync_kube(plan: LabPlan, settings: LabSettings) -> None:
    """Reload every node's kube-proxy table for ``plan`` (the topology the API servers hold now)."""
    for c in plan.topology.clusters:
        with LibNft(node_ns(plan, c.name)) as nft:
            nft.run(kube_script(plan, c.name, settings))


# --- processes -------------------------------------------------------------------------------


def _folder(plan: LabPlan, settings: LabSettings) -> Path:
    return Path(lab_folder(plan.name, settings))


def kubeconfig_path(plan: LabPlan, settings: LabSettings, cluster: str) -> Path:
    return folder_of(_folder(plan, settings), cluster) / "kubeconfig"


def status_path(plan: LabPlan, settings: LabSettings, cluster: str, peer: str) -> Path:
    return _folder(plan, settings) / "agents" / f"{cluster}-{peer}.status.json"


def start_servers(plan: LabPlan, settings: LabSettings) -> None:
    """One process, under the lab's supervisor, serving every cluster's API server (each on its
    own addresses, with its own certificate, tokens and RBAC: ``lab.apiserver.labserve``); returns
    once each has written its kubeconfig."""
    folder = _folder(plan, settings)
    serve = []
    for c in plan.topology.clusters:
        make_folder(str(folder_of(folder, c.name)))
        kubeconfig_path(plan, settings, c.name).unlink(missing_ok=True)
        serve += [f"--cluster={c.name}", f"--netns={node_ns(plan, c.name)}"]
    cmd = [
        sys.executable, "-m", "peerwall.lab.supervise", "--",
        sys.executable, "-m", SERVER_MODULE, f"--folder={folder}", *serve,
    ]  # fmt: skip
    log_file = log_path(folder)
    with open(log_file, "ab") as log:
        subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    for c in plan.topology.clusters:
        while not kubeconfig_path(plan, settings, c.name).exists():
            if time.monotonic() > deadline:
                raise LabError(
                    f"lab {plan.name}: the API server of {c.name} did not start "
                    f"({log_file}):\n{log_tail(log_file)}"
                )
            time.sleep(0.05)


def agent_args(peer: str, mode: SecurityMode) -> list[str]:
    """The chart's arguments of the gateway's peerwall container, ``$(PEERWALL_PEER)`` and
    ``$(POD_IP)`` filled in as the Downward API would (the gateway's agent is reached on its
    loopback), ``networking.securityMode`` as the cluster was installed with."""
    container, _ = gateway_pod()
    out = []
    for a in container["args"]:
        a = a.replace("$(PEERWALL_PEER)", peer).replace("$(POD_IP)", "127.0.0.1")
        if a.startswith("--set=networking.securityMode="):
            a = f"--set=networking.securityMode={mode.value}"
        out.append(a)
    return out


def start_agents(plan: LabPlan, settings: LabSettings, mode: SecurityMode) -> None:
    folder = _folder(plan, settings)
    make_folder(str(folder / "agents"))
    for c, peer in gateways(plan):
        installed = plan.topology.cluster_by_name[c].security_mode or mode
        volume = folder_of(folder, c) / "sa" / f"gw-{peer}"
        status = status_path(plan, settings, c, peer)
        status.unlink(missing_ok=True)
        cmd = [
            "ip", "netns", "exec", gateway_ns(plan, c, peer),
            sys.executable, "-m", "peerwall.lab.supervise", "--",
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", POD_SHELL, SA_MOUNT, str(folder), str(volume.relative_to(folder)),
            sys.executable, "-m", "peerwall.cli", *agent_args(peer, installed),
            f"--status-file={status}",
        ]  # fmt: skip
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "KUBERNETES_SERVICE_HOST": str(API_ADDRESS),
            "KUBERNETES_SERVICE_PORT": str(KUBE_API_PORT),
            "HOME": str(folder),
        }
        with open(folder / "agents" / f"{c}-{peer}.log", "ab") as log:
            subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )


def agent_status(plan: LabPlan, settings: LabSettings, cluster: str, peer: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(status_path(plan, settings, cluster, peer).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def wait_agents(plan: LabPlan, settings: LabSettings, timeout: float = CONVERGE_TIMEOUT) -> None:
    """Until every gateway's agent is ready (it enforces what its API server holds)."""
    deadline = time.monotonic() + timeout
    for c, peer in gateways(plan):
        while agent_status(plan, settings, c, peer).get("ready") is not True:
            if time.monotonic() > deadline:
                log = _folder(plan, settings) / "agents" / f"{c}-{peer}.log"
                raise LabError(
                    f"lab {plan.name}: the agent of {c}'s gateway for {peer} is not ready "
                    f"within {timeout:g} s ({log}):\n{log_tail(log)}"
                )
            time.sleep(0.05)


def processes(folder: str) -> dict[str, list[int]]:
    """PIDs of the lab's API servers and agents (supervisors and what they run), found by their
    command lines: {"servers": …, "agents": …}."""
    mine = (folder.rstrip("/") + "/").encode()
    whole = folder.rstrip("/").encode()
    out: dict[str, list[int]] = {"servers": [], "agents": []}
    for pid, argv in live_processes():
        ours = any(mine in a or a.endswith(b"=" + whole) or a == whole for a in argv)
        if not ours:
            continue
        if SERVER_MODULE.encode() in argv:
            out["servers"].append(pid)
        elif b"--source=kubernetes" in argv:
            out["agents"].append(pid)
    return out


def _running_with(*arguments: str) -> bool:
    """Some live process (not a zombie) has every one of ``arguments`` in its command line."""
    want = [a.encode() for a in arguments]
    return any(all(w in argv for w in want) for _, argv in live_processes())


def report(plan: LabPlan, settings: LabSettings) -> dict[str, Any]:
    """What ``lab status`` says of a Liqo-shaped lab: each gateway's table (present, not failed
    closed) and agent (running, ready), each API server (running, serving)."""
    from peerwall.compile.names import FAMILY, GUARD_TABLE, TABLE
    from peerwall.dataplane.readback import table_exists

    folder = _folder(plan, settings)
    out: dict[str, Any] = {"gateways": {}, "agents": {}, "servers": {}, "failed": False}
    for c, peer in gateways(plan):
        key = f"{c}/{peer}"
        problems = []
        with LibNft(gateway_ns(plan, c, peer)) as nft:
            if not table_exists(nft, FAMILY, TABLE):
                problems.append(f"table {FAMILY} {TABLE} is missing")
            if table_exists(nft, FAMILY, GUARD_TABLE):
                problems.append(f"failed closed ({FAMILY} {GUARD_TABLE}): see the agent's log")
        status = agent_status(plan, settings, c, peer)
        running = _running_with(f"--status-file={status_path(plan, settings, c, peer)}")
        out["gateways"][key] = problems
        out["agents"][key] = {"running": running, **status}
        out["failed"] = out["failed"] or bool(problems) or not running or not status.get("ready")
    for cluster in plan.topology.clusters:
        name = cluster.name
        running = _running_with(f"--folder={folder}", f"--cluster={name}")
        serving = kubeconfig_path(plan, settings, name).exists()
        out["servers"][name] = {
            "running": running,
            "kubeconfig": str(kubeconfig_path(plan, settings, name)) if serving else None,
        }
        out["failed"] = out["failed"] or not running or not serving
    return out


def stop_all_in(folder: str) -> None:
    """Stop the lab's agents and API servers (supervisors first: none restarts what was killed)."""
    found = processes(folder)
    pids = found["agents"] + found["servers"]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def api_topology(plan: LabPlan, settings: LabSettings, text: str, source: str) -> Topology:
    """The lab's topology as its API servers hold it now, read as ``peerwall export`` reads
    clusters (``agent.kube.snapshot``), kept in the lab's own names and addresses: each peering's
    mode is its PeeringSecurities' (none: the file's cluster modes decide), and a pod is left out
    once the API no longer runs it (deleted, or its shadow pod gone from its provider). What the
    file says that the API cannot (install-time modes, names Kubernetes cannot spell) stays."""
    from peerwall.agent.kube.snapshot import ClusterRef, read_topology_document

    t = plan.topology
    live = read_topology_document(
        [ClusterRef(kubeconfig_path(plan, settings, c.name)) for c in t.clusters]
    )
    modes = {
        frozenset((p["consumer"], p["provider"])): p["securityMode"]
        for p in live["peerings"]
        if "securityMode" in p
    }
    running = {(p["cluster"], p["namespace"], p["ip"]) for p in live["pods"]}
    doc = yaml.safe_load(text)
    for p in doc.get("peerings") or []:
        mode = modes.get(frozenset((p["consumer"], p["provider"])))
        if mode is None:
            p.pop("securityMode", None)
        else:
            p["securityMode"] = mode
    kept = []
    for entry in doc.get("pods") or []:
        pod = t.pod_by_name[entry["name"]]
        if (pod.home, pod.namespace, str(pod.ip)) in running:
            kept.append({**entry, "ip": str(pod.ip)})  # addresses stay where the lab put them
    doc["pods"] = kept
    return load_topology(
        yaml.safe_dump(doc, sort_keys=False), f"{source} as lab {plan.name}'s API servers hold it"
    )
