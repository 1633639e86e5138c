"""A lab whose wiring changes live: ``wiring.rewire_steps`` on paper, then ``rewire_lab`` on
real namespaces, compared with labs built from scratch for the new topology.

The pure tests run the steps on a small model of the kernel (``Kernel``) that fails where ``ip``
would (an address added twice, a route through a gateway that is not on-link, a veth whose
surviving end would linger until the kernel's asynchronous namespace cleanup), so they check the
order of the steps as well as the result.
"""

from __future__ import annotations

import copy
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from hostile import connect, echo_server, roundtrip
from hypothesis_profiles import budget
from labkit import LabUp, differences, neighbours_resolved_by_arp, snapshot, topology_of
from peerwall.errors import LabError
from peerwall.lab import build as labs
from peerwall.lab.build import apply_modes
from peerwall.lab.plan import LabPlan
from peerwall.lab.probing import observe_lab
from peerwall.lab.wiring import (
    A_MAC,
    B_MAC,
    Address,
    Changes,
    End,
    Neighbour,
    Netns,
    Role,
    Route,
    Steps,
    Veth,
    Wiring,
    rewire_steps,
    wiring,
)
from peerwall.model import SecurityMode
from peerwall.policy import expect
from peerwall.settings import LabSettings, ProbeSettings
from strategies import small_topologies, topologies

pytestmark = pytest.mark.lab
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
Data = dict[str, Any]


def base() -> Data:
    """Three clusters, C1 and C2 overlapping (remapped), C1 peered with both, C1 offloading
    ``shop`` to C2, an API server in C1."""
    return {
        "clusters": [
            {"name": "C1", "podCIDR": "10.244.0.0/16", "apiServer": "A1"},
            {"name": "C2", "podCIDR": "10.244.0.0/16"},
            {"name": "C3", "podCIDR": "10.50.0.0/16"},
        ],
        "peerings": [
            {"consumer": "C1", "provider": "C2"},
            {"consumer": "C1", "provider": "C3"},
        ],
        "namespaces": [{"name": "shop", "cluster": "C1", "offloadedTo": ["C2"]}],
        "pods": [
            {"name": "web1", "cluster": "C1", "namespace": "shop", "labels": {"app": "web"}},
            {"name": "tool", "cluster": "C1"},
            {"name": "cache", "cluster": "C2", "labels": {"app": "cache"}},
            # After cache: when web2 leaves C2, cache's automatic address stays.
            {
                "name": "web2",
                "cluster": "C1",
                "namespace": "shop",
                "runsOn": "C2",
                "labels": {"app": "web"},
            },
            # Explicit: removing web2 (auto-addressed in C3 before it) leaves it where it is.
            {"name": "local3", "cluster": "C3", "ip": "10.50.0.100"},
        ],
        "services": [
            {"name": "web", "cluster": "C1", "namespace": "shop", "selector": {"app": "web"}},
            {"name": "cachesvc", "cluster": "C2", "selector": {"app": "cache"}},
        ],
    }


def edited(data: Data, edit: Callable[[Data], None]) -> Data:
    out = copy.deepcopy(data)
    edit(out)
    return out


def plan_of(data: Data, name: str = "w") -> LabPlan:
    return LabPlan(name, topology_of(data)[0])


def pod(data: Data, name: str) -> Data:
    found: Data = next(p for p in data["pods"] if p["name"] == name)
    return found


def namespace(data: Data, name: str) -> Data:
    found: Data = next(n for n in data["namespaces"] if n["name"] == name)
    return found


# --- edits, shared by the pure and the real tests ----------------------------------------------


def add_local_pod(d: Data) -> None:
    d["pods"].append({"name": "new1", "cluster": "C1", "labels": {"app": "web"}})


def add_offloaded_pod(d: Data) -> None:
    d["pods"].append(
        {
            "name": "new2",
            "cluster": "C1",
            "namespace": "shop",
            "runsOn": "C2",
            "labels": {"app": "web"},
        }
    )


def relabel(d: Data) -> None:
    pod(d, "web1")["labels"] = {"app": "other"}
    d["services"][1]["selector"] = {"app": "nothing"}


