"""A lab's wiring as data, and the steps that turn one wiring into another. Pure: no I/O.

``wiring(plan)`` is every namespace, veth pair, address, route, neighbour entry and gateway sysctl
a lab built for ``plan`` has. ``rewire_steps(old, new)`` is what turns a running lab wired as ``old`` into one
wired as ``new`` while leaving everything else alone, so that unchanged pods, tunnels and the
connections through them carry on (``None`` for ``old``: build from nothing, which is ``lab up``).

Two kinds of namespace are handled differently:

* a gateway holds state worth keeping (conntrack entries, the peerwall and kube tables, every
  connection it forwards), so it is always edited in place;
* a host (pod, API server, Internet host) holds one veth end, an address or two and two routes;
  when any of that changes (a pod that moved cluster or got another address) it is deleted and
  created again: simpler than editing it, and a pod that moved would lose its connections anyway.

The steps come in phases; every phase is a barrier, and inside one each namespace gets one
``ip -batch`` (see ``rewire``):

1. unlink, in surviving namespaces: delete the routes that go away, then the veths that go away
   or whose other end is in a namespace about to be deleted. A veth deleted by link is gone when
   ``ip`` returns; one that only goes with its namespace lingers until the kernel's asynchronous
   namespace cleanup, and its surviving end would then clash with the new one of the same name;
2. delete namespaces; 3. create namespaces, and write the gateway sysctls;
4. link: create veths from their ``a`` end's namespace, the ``b`` end moved straight into its own
   (nothing is ever created in the root namespace);
5. configure, in every namespace with something to do: ``lo`` up in new ones, neighbour entries
   that go away off, old addresses off, new addresses on, new veth ends up, neighbour entries
   set, then routes set (``route replace``) in the order the new wiring lists them, so a route
   comes after the on-link route of its gateway.

Deleting an interface's last IPv4 address makes the kernel flush every route and every neighbour
entry on it (seen on Linux 6.18), and addresses are removed before others are added so that two
interfaces of a gateway never hold one address while a tunnel is renumbered. So every route and
neighbour entry on an interface that lost an address is set again: ``replace`` is idempotent, so
this holds whatever the kernel flushed.

Neighbour entries: the kernel's neighbour (ARP) table is one for the whole machine, every network
namespace's entries counted against one ``gc_thresh3`` (1,024 by default); past it a new entry
cannot be made and the packet that needed it is lost. Two labs of 200 pods overflow it, and a
prober then sees silence where the path is open. So each veth end has a fixed MAC (``A_MAC`` on
the end the veth is created from, ``B_MAC`` on the other: each pair is an L2 segment of its own,
as Calico gives every host-side veth the same MAC) and every address a namespace reaches on a
link gets a permanent entry, which the kernel does not count against the limit (Linux 4.19+).
ARP still answers for anything else.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from enum import Enum
from functools import cached_property

from peerwall.lab.plan import GATEWAY_LINK_IP, NOWHERE, UPLINK_GW, UPLINK_HOST, LabPlan

GATEWAY_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # The tunnel's nftables chain does anti-spoofing by interface; strict reverse-path filtering
    # would also drop legitimate remapped sources.
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # A probe dropped on the far side leaves a SYN_SENT entry here; at the kernel's 120 s, a few
    # full probes of a big lab fill the machine's one conntrack table and new SYNs are dropped.
    "net.netfilter.nf_conntrack_tcp_timeout_syn_sent": "10",
}

ROUTE_TYPES = frozenset({"unreachable", "blackhole", "prohibit", "throw"})
A_MAC = "02:70:77:00:00:0a"
"""The MAC of every veth end a veth is created from (``Veth.a``): locally administered."""
B_MAC = "02:70:77:00:00:0b"
"""The MAC of every other veth end (``Veth.b``)."""


class Role(str, Enum):
    GATEWAY = "gateway"
    HOST = "host"


@dataclass(frozen=True)
class Netns:
    name: str
    role: Role


@dataclass(frozen=True)
class End:
    """One end of a veth pair: an interface in a namespace."""

    ns: str
    ifname: str


@dataclass(frozen=True)
class Veth:
    a: End
    """Created from inside ``a.ns``; its peer ``b`` is moved straight into ``b.ns``."""
    b: End

    @property
    def ends(self) -> tuple[End, End]:
        return (self.a, self.b)


@dataclass(frozen=True)
class Address:
    ns: str
    ifname: str
    cidr: str

    @property
    def end(self) -> End:
        return End(self.ns, self.ifname)


@dataclass(frozen=True)
class Route:
    ns: str
    text: str
    """The route as ``ip route add`` takes it, e.g. ``default via 169.254.1.1 dev eth0``."""

    @cached_property
    def dst(self) -> str:
        words = self.text.split()
        return words[1] if words[0] in ROUTE_TYPES else words[0]

    @cached_property
    def key(self) -> tuple[str, str]:
        """What ``ip route replace`` replaces: one route per destination (all are in table
        main, with no TOS or metric)."""
        return (self.ns, self.dst)

    @cached_property
    def dev(self) -> str | None:
        words = self.text.split()
        return words[words.index("dev") + 1] if "dev" in words else None


@dataclass(frozen=True)
class Neighbour:
    """A permanent neighbour entry: ``ip`` is at ``mac`` on ``ifname`` in ``ns``."""

    ns: str
    ifname: str
    ip: str
    mac: str

    @property
    def end(self) -> End:
        return End(self.ns, self.ifname)


@dataclass(frozen=True)
class Sysctl:
    ns: str
    key: str
    value: str


@dataclass(frozen=True)
class Wiring:
    """Everything ``ip`` creates for a lab. Tuples keep the build order, which the steps follow
    inside each namespace (on-link routes before the routes through them)."""

    namespaces: tuple[Netns, ...] = ()
    veths: tuple[Veth, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()

    def __post_init__(self) -> None:
        # A planner bug caught here is a clear message instead of a half-applied ip batch.
        names = {n.name for n in self.namespaces}
        if len(names) != len(self.namespaces):
            raise ValueError("a namespace is listed twice")
        ends = [e for v in self.veths for e in v.ends]
        if len(set(ends)) != len(ends):
            raise ValueError("an interface is the end of two veths")
        if any(e.ns not in names for e in ends):
            raise ValueError("a veth ends in a namespace that is not listed")
        have = set(ends)
        for a in self.addresses:
            if a.end not in have:
                raise ValueError(f"{a.cidr} is on {a.ifname} in {a.ns}, which no veth has")
        keys = set()
        for r in self.routes:
            if r.ns not in names or (r.dev is not None and End(r.ns, r.dev) not in have):
                raise ValueError(f"route {r.text!r} in {r.ns}: no such namespace or interface")
            if r.key in keys:
                raise ValueError(f"two routes to {r.dst} in {r.ns}")
            keys.add(r.key)
        seen = set()
        for n in self.neighbours:
            if n.end not in have:
                raise ValueError(f"neighbour {n.ip} on {n.ifname} in {n.ns}, which no veth has")
            if (n.end, n.ip) in seen:
                raise ValueError(f"two neighbour entries for {n.ip} on {n.ifname} in {n.ns}")
            seen.add((n.end, n.ip))

    def own(self, ns: str) -> tuple[frozenset[object], ...]:
        """What of the wiring is about namespace ``ns`` (its veths whole, with their other ends)."""
        return self._by_namespace.get(ns, _NOTHING)

    @cached_property
    def _by_namespace(self) -> dict[str, tuple[frozenset[object], ...]]:
        # One pass for all namespaces: rewire_steps asks for every host of a large lab.
        groups: dict[str, tuple[list[object], ...]] = defaultdict(lambda: ([], [], [], [], []))
        for v in self.veths:
            for ns in {v.a.ns, v.b.ns}:
                groups[ns][0].append(v)
        for a in self.addresses:
            groups[a.ns][1].append(a)
        for r in self.routes:
            groups[r.ns][2].append(r)
        for s in self.sysctls:
            groups[s.ns][3].append(s)
        for n in self.neighbours:
            groups[n.ns][4].append(n)
        return {ns: tuple(frozenset(g) for g in lists) for ns, lists in groups.items()}


_NOTHING: tuple[frozenset[object], ...] = (frozenset(),) * 5


def wiring(plan: LabPlan) -> Wiring:
    """The wiring of a lab for ``plan``: per cluster a gateway, every pod, API server and the
    Internet host a namespace wired to it by a veth, and a veth tunnel per peered pair."""
    t = plan.topology
    gateways = {plan.gateway_ns(c.name) for c in t.clusters}
    namespaces = tuple(
        Netns(n, Role.GATEWAY if n in gateways else Role.HOST) for n in plan.namespaces()
    )
    veths: list[Veth] = []
    addresses: list[Address] = []
    routes: list[Route] = []
    neighbours: list[Neighbour] = []
    for c in t.clusters:
        gw = plan.gateway_ns(c.name)
        hosts = [
            (plan.pod_veth(p), plan.pod_ns(p.name), p.ip) for p in t.pods if p.physical == c.name
        ]
        if c.api_server:
            hosts.append(("api", plan.api_ns(c.name), t.addresses.api_ip(c.name)))
        for veth, ns, ip in hosts:
            # Calico style: the host holds its /32 and a default route to 169.254.1.1, which
            # every gateway-side veth carries.
            veths.append(Veth(End(gw, veth), End(ns, "eth0")))
            addresses += [
                Address(gw, veth, f"{GATEWAY_LINK_IP}/32"),
                Address(ns, "eth0", f"{ip}/32"),
            ]
            routes += [
                Route(gw, f"{ip}/32 dev {veth}"),
                Route(ns, f"{GATEWAY_LINK_IP} dev eth0 scope link"),
                Route(ns, f"default via {GATEWAY_LINK_IP} dev eth0"),
            ]
            neighbours += [
                Neighbour(gw, veth, str(ip), B_MAC),
                Neighbour(ns, "eth0", str(GATEWAY_LINK_IP), A_MAC),
            ]
        inet = plan.internet_ns(c.name)
        veths.append(Veth(End(gw, "uplink"), End(inet, "eth0")))
        addresses += [
            Address(gw, "uplink", str(UPLINK_GW)),
            Address(inet, "eth0", str(UPLINK_HOST)),
            Address(inet, "eth0", f"{plan.internet_ip(c.name)}/32"),
        ]
        neighbours += [
            Neighbour(gw, "uplink", str(UPLINK_HOST.ip), B_MAC),
            Neighbour(inet, "eth0", str(UPLINK_GW.ip), A_MAC),
        ]
    for tun in plan.tunnels:
        a_if, a_ip, _ = plan.tunnel(tun.a, tun.b)
        b_if, b_ip, _ = plan.tunnel(tun.b, tun.a)
        a_ns, b_ns = plan.gateway_ns(tun.a), plan.gateway_ns(tun.b)
        veths.append(Veth(End(a_ns, a_if), End(b_ns, b_if)))
        addresses += [Address(a_ns, a_if, str(a_ip)), Address(b_ns, b_if, str(b_ip))]
        neighbours += [
            Neighbour(a_ns, a_if, str(b_ip.ip), B_MAC),
            Neighbour(b_ns, b_if, str(a_ip.ip), A_MAC),
        ]
    for c in t.clusters:
        gw = plan.gateway_ns(c.name)
        for peer in t.peers[c.name]:
            ifname, _, peer_ip = plan.tunnel(c.name, peer)
            routes.append(
                Route(gw, f"{t.addresses.remapped(c.name, peer)} via {peer_ip} dev {ifname}")
            )
            external = t.cluster_by_name[peer].external_cidr
            if external is not None:
                # Replies to the peer's masquerade source (Liqo routes its external CIDR so too).
                routes.append(Route(gw, f"{external} via {peer_ip} dev {ifname}"))
        routes += [
            Route(gw, f"unreachable {NOWHERE}"),
            Route(gw, f"default via {UPLINK_HOST.ip} dev uplink"),
        ]
    sysctls = tuple(
        Sysctl(plan.gateway_ns(c.name), k, v)
        for c in t.clusters
        for k, v in GATEWAY_SYSCTLS.items()
    )
    return Wiring(
        namespaces, tuple(veths), tuple(addresses), tuple(routes), sysctls, tuple(neighbours)
    )


@dataclass(frozen=True)
class Changes:
    """How much a rewire changed, per kind, for logs. Veths count every pair that went away,
    by ``link del`` or with a namespace; addresses and routes count the ``ip`` commands run."""

    namespaces_added: int = 0
    namespaces_removed: int = 0
    namespaces_recreated: int = 0
    veths_created: int = 0
    veths_deleted: int = 0
    addresses_added: int = 0
    addresses_removed: int = 0
    routes_added: int = 0
    routes_replaced: int = 0
    routes_removed: int = 0
    sysctls: int = 0
    kube_tables: int = 0
    """Gateways whose ``pw-kube`` and ``pw-cni`` tables were (re)loaded."""

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def summary(self) -> str:
        parts = []
        for f in fields(self):
            n = getattr(self, f.name)
            if n:
                parts.append(f"{f.name.replace('_', ' ')} {n}")
        return ", ".join(parts) or "no change"


@dataclass(frozen=True)
class Steps:
    """What to do, phase by phase (module docstring). Every tuple is in the order to run."""

    remove_routes: tuple[Route, ...] = ()
    delete_links: tuple[End, ...] = ()
    """One end of each veth to delete, in a namespace that survives (the pair goes at once)."""
    delete_namespaces: tuple[str, ...] = ()
    create_namespaces: tuple[Netns, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()
    create_veths: tuple[Veth, ...] = ()
    remove_addresses: tuple[Address, ...] = ()
    add_addresses: tuple[Address, ...] = ()
    set_routes: tuple[Route, ...] = ()
    """``route replace``, in the new wiring's order: the added and replaced routes below."""
    added_routes: frozenset[Route] = frozenset()
    replaced_routes: frozenset[Route] = frozenset()
    remove_neighbours: tuple[Neighbour, ...] = ()
    set_neighbours: tuple[Neighbour, ...] = ()
    """``neigh replace``: the new ones, and every one on an interface that lost an address."""
    recreated: tuple[str, ...] = ()
    """Namespaces both deleted and created: hosts whose own wiring changed."""
    veths_gone: int = 0
    """Old veths that go away, by ``link del`` or with their namespaces."""

    def unlink_batches(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for r in self.remove_routes:
            out[r.ns].append(f"route del {r.text}")
        for e in self.delete_links:
            out[e.ns].append(f"link del {e.ifname}")
        return dict(out)

    def link_batches(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for v in self.create_veths:
            out[v.a.ns].append(
                f"link add name {v.a.ifname} address {A_MAC} type veth"
                f" peer name {v.b.ifname} address {B_MAC} netns {v.b.ns}"
            )
        return dict(out)

    def configure_batches(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for n in self.create_namespaces:
            out[n.name].append("link set lo up")
        # Before any address goes: the kernel flushes an interface's entries with its last one.
        for nb in self.remove_neighbours:
            out[nb.ns].append(f"neigh del {nb.ip} dev {nb.ifname}")
        for a in self.remove_addresses:
            out[a.ns].append(f"addr del {a.cidr} dev {a.ifname}")
        for a in self.add_addresses:
            out[a.ns].append(f"addr add {a.cidr} dev {a.ifname}")
        for v in self.create_veths:
            for e in v.ends:
                out[e.ns].append(f"link set {e.ifname} up")
        for nb in self.set_neighbours:
            out[nb.ns].append(
                f"neigh replace {nb.ip} lladdr {nb.mac} dev {nb.ifname} nud permanent"
            )
        for r in self.set_routes:
            out[r.ns].append(f"route replace {r.text}")
        return dict(out)

    def sysctls_by_namespace(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = defaultdict(dict)
        for s in self.sysctls:
            out[s.ns][s.key] = s.value
        return dict(out)

    def changes(self) -> Changes:
        recreated = set(self.recreated)
        return Changes(
            namespaces_added=sum(n.name not in recreated for n in self.create_namespaces),
            namespaces_removed=sum(n not in recreated for n in self.delete_namespaces),
            namespaces_recreated=len(recreated),
            veths_created=len(self.create_veths),
            veths_deleted=self.veths_gone,
            addresses_added=len(self.add_addresses),
            addresses_removed=len(self.remove_addresses),
            routes_added=len(self.added_routes),
            routes_replaced=len(self.replaced_routes),
            routes_removed=len(self.remove_routes),
            sysctls=len(self.sysctls),
        )


EMPTY = Wiring()


def rewire_steps(old: Wiring | None, new: Wiring) -> Steps:
    """The steps that turn a lab wired as ``old`` (``None``: nothing yet) into one wired as
    ``new``, touching nothing that is the same in both."""
    old = old or EMPTY
    old_ns = {n.name: n for n in old.namespaces}
    new_ns = {n.name: n for n in new.namespaces}
    recreated = tuple(
        n.name
        for n in new.namespaces
        if n.name in old_ns
        and (old_ns[n.name] != n or (n.role is Role.HOST and old.own(n.name) != new.own(n.name)))
    )
    gone = set(recreated) | (old_ns.keys() - new_ns.keys())
    delete_namespaces = tuple(n.name for n in old.namespaces if n.name in gone)

    # What goes of the old veths: those not wanted any more, and those with an end in a namespace
    # being deleted. Each is deleted from a surviving end if it has one; with it go the addresses
    # and routes on both ends.
    wanted = set(new.veths)
    dropped = [v for v in old.veths if v not in wanted or v.a.ns in gone or v.b.ns in gone]
    delete_links = tuple(
        next(e for e in v.ends if e.ns not in gone)
        for v in dropped
        if not (v.a.ns in gone and v.b.ns in gone)
    )
    dead = {e for v in dropped for e in v.ends}

    # The old wiring as it stands once phases 1 and 2 are done: the baseline for the rest.
    kept_veths = set(old.veths) - set(dropped)
    kept_addresses = [a for a in old.addresses if a.ns not in gone and a.end not in dead]
    kept_routes = [
        r
        for r in old.routes
        if r.ns not in gone and (r.dev is None or End(r.ns, r.dev) not in dead)
    ]

    create_veths = tuple(v for v in new.veths if v not in kept_veths)
    new_addresses = set(new.addresses)
    remove_addresses = tuple(a for a in kept_addresses if a not in new_addresses)
    kept_address_set = set(kept_addresses)
    add_addresses = tuple(a for a in new.addresses if a not in kept_address_set)

    # Routes through an interface that lost an address may have been flushed: set them again.
    readdressed = {a.end for a in remove_addresses}
    new_keys = {r.key for r in new.routes}
    kept_by_key = {r.key: r for r in kept_routes}
    remove_routes = tuple(r for r in reversed(kept_routes) if r.key not in new_keys)
    added = frozenset(r for r in new.routes if r.key not in kept_by_key)
    replaced = frozenset(
        r
        for r in new.routes
        if r.key in kept_by_key
        and (kept_by_key[r.key] != r or (r.dev is not None and End(r.ns, r.dev) in readdressed))
    )
    set_routes = tuple(r for r in new.routes if r in added or r in replaced)

    # Neighbour entries go with their veth, and with the last address of their interface.
    kept_neighbours = {n for n in old.neighbours if n.ns not in gone and n.end not in dead}
    new_neighbours = set(new.neighbours)
    new_keys_n = {(n.end, n.ip) for n in new.neighbours}
    remove_neighbours = tuple(
        n
        for n in old.neighbours
        if n in kept_neighbours and n not in new_neighbours and (n.end, n.ip) not in new_keys_n
    )
    set_neighbours = tuple(
        n for n in new.neighbours if n not in kept_neighbours or n.end in readdressed
    )

    created = {n for n in new_ns if n not in old_ns or n in gone}
    old_sysctls = set(old.sysctls)
    sysctls = tuple(s for s in new.sysctls if s.ns in created or s not in old_sysctls)

    return Steps(
        remove_routes=remove_routes,
        delete_links=delete_links,
        delete_namespaces=delete_namespaces,
        create_namespaces=tuple(n for n in new.namespaces if n.name in created),
        sysctls=sysctls,
        create_veths=create_veths,
        remove_addresses=remove_addresses,
        add_addresses=add_addresses,
        set_routes=set_routes,
        added_routes=added,
        replaced_routes=replaced,
        remove_neighbours=remove_neighbours,
        set_neighbours=set_neighbours,
        recreated=recreated,
        veths_gone=len(dropped),
    )
