"""Helpers for the lab tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from peerwall.dataplane.nft import LibNft
from peerwall.lab import build as labs
from peerwall.lab.netns import list_namespaces
from peerwall.lab.plan import LabPlan
from peerwall.lab.wiring import GATEWAY_SYSCTLS
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.model.topology import Topology
from peerwall.nsenter import entered

LabUp = Callable[..., LabPlan]
"""``lab_up(topology, text, mode, **LabSettings overrides) -> LabPlan``."""


def switch(plan: LabPlan, mode: SecurityMode) -> None:
    """Change the lab's mode through its agents; returns once they enforce it."""
    labs.set_mode(plan.name, mode)


def repair(plan: LabPlan) -> None:
    """Have every agent of the lab read its table back and repair it now."""
    labs.repair(plan.name)


@contextlib.contextmanager
def frozen_agent(plan: LabPlan, cluster: str, settings: Any = None) -> Iterator[None]:
    """``cluster``'s agent stopped (SIGSTOP) for the block, so that a test can keep its table
    damaged for as long as it likes: nftables' notifications of the damage wait in the agent's
    socket, and it repairs at once when it runs again (SIGCONT). Its supervisor is stopped first
    (else its liveness probe would kill and restart the stopped agent) and resumed last."""
    from peerwall.lab import agents
    from peerwall.lab.state import lab_folder
    from peerwall.settings import LabSettings

    folder = lab_folder(plan.name, settings or LabSettings())
    supervisors = agents.scan(folder, cluster)
    assert supervisors, f"the agent of {cluster} is not running"
    everyone = agents.scan(folder, cluster, supervisors=False)
    order = supervisors + [p for p in everyone if p not in supervisors]
    assert len(order) > len(supervisors), f"the agent of {cluster} is between restarts"
    for pid in order:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(order):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def table_back(plan: LabPlan, cluster: str, patience: float = 60.0) -> None:
    """Wait until ``cluster``'s gateway has its peerwall table again; fail after ``patience``
    seconds (not a bound on how fast: a guard against waiting for ever)."""
    deadline = time.monotonic() + patience
    while not has_table(plan, cluster):
        assert time.monotonic() < deadline, f"{cluster}'s table did not come back"
        time.sleep(0.01)