def offload_to_c3(d: Data) -> None:
    namespace(d, "shop")["offloadedTo"] = ["C2", "C3"]


def move_web2_to_c3(d: Data) -> None:
    pod(d, "web2")["runsOn"] = "C3"


def stop_offloading_to_c2(d: Data) -> None:
    for p in d["pods"]:
        if p.get("runsOn") == "C2" and p["cluster"] == "C1":
            del p["runsOn"]
    namespace(d, "shop")["offloadedTo"] = ["C3"]


def peer_c2_c3_first(d: Data) -> None:
    # First in the file: the links after it shift, and so do their tunnel addresses.
    d["peerings"].insert(0, {"consumer": "C2", "provider": "C3"})


def peer_c2_c3_last(d: Data) -> None:
    d["peerings"].append({"consumer": "C2", "provider": "C3"})


def unpeer_c2_c3(d: Data) -> None:
    d["peerings"] = [p for p in d["peerings"] if {p["consumer"], p["provider"]} != {"C2", "C3"}]


def change_modes(d: Data) -> None:
    d["peerings"][0]["securityMode"] = SEG.value
    d["clusters"][2]["securityMode"] = SEG.value


def add_cluster_c4(d: Data) -> None:
    d["clusters"].append({"name": "C4", "podCIDR": "10.60.0.0/16", "apiServer": "A4"})
    d["peerings"].append({"consumer": "C4", "provider": "C1"})
    d["pods"].append({"name": "p4", "cluster": "C4"})


def remove_cluster_c4(d: Data) -> None:
    d["clusters"] = [c for c in d["clusters"] if c["name"] != "C4"]
    d["peerings"] = [p for p in d["peerings"] if "C4" not in (p["consumer"], p["provider"])]
    d["pods"] = [p for p in d["pods"] if p["cluster"] != "C4"]


def insert_first_pod(d: Data) -> None:
    # No explicit IP, first in the file: every later pod of C1 gets the next address.
    d["pods"].insert(0, {"name": "first", "cluster": "C1"})


def remove_new2_and_web2(d: Data) -> None:
    # The last pods of their clusters: no other pod's automatic address moves.
    d["pods"] = [p for p in d["pods"] if p["name"] not in ("new2", "web2")]


# --- a model of the kernel, for the pure tests --------------------------------------------------


class Kernel:
    """What ``ip`` does to the wiring, strictly: every command that ``ip -batch`` would refuse
    (or that only works by luck of timing) raises AssertionError."""

    def __init__(self, w: Wiring) -> None:
        self.namespaces = {n.name for n in w.namespaces}
        self.peer: dict[End, End] = {}
        self.mac: dict[End, str] = {}
        for v in w.veths:
            self.peer[v.a], self.peer[v.b] = v.b, v.a
            self.mac[v.a], self.mac[v.b] = A_MAC, B_MAC
        self.addresses = set(w.addresses)
        self.routes = {r.key: r for r in w.routes}
        self.sysctls = {(s.ns, s.key): s.value for s in w.sysctls}
        self.neighbours = {(n.end, n.ip): n.mac for n in w.neighbours}

    def state(self) -> tuple[object, ...]:
        veths = {frozenset((a, b)) for a, b in self.peer.items()}
        return (
            self.namespaces,
            veths,
            self.addresses,
            self.routes,
            self.sysctls,
            self.neighbours,
        )

    @staticmethod
    def of(w: Wiring) -> tuple[object, ...]:
        return Kernel(w).state()

    def _drop_end(self, e: End) -> None:
        self.addresses = {a for a in self.addresses if a.end != e}
        self.routes = {k: r for k, r in self.routes.items() if End(r.ns, r.dev or "") != e}
        self.neighbours = {k: m for k, m in self.neighbours.items() if k[0] != e}

    def _on_link(self, ns: str, dev: str, via: str) -> bool:
        ip = IPv4Address(via)
        if any(
            a.end == End(ns, dev) and ip in IPv4Network(a.cidr, strict=False)
            for a in self.addresses
        ):
            return True
        r = self.routes.get((ns, via))
        return r is not None and r.dev == dev and "scope link" in r.text

    def run(self, ns: str, line: str) -> None:
        assert ns in self.namespaces, f"{line!r}: no namespace {ns}"
        w = line.split()
        if w[:2] == ["link", "add"]:
            # link add name A address MAC type veth peer name B address MAC netns NS
            a, b = End(ns, w[3]), End(w[14], w[10])
            assert b.ns in self.namespaces, f"{line!r}: no namespace {b.ns}"
            assert a not in self.peer and b not in self.peer, f"{line!r}: exists"
            self.peer[a], self.peer[b] = b, a
            self.mac[a], self.mac[b] = w[5], w[12]
        elif w[:2] == ["link", "del"]:
            e = End(ns, w[2])
            assert e in self.peer, f"{line!r}: no such link in {ns}"
            other = self.peer.pop(e)
            del self.peer[other]
            self._drop_end(e)
            self._drop_end(other)
        elif w[:2] == ["neigh", "replace"]:
            # neigh replace IP lladdr MAC dev IF nud permanent
            e = End(ns, w[6])
            assert e in self.peer, f"{line!r}: no such link in {ns}"
            assert w[4] == self.mac[self.peer[e]], f"{line!r}: not the MAC of the other end"
            self.neighbours[(e, w[2])] = w[4]
        elif w[:2] == ["neigh", "del"]:
            key = (End(ns, w[4]), w[2])
            assert key in self.neighbours, f"{line!r} in {ns}: no such entry"
            del self.neighbours[key]
        elif w[:2] == ["link", "set"]:
            assert w[2] == "lo" or End(ns, w[2]) in self.peer, f"{line!r}: no such link"
        elif w[0] == "addr":
            a = Address(ns, w[4], w[2])
            assert a.end in self.peer, f"{line!r}: no such link in {ns}"
            if w[1] == "add":
                assert a not in self.addresses, f"{line!r} in {ns}: exists"
                self.addresses.add(a)
            else:
                assert a in self.addresses, f"{line!r} in {ns}: no such address"
                self.addresses.remove(a)
                if not any(x.end == a.end for x in self.addresses):
                    # Linux flushes every route through an interface left without IPv4.
                    self._drop_end(a.end)
        elif w[:2] == ["route", "del"]:
            r = Route(ns, line.split(" ", 2)[2])
            assert self.routes.get(r.key) == r, f"{line!r} in {ns}: no such route"
            del self.routes[r.key]
        elif w[:2] == ["route", "replace"]:
            r = Route(ns, line.split(" ", 2)[2])
            if r.dev is not None:
                assert End(ns, r.dev) in self.peer, f"{line!r} in {ns}: no such link"
            if "via" in w:
                assert r.dev and self._on_link(ns, r.dev, w[w.index("via") + 1]), (
                    f"{line!r} in {ns}: gateway not on-link"
                )
            self.routes[r.key] = r
        else:
            raise AssertionError(f"unexpected command {line!r}")

    def phase(self, batches: dict[str, list[str]]) -> None:
        # Batches of one phase run in parallel: any order must do (here: backwards).
        for ns in reversed(list(batches)):
            for line in batches[ns]:
                self.run(ns, line)

    def apply(self, steps: Steps) -> None:
        self.phase(steps.unlink_batches())
        for ns in steps.delete_namespaces:
            assert ns in self.namespaces
            for e in [e for e in self.peer if e.ns == ns]:
                # A veth that goes only with its namespace lingers until the kernel's async
                # cleanup: its other end must be going too, or have been deleted by link.
                assert self.peer[e].ns in steps.delete_namespaces, f"{e} would linger"
                self._drop_end(e)
                del self.peer[e]
            self.namespaces.remove(ns)
            self.addresses = {a for a in self.addresses if a.ns != ns}
            self.routes = {k: r for k, r in self.routes.items() if r.ns != ns}
            self.sysctls = {k: v for k, v in self.sysctls.items() if k[0] != ns}
            self.neighbours = {k: m for k, m in self.neighbours.items() if k[0].ns != ns}
        for n in steps.create_namespaces:
            assert n.name not in self.namespaces, f"{n.name} exists"
            self.namespaces.add(n.name)
        for s in steps.sysctls:
            self.sysctls[(s.ns, s.key)] = s.value
        self.phase(steps.link_batches())
        self.phase(steps.configure_batches())