def has_table(plan: LabPlan, cluster: str) -> bool:
    gw = plan.gateway_ns(cluster)
    argv = ["ip", "netns", "exec", gw, "nft", "list", "table", "inet", "peerwall"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def tables_as_built(plan: LabPlan) -> LabPlan:
    """A lab that a module's tests share, as its next test must find it: a test that deletes a
    gateway's table and fails before the table is back leaves it missing, which would fail the
    next test too; the agents put it back (their read-back, the periodic resync's path). A no-op
    when every table is there, so a test that never asks for a resync still does not."""
    if not all(has_table(plan, c.name) for c in plan.topology.clusters):
        repair(plan)
    return plan


def topology_of(data: dict[str, object]) -> tuple[Topology, str]:
    return topology_from_data(data, "generated"), yaml.safe_dump(data)


def seed_topology(text: str) -> Topology:
    return load_topology(text, "seed-topology.yaml")


def stop_agent(plan: LabPlan, cluster: str) -> None:
    """Stop one gateway's agent (a hostile peer runs none; a control test must not be repaired)."""
    from peerwall.lab import agents
    from peerwall.settings import LabSettings

    agents.stop(plan, LabSettings(), [cluster])


def _ip_json(ns: str, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(["ip", "-j", "-n", ns, *args], capture_output=True, text=True, check=True)
    out: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    return out


def _settling(link: dict[str, Any]) -> bool:
    """Carrier on but not yet running: the kernel's linkwatch work, which sets the operational
    state (and NO-CARRIER, and routes' linkdown) a moment after a veth comes up, is pending."""
    flags = link["flags"]
    return "LOWER_UP" in flags and "UP" in flags and link["operstate"] not in ("UP", "UNKNOWN")


def _settled_links(names: list[str]) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + 2
    while True:
        links = {ns: _ip_json(ns, "link", "show") for ns in names}
        if not any(_settling(i) for ls in links.values() for i in ls):
            return links
        if time.monotonic() > deadline:
            return links  # the difference will show
        time.sleep(0.01)


def neighbours_resolved_by_arp(prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The IPv4 neighbour entries of a running lab that are not its permanent ones, by
    namespace (only those that have any)."""
    out = {}
    for ns in list_namespaces(prefix):
        found = [
            n for n in _ip_json(ns, "-4", "neigh", "show") if "PERMANENT" not in n.get("state", [])
        ]
        if found:
            out[ns] = found
    return out


def snapshot(prefix: str) -> dict[str, dict[str, object]]:
    """A running lab's wiring as the kernel has it, comparable between labs of different names
    (the lab prefix is cut from every namespace name). Per namespace: each link's flags, MTU,
    state and veth peer (as namespace and interface name, not the indexes that differ between
    builds) and MAC, the IPv4 addresses, the IPv4 routes of every table, the permanent IPv4
    neighbour entries, the gateway sysctls, and the text of the ``pw-kube`` and ``pw-cni``
    tables. IPv6 is left out: its link-local addresses appear only after duplicate address
    detection."""
    names = list_namespaces(prefix)

    def short(ns: str | None) -> str | None:
        return ns[len(prefix) :] if ns and ns.startswith(prefix) else ns

    links = _settled_links(names)
    nsids = {
        ns: {e["nsid"]: e.get("name") for e in _ip_json(ns, "netns", "list-id")} for ns in names
    }
    ifnames = {ns: {i["ifindex"]: i["ifname"] for i in links[ns]} for ns in names}
    out: dict[str, dict[str, object]] = {}
    for ns in names:
        interfaces = {}
        for i in links[ns]:
            peer = None
            if "link_netnsid" in i:
                other = nsids[ns].get(i["link_netnsid"])
                peer = (short(other), ifnames.get(other or "", {}).get(i.get("link_index")))
            interfaces[i["ifname"]] = {
                "flags": sorted(i["flags"]),
                "mtu": i["mtu"],
                "operstate": i["operstate"],
                "peer": peer,
                "mac": i.get("address"),
            }
        addresses = sorted(
            (
                a["ifname"],
                json.dumps({k: v for k, v in info.items() if "life" not in k}, sort_keys=True),
            )
            for a in _ip_json(ns, "-4", "addr", "show")
            for info in a.get("addr_info", [])
        )
        routes = sorted(
            json.dumps(r, sort_keys=True)
            for r in _ip_json(ns, "-4", "route", "show", "table", "all")
        )
        neighbours = sorted(
            (n["dev"], n["dst"], n.get("lladdr"))
            for n in _ip_json(ns, "-4", "neigh", "show", "nud", "permanent")
        )
        sysctls = {}
        with entered(ns):
            for key in GATEWAY_SYSCTLS:
                with open("/proc/sys/" + key.replace(".", "/")) as f:
                    sysctls[key] = f.read().strip()
        tables = {}
        with LibNft(ns) as nft:
            listed = nft.list_json("list tables")
            have = {t["table"]["name"] for t in listed["nftables"] if "table" in t}
            for table in ("pw-kube", "pw-cni"):
                if table in have:
                    tables[table] = nft.list_text(f"list table ip {table}")
        out[short(ns) or ns] = {
            "links": interfaces,
            "addresses": addresses,
            "routes": routes,
            "neighbours": neighbours,
            "sysctls": sysctls,
            "tables": tables,
        }
    return out


def differences(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> list[str]:
    """Where two snapshots differ, readably (an assertion on ``==`` of two snapshots shows
    little)."""
    out = [
        f"namespace {ns} only on the {side}"
        for ns, side in [(n, "left") for n in a.keys() - b.keys()]
        + [(n, "right") for n in b.keys() - a.keys()]
    ]
    for ns in sorted(a.keys() & b.keys()):
        for kind in a[ns]:
            x, y = a[ns][kind], b[ns][kind]
            if x == y:
                continue
            if isinstance(x, list) and isinstance(y, list):
                out += [f"{ns} {kind} only left: {e}" for e in x if e not in y]
                out += [f"{ns} {kind} only right: {e}" for e in y if e not in x]
            elif isinstance(x, dict) and isinstance(y, dict):
                for k in sorted(x.keys() | y.keys()):
                    if x.get(k) != y.get(k):
                        out.append(f"{ns} {kind} {k}: {x.get(k)} != {y.get(k)}")
            else:
                out.append(f"{ns} {kind}: {x} != {y}")
    return out