def rewired(old: Wiring | None, new: Wiring) -> Steps:
    """The steps, checked: run on the model of the kernel they give exactly ``new``."""
    steps = rewire_steps(old, new)
    kernel = Kernel(old or Wiring())
    kernel.apply(steps)
    assert kernel.state() == Kernel.of(new)
    return steps


def steps_for(old: Data, edit: Callable[[Data], None]) -> tuple[Steps, LabPlan]:
    new = plan_of(edited(old, edit))
    return rewired(wiring(plan_of(old)), wiring(new)), new


def only(**counts: int) -> Changes:
    return Changes(**counts)


# --- pure tests -----------------------------------------------------------------------------------


def test_from_nothing_everything_is_created_and_nothing_deleted() -> None:
    plan = plan_of(base())
    w = wiring(plan)
    steps = rewired(None, w)
    assert [n.name for n in steps.create_namespaces] == plan.namespaces()
    assert steps.create_veths == w.veths and steps.add_addresses == w.addresses
    assert steps.set_routes == w.routes
    assert not (steps.delete_namespaces or steps.delete_links or steps.remove_routes)
    # Links come from gateways only (the host ends are moved in); every namespace configures.
    gateways = {plan.gateway_ns(c) for c in ("C1", "C2", "C3")}
    assert set(steps.link_batches()) == gateways
    assert set(steps.configure_batches()) == set(plan.namespaces())
    assert not steps.unlink_batches()


def test_the_same_wiring_needs_no_step() -> None:
    w = wiring(plan_of(base()))
    assert not rewired(w, w).changes()


def test_adding_a_pod_creates_its_namespace_veth_and_one_gateway_route() -> None:
    steps, new = steps_for(base(), add_local_pod)
    gw, ns = new.gateway_ns("C1"), new.pod_ns("new1")
    veth = new.pod_veth(new.topology.pod_by_name["new1"])
    assert [n.name for n in steps.create_namespaces] == [ns]
    assert steps.create_veths == (Veth(End(gw, veth), End(ns, "eth0")),)
    assert [r for r in steps.set_routes if r.ns == gw] == [Route(gw, f"10.244.0.3/32 dev {veth}")]
    assert {r.ns for r in steps.set_routes} == {gw, ns}
    assert {a.ns for a in steps.add_addresses} == {gw, ns}
    assert steps.changes() == only(
        namespaces_added=1, veths_created=1, addresses_added=2, routes_added=3
    )


def test_adding_an_offloaded_pod_wires_it_in_its_physical_cluster() -> None:
    steps, new = steps_for(base(), add_offloaded_pod)
    gw = new.gateway_ns("C2")
    assert steps.create_veths[0].a.ns == gw
    assert {r.ns for r in steps.set_routes} == {gw, new.pod_ns("new2")}
    assert steps.changes() == only(
        namespaces_added=1, veths_created=1, addresses_added=2, routes_added=3
    )


def test_removing_a_pod_unlinks_it_first_and_deletes_its_namespace() -> None:
    old = edited(base(), add_local_pod)
    steps, new = steps_for(old, lambda d: d["pods"].pop())
    veth = new.pod_veth(plan_of(old).topology.pod_by_name["new1"])
    assert steps.unlink_batches() == {new.gateway_ns("C1"): [f"link del {veth}"]}
    assert steps.delete_namespaces == (new.pod_ns("new1"),)
    # Its gateway route and address went with the link: nothing else to do.
    assert not (steps.configure_batches() or steps.link_batches())
    assert steps.changes() == only(namespaces_removed=1, veths_deleted=1)


@pytest.mark.parametrize("edit", [relabel, change_modes, offload_to_c3])
def test_labels_selectors_modes_and_offloading_change_no_wiring(
    edit: Callable[[Data], None],
) -> None:
    steps, _ = steps_for(base(), edit)
    assert not steps.changes()


def test_adding_a_peering_adds_one_tunnel_and_a_route_on_each_side() -> None:
    steps, new = steps_for(base(), peer_c2_c3_last)
    c2, c3 = new.gateway_ns("C2"), new.gateway_ns("C3")
    (veth,) = steps.create_veths
    assert {veth.a.ns, veth.b.ns} == {c2, c3}
    assert {(a.ns, a.ifname) for a in steps.add_addresses} == {(e.ns, e.ifname) for e in veth.ends}
    assert sorted(r.ns for r in steps.set_routes) == sorted([c2, c3])
    assert all(r.dev in (veth.a.ifname, veth.b.ifname) for r in steps.set_routes)
    assert steps.changes() == only(veths_created=1, addresses_added=2, routes_added=2)


def test_removing_a_peering_removes_its_tunnel_and_nothing_else() -> None:
    steps, new = steps_for(edited(base(), peer_c2_c3_last), unpeer_c2_c3)
    (end,) = steps.delete_links
    assert end.ns in (new.gateway_ns("C2"), new.gateway_ns("C3"))
    # Its routes and addresses go with it.
    assert steps.changes() == only(veths_deleted=1)


def test_a_peering_added_first_readdresses_the_tunnels_after_it() -> None:
    old = plan_of(base())
    steps, new = steps_for(base(), peer_c2_c3_first)
    assert [(t.a, t.b) for t in new.tunnels] == [("C2", "C3"), ("C1", "C2"), ("C1", "C3")]
    # The two old tunnels keep their veths, move to the next /31 on both ends, and the routes
    # through them follow their peers' new addresses.
    assert len(steps.create_veths) == 1 and not steps.delete_links
    assert len(steps.remove_addresses) == 4
    moved = {(a.ns, a.ifname) for a in steps.remove_addresses}
    assert moved == {(a.ns, a.ifname) for a in steps.add_addresses} - {
        (e.ns, e.ifname) for e in steps.create_veths[0].ends
    }
    for t_old, t_new in zip(old.tunnels, new.tunnels[1:], strict=True):
        assert (t_old.a, t_old.b) == (t_new.a, t_new.b) and t_old.a_ip != t_new.a_ip
    assert steps.changes().routes_replaced == 4  # C1 -> C2, C1 -> C3, C2 -> C1, C3 -> C1
    assert not steps.delete_namespaces and not steps.create_namespaces


def test_every_next_hop_has_a_permanent_neighbour_entry() -> None:
    """Every address a namespace sends to on a link (a route's next hop, a pod's /32) has a
    permanent entry, none left to ARP and the machine's one neighbour table (the rewiring model,
    ``Kernel``, checks each entry's MAC is the other end's)."""
    plan = plan_of(edited(base(), peer_c2_c3_first))
    w = wiring(plan)
    entries = {(n.ns, n.ifname, n.ip) for n in w.neighbours}
    hops = 0
    for r in w.routes:
        words = r.text.split()
        if "via" in words:
            hop = words[words.index("via") + 1]
        elif r.dst.endswith("/32") and r.dev:
            hop = r.dst.removesuffix("/32")
        else:
            continue
        assert (r.ns, r.dev, hop) in entries, r
        hops += 1
    assert hops > len(plan.topology.pods)
    rewired(None, w)


def test_an_entry_on_an_interface_that_lost_its_last_address_is_set_again() -> None:
    """Linux flushes an interface's neighbour entries with its last IPv4 address (as its
    routes): an entry that stays is set again."""
    ns = (Netns("pw-x-a", Role.GATEWAY), Netns("pw-x-b", Role.GATEWAY))
    veth = Veth(End("pw-x-a", "t"), End("pw-x-b", "t"))
    entry = Neighbour("pw-x-a", "t", "10.0.0.2", B_MAC)
    b_end = Address("pw-x-b", "t", "10.0.0.2/29")
    old = Wiring(ns, (veth,), (Address("pw-x-a", "t", "10.0.0.1/29"), b_end), neighbours=(entry,))
    new = Wiring(ns, (veth,), (Address("pw-x-a", "t", "10.0.0.3/29"), b_end), neighbours=(entry,))
    steps = rewired(old, new)
    assert steps.set_neighbours == (entry,) and not steps.remove_neighbours


def test_moving_a_pod_recreates_only_its_namespace() -> None:
    old = edited(base(), offload_to_c3)
    steps, new = steps_for(old, move_web2_to_c3)
    ns = new.pod_ns("web2")
    assert steps.recreated == (ns,)
    assert steps.delete_namespaces == (ns,)
    veth = new.pod_veth(new.topology.pod_by_name["web2"])
    assert steps.unlink_batches() == {new.gateway_ns("C2"): [f"link del {veth}"]}
    assert steps.create_veths == (Veth(End(new.gateway_ns("C3"), veth), End(ns, "eth0")),)
    assert steps.changes() == only(
        namespaces_recreated=1, veths_created=1, veths_deleted=1, addresses_added=2, routes_added=3
    )


def test_an_address_shift_by_auto_allocation_recreates_the_pods_whose_address_moved() -> None:
    steps, new = steps_for(base(), insert_first_pod)
    # web1 and tool, C1's pods without an explicit address, each move one address up.
    assert set(steps.recreated) == {new.pod_ns("web1"), new.pod_ns("tool")}
    assert [n.name for n in steps.create_namespaces if n.name not in steps.recreated] == [
        new.pod_ns("first")
    ]
    assert {r.ns for r in steps.remove_routes} == set()


def test_adding_a_cluster_wires_its_gateway_hosts_and_tunnel() -> None:
    steps, new = steps_for(base(), add_cluster_c4)
    created = {n.name: n.role for n in steps.create_namespaces}
    assert created == {
        new.gateway_ns("C4"): Role.GATEWAY,
        new.internet_ns("C4"): Role.HOST,
        new.api_ns("C4"): Role.HOST,
        new.pod_ns("p4"): Role.HOST,
    }
    assert {s.ns for s in steps.sysctls} == {new.gateway_ns("C4")}
    c1 = new.gateway_ns("C1")
    assert [r.ns for r in steps.set_routes if r.ns not in created] == [c1]
    assert not steps.recreated and not steps.remove_addresses


def test_a_cluster_inserted_before_others_moves_their_internet_hosts() -> None:
    def insert(d: Data) -> None:
        d["clusters"].insert(1, {"name": "C0", "podCIDR": "10.70.0.0/16"})

    steps, new = steps_for(base(), insert)
    # The Internet host's address comes from the cluster's position in the file.
    assert set(steps.recreated) == {new.internet_ns("C2"), new.internet_ns("C3")}


def test_hosts_are_never_edited_and_gateways_never_recreated() -> None:
    old = base()
    new = edited(edited(edited(old, offload_to_c3), move_web2_to_c3), insert_first_pod)
    steps = rewired(wiring(plan_of(old)), wiring(plan_of(new)))
    gateways = {plan_of(new).gateway_ns(c) for c in ("C1", "C2", "C3")}
    assert not gateways & set(steps.recreated)
    edits = [*steps.remove_routes, *steps.remove_addresses, *steps.delete_links]
    assert {x.ns for x in edits} <= gateways


@budget("wiring-steps")
@given(topologies(), topologies())
def test_any_topology_rewires_into_any_other(old: Data, new: Data) -> None:
    before, after = wiring(plan_of(old)), wiring(plan_of(new))
    steps = rewired(before, after)
    # Nothing about a namespace that is wired the same on both sides is touched.
    same = {
        n.name
        for n in after.namespaces
        if n in before.namespaces and before.own(n.name) == after.own(n.name)
    }
    touched = (
        set(steps.unlink_batches()) | set(steps.link_batches()) | set(steps.configure_batches())
    )
    touched -= {e.ns for v in steps.create_veths for e in v.ends}  # the far end of a new veth
    touched -= {e.ns for e in steps.delete_links}  # or of one that goes
    assert not (same & (touched | set(steps.delete_namespaces)))
    assert not rewired(after, after).changes()


# --- real labs --------------------------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[[LabPlan], dict[str, dict[str, object]]]]:
    """Snapshot of a lab built from scratch for a plan's topology (then removed)."""
    state = LabSettings(state_dir=str(tmp_path / "fresh"), agents=False)
    names: list[str] = []

    def build(plan: LabPlan) -> dict[str, dict[str, object]]:
        name = f"f{secrets.token_hex(3)}"
        names.append(name)
        other = labs.up(name, plan.topology, "", "test", FULL, state)
        try:
            return snapshot(other.prefix)
        finally:
            labs.down(name, state)

    yield build
    for name in names:
        labs.down(name, state)


def inodes(plan: LabPlan) -> dict[str, int]:
    """Each namespace of the lab by its identity: a recreated one gets a new inode."""
    out = {}
    for ns in os.listdir("/run/netns"):
        if ns.startswith(plan.prefix):
            out[ns[len(plan.prefix) :]] = os.stat(os.path.join("/run/netns", ns)).st_ino
    return out


def probed_equal(plan: LabPlan, mode: SecurityMode) -> None:
    observed = observe_lab(plan, mode.value, probe=ProbeSettings(timeout=0.5))
    wrong = expect(plan.topology, mode).table.compare(observed.table)
    assert not wrong, [
        f"{m.source}->{m.destination}: expected {m.expected}, observed {m.observed}: "
        f"{observed.cells[(m.source, m.destination)].detail()}"
        for m in wrong.mismatches()
    ]
    # Every neighbour the probes needed was one of the lab's permanent entries: none was left
    # to ARP and the machine's one neighbour table (lab/wiring.py).
    assert not neighbours_resolved_by_arp(plan.prefix)


# (edit, namespaces added, removed, recreated, probe afterwards)
SEQUENCE: list[tuple[Callable[[Data], None], set[str], set[str], set[str], bool]] = [
    (add_local_pod, {"pod-new1"}, set(), set(), False),
    (add_offloaded_pod, {"pod-new2"}, set(), set(), False),
    (relabel, set(), set(), set(), True),
    (offload_to_c3, set(), set(), set(), False),
    # new2 came after web2 in C2: web2 leaving moves its automatic address down by one.
    (move_web2_to_c3, set(), set(), {"pod-web2", "pod-new2"}, False),
    (stop_offloading_to_c2, set(), set(), {"pod-new2"}, True),
    (peer_c2_c3_first, set(), set(), set(), True),
    (unpeer_c2_c3, set(), set(), set(), False),
    (change_modes, set(), set(), set(), False),
    (add_cluster_c4, {"gw-C4", "inet-C4", "api-C4", "pod-p4"}, set(), set(), True),
    (
        insert_first_pod,
        {"pod-first"},
        set(),
        {"pod-web1", "pod-tool", "pod-new1", "pod-new2"},
        False,
    ),
    (remove_new2_and_web2, set(), {"pod-new2", "pod-web2"}, set(), False),
    (remove_cluster_c4, set(), {"gw-C4", "inet-C4", "api-C4", "pod-p4"}, set(), True),
]


def test_a_sequence_of_edits_rewires_to_what_a_fresh_build_gives(
    lab_up: LabUp, fresh: Callable[[LabPlan], dict[str, dict[str, object]]]
) -> None:
    data = base()
    topology, text = topology_of(data)
    plan = lab_up(topology, text, FULL, agents=False)  # this test applies tables itself
    lab = LabSettings()
    timings = []
    for edit, added, removed, recreated, probe in SEQUENCE:
        data = edited(data, edit)
        new = LabPlan(plan.name, topology_of(data)[0])
        before = inodes(plan)
        started = time.perf_counter()
        changes = labs.rewire_lab(plan, new, lab)
        apply_modes(new, FULL)
        timings.append((edit.__name__, time.perf_counter() - started, changes.summary()))
        after = inodes(new)
        name = edit.__name__
        assert after.keys() - before.keys() == added, name
        assert before.keys() - after.keys() == removed, name
        assert {n for n in before.keys() & after.keys() if before[n] != after[n]} == recreated, name
        assert not differences(snapshot(new.prefix), fresh(new)), name
        assert labs.gateway_drift(new, FULL) == {c.name: [] for c in new.topology.clusters}, name
        if probe:
            probed_equal(new, FULL)
        plan = new
    for name, seconds, summary in timings:
        print(f"{name}: {seconds * 1000:.0f} ms: {summary}")


def test_modes_and_labels_alone_touch_nothing_but_kube_tables(lab_up: LabUp) -> None:
    topology, text = topology_of(base())
    plan = lab_up(topology, text, FULL, agents=False)  # this test applies tables itself
    lab = LabSettings()
    new = LabPlan(plan.name, topology_of(edited(base(), change_modes))[0])
    assert labs.rewire_lab(plan, new, lab) == Changes()
    relabeled = LabPlan(plan.name, topology_of(edited(base(), relabel))[0])
    # web1 leaves service web (C1, reflected to C2) and cachesvc selects nothing (C2).
    assert labs.rewire_lab(new, relabeled, lab) == Changes(kube_tables=2)
    apply_modes(relabeled, SEG)
    probed_equal(relabeled, SEG)


def test_an_established_connection_survives_unrelated_edits(lab_up: LabUp) -> None:
    data = base()
    topology, text = topology_of(data)
    plan = lab_up(topology, text, FULL, agents=False)  # this test applies tables itself
    lab = LabSettings()
    with echo_server(plan.pod_ns("tool")), echo_server(plan.pod_ns("cache")):
        local = connect(plan, "web1", "tool", timeout=1.0)  # inside C1
        remote = connect(plan, "web1", "cache", timeout=1.0)  # C1 -> C2, remapped, tunnel
        with local, remote:
            assert roundtrip(local, b"a") == b"a" and roundtrip(remote, b"a") == b"a"
            kept = {
                n: i for n, i in inodes(plan).items() if n in ("pod-web1", "pod-tool", "pod-cache")
            }

            def more(d: Data) -> None:
                add_local_pod(d)  # a new pod beside web1 and tool, in C1
                d["pods"].append({"name": "other3", "cluster": "C3"})
                pod(d, "local3")["labels"] = {"app": "x"}
                peer_c2_c3_last(d)  # a new tunnel, none of the old ones renumbered

            for edit in (more, relabel, offload_to_c3):
                data = edited(data, edit)
                new = LabPlan(plan.name, topology_of(data)[0])
                changes = labs.rewire_lab(plan, new, lab)
                assert changes, edit.__name__
                apply_modes(new, FULL)
                assert roundtrip(local, edit.__name__.encode()) == edit.__name__.encode()
                assert roundtrip(remote, edit.__name__.encode()) == edit.__name__.encode()
                plan = new
            assert {n: i for n, i in inodes(plan).items() if n in kept} == kept


def test_rewire_refuses_a_lab_that_is_not_what_the_old_plan_says(lab_up: LabUp) -> None:
    topology, text = topology_of(base())
    plan = lab_up(topology, text, FULL, agents=False)  # this test applies tables itself
    wrong_old = LabPlan(plan.name, topology_of(edited(base(), add_local_pod))[0])
    with pytest.raises(LabError, match="not those of its recorded topology"):
        labs.rewire_lab(wrong_old, plan, LabSettings())


@budget("wiring-kernel", derandomize=True)
@given(small_topologies(), small_topologies())
def test_random_topologies_rewire_like_a_fresh_build(old: Data, new: Data) -> None:
    # Hypothesis runs the body many times in one test: no function-scoped fixtures here.
    state = LabSettings(state_dir=tempfile.mkdtemp(prefix="pw-wiring-"), agents=False)
    names = [f"r{secrets.token_hex(3)}", f"f{secrets.token_hex(3)}"]
    try:
        plan = labs.up(names[0], topology_of(old)[0], "", "test", FULL, state)
        target = LabPlan(names[0], topology_of(new)[0])
        print(labs.rewire_lab(plan, target, LabSettings()).summary())
        other = labs.up(names[1], target.topology, "", "test", FULL, state)
        assert not differences(snapshot(target.prefix), snapshot(other.prefix))
    finally:
        for name in names:
            labs.down(name, state)
        shutil.rmtree(state.state_dir, ignore_errors=True)
