"""Connections traced through the gateways' compiled rulesets: a truth table from packets alone.

A pod's packet crosses its gateway's hooks (prerouting, routing, forward, postrouting), the tunnel
the route picked, and the receiving gateway's hooks; a target is reached only if the packet comes
out addressed to it in its cluster, and its reply (conntrack state ``established``, NAT undone,
each gateway's connection mark as the first packet left it there) walks back through the same
hooks to the source. Routing is by address: a gateway delivers its
own pod CIDR locally and sends ``remapped(K, R)`` into R's tunnel. Internet egress is routing (it
leaves through the pod's own cluster) and services are kube-proxy's job: a service cell traces each
backend. The tracer is a ``Runner``: the table it yields must equal ``policy.expect()``, which
shows the compiler and the semantics agree without a kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.errors import UnknownName
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Topology
from peerwall.nft.interpret import Packet, check_ruleset, run_hook
from peerwall.nft.objects import Ruleset
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict
from peerwall.verify.cells import CellSpec, Target, cell_spec, cell_specs
from peerwall.verify.observe import CellObservation, Reach, TargetResult, cell_verdict, observe

__all__ = ["POD_IFNAME", "HookPass", "PathTrace", "TraceResult", "Tracer", "trace", "traced_table"]

POD_IFNAME = "pod-veth"
"""The gateway side of a local pod's link: any name that is not a tunnel (``pwt-…``)."""


@dataclass(frozen=True)
class HookPass:
    """A packet's pass through one netfilter hook of one gateway."""

    gateway: str
    hook: str
    before: Packet
    verdict: str
    after: Packet
    rules: tuple[str, ...]

    def describe(self) -> str:
        p, q = self.before, self.after
        nat = ""
        if (p.saddr, p.daddr) != (q.saddr, q.daddr):
            nat = f" -> {q.saddr} > {q.daddr}"
        ifs = f"in {p.iif or '-'} out {p.oif or '-'}"
        if p.ct_state != "new":
            ifs += f", ct {p.ct_state}"
        rules = "; ".join(self.rules) if self.rules else "no rule matched"
        return f"{self.gateway} {self.hook} [{ifs}] {p.saddr} > {p.daddr}{nat}: {self.verdict} ({rules})"


@dataclass(frozen=True)
class PathTrace:
    """A new connection from a source pod towards one target: its first packet, and the reply."""

    target: str
    delivered: bool
    note: str
    passes: tuple[HookPass, ...] = ()


@dataclass(frozen=True)
class TraceResult:
    source: str
    destination: str
    verdict: Verdict
    reason: str
    paths: tuple[PathTrace, ...] = ()

    def explain(self) -> str:
        lines = [f"{self.source} -> {self.destination}: {self.verdict.value} ({self.reason})"]
        for path in self.paths:
            lines.append(f"  to {path.target}: {path.note}")
            lines += [f"    {s.describe()}" for s in path.passes]
        return "\n".join(lines)


class Tracer:
    """A ``Runner`` over compiled rulesets (built from the topology unless given)."""

    def __init__(
        self,
        topology: Topology,
        default_mode: SecurityMode,
        rulesets: Mapping[str, Ruleset] | None = None,
    ) -> None:
        self.topology = topology
        self.mode = default_mode
        self.addresses = topology.addresses
        self.rulesets: dict[str, Ruleset] = dict(rulesets or {})
        self.checked: set[str] = set()
        self.paths: dict[tuple[str, str, str, int], PathTrace] = {}

    def ruleset(self, cluster: str) -> Ruleset:
        if cluster not in self.checked:
            if cluster not in self.rulesets:
                self.rulesets[cluster] = build(gateway_state(self.topology, cluster, self.mode))
            check_ruleset(self.rulesets[cluster])
            self.checked.add(cluster)
        return self.rulesets[cluster]

    def route(self, gateway: str, daddr: IPv4Address) -> str | None:
        """Where ``gateway`` sends ``daddr``: itself (a local pod), a peer's tunnel, or nowhere."""
        if daddr in self.topology.cluster_by_name[gateway].pod_cidr:
            return gateway
        for peer in self.topology.peers[gateway]:
            if daddr in self.addresses.remapped(gateway, peer):
                return peer
        return None

    def walk(self, source: Pod, target: Target) -> PathTrace:
        """The first packet of ``source``'s connection to ``target``, and its reply."""
        assert target.address is not None
        key = (source.name, target.cluster, str(target.address), target.port)
        if key not in self.paths:
            self.paths[key] = self._walk(source, target)
        return self.paths[key]

    def _real_address(self, target: Target) -> IPv4Address:
        t = self.topology
        if target.kind == "api":
            return self.addresses.api_ip(target.cluster)
        return t.pod_by_name[target.identity].ip

    def _walk(self, source: Pod, target: Target) -> PathTrace:
        assert target.address is not None
        here = source.physical
        want = self._real_address(target)
        packet = Packet(POD_IFNAME, None, source.ip, target.address, "tcp", target.port)
        passes: list[HookPass] = []
        hops: list[tuple[str, Packet, Packet]] = []  # (gateway, as it came in, as it went out)

        def hook(gateway: str, name: str, p: Packet) -> tuple[str, Packet]:
            verdict, after, rules = run_hook(self.ruleset(gateway), name, p)
            passes.append(HookPass(gateway, name, p, verdict, after, tuple(rules)))
            return verdict, after

        def failed(note: str) -> PathTrace:
            return PathTrace(target.identity, False, note, tuple(passes))

        for _ in range(2):  # the source's gateway, then at most one peer: Liqo has no transit
            came_in = packet
            verdict, packet = hook(here, "prerouting", packet)
            if verdict == "drop":
                return failed(f"dropped by {here}'s gateway at prerouting")
            nxt = self.route(here, packet.daddr)
            if nxt is None:
                return failed(f"{here} has no route to {packet.daddr}")
            packet = replace(packet, oif=POD_IFNAME if nxt == here else names.tunnel_ifname(nxt))
            for name in ("forward", "postrouting"):
                verdict, packet = hook(here, name, packet)
                if verdict == "drop":
                    return failed(f"dropped by {here}'s gateway at {name}")
            hops.append((here, came_in, packet))
            if nxt == here:
                if here != target.cluster or packet.daddr != want:
                    return failed(
                        f"misdelivered: {packet.daddr} in {here}, expected {want} in {target.cluster}"
                    )
                trouble = self._reply(hops, hook)
                if trouble is not None:
                    return failed(f"delivered to {want} in {here}, but {trouble}")
                return PathTrace(
                    target.identity,
                    True,
                    f"delivered to {want} in {here}, reply returned",
                    tuple(passes),
                )
            # Across the tunnel: on the far side it is the interface named after the sender.
            # The far side's conntrack knows nothing of this gateway's mark.
            packet = replace(packet, iif=names.tunnel_ifname(here), oif=None, ct_mark=0)
            here = nxt
        return failed(f"{here} would forward it further (no transit)")

    def _reply(
        self,
        hops: list[tuple[str, Packet, Packet]],
        hook: Callable[[str, str, Packet], tuple[str, Packet]],
    ) -> str | None:
        """Walk the reply back through the same gateways; None when it reaches the source.

        Conntrack undoes the NAT of the original direction: the SNAT (a destination change for the
        reply) before routing, the DNAT (a source change) after the forward hook.
        """
        last = hops[-1][2]
        packet = Packet(
            last.oif,
            None,
            last.daddr,
            last.saddr,
            "tcp",
            None,
            ct_state="established",
            ct_direction="reply",
            tcp_flags="ack",
        )
        for gateway, came_in, went_out in reversed(hops):
            # Each gateway's connection carries the mark its first packet got there.
            packet = replace(packet, iif=went_out.oif, oif=None, ct_mark=went_out.ct_mark)
            verdict, packet = hook(gateway, "prerouting", packet)
            if verdict == "drop":
                return f"the reply was dropped by {gateway}'s gateway at prerouting"
            packet = replace(packet, daddr=came_in.saddr)
            back = self.route(gateway, packet.daddr)
            oif = (
                None
                if back is None
                else POD_IFNAME
                if back == gateway
                else names.tunnel_ifname(back)
            )
            if oif != came_in.iif:
                return f"{gateway} routes the reply to {packet.daddr} out {oif}, not {came_in.iif}"
            verdict, packet = hook(gateway, "forward", replace(packet, oif=oif))
            if verdict == "drop":
                return f"the reply was dropped by {gateway}'s gateway at forward"
            packet = replace(packet, saddr=came_in.daddr)
            verdict, packet = hook(gateway, "postrouting", packet)
            if verdict == "drop":
                return f"the reply was dropped by {gateway}'s gateway at postrouting"
        return None

    def target(self, source: Pod, target: Target) -> tuple[TargetResult, PathTrace | None]:
        if target.kind == "internet":
            own = source.physical == target.cluster
            why = (
                f"egress leaves through {source.physical}'s uplink"
                if own
                else f"egress leaves through {source.physical}, not {target.cluster}"
            )
            return TargetResult(target, Reach.REACHED if own else Reach.BLOCKED, why), None
        if target.address is None:
            note = f"{source.physical} has no address for {target.identity}"
            return TargetResult(target, Reach.BLOCKED, note), None
        path = self.walk(source, target)
        reach = Reach.REACHED if path.delivered else Reach.BLOCKED
        return TargetResult(target, reach, path.note), path

    def run(self, cells: Sequence[CellSpec]) -> list[CellObservation]:
        out = []
        for cell in cells:
            source = self.topology.pod_by_name[cell.source]
            results = tuple(self.target(source, t)[0] for t in cell.targets)
            out.append(CellObservation(cell, results))
        return out

    def trace(self, cell: CellSpec) -> TraceResult:
        source = self.topology.pod_by_name[cell.source]
        pairs = [self.target(source, t) for t in cell.targets]
        results = [r for r, _ in pairs]
        paths = tuple(
            p if p is not None else PathTrace(r.target.identity, r.reach is Reach.REACHED, r.detail)
            for r, p in pairs
            if r.target is not None
        )
        verdict = cell_verdict(cell, results)
        if not cell.targets:
            reason = cell.note
        elif len(cell.targets) > 1 or cell.targets[0].service:
            reached = sum(r.reach is Reach.REACHED for r in results)
            reason = f"{reached} of {len(results)} backends reached"
        else:
            reason = results[0].detail
        return TraceResult(cell.source, cell.destination, verdict, reason, paths)


def trace(
    topology: Topology,
    default_mode: SecurityMode,
    source_pod: str,
    destination: str,
    *,
    rulesets: Mapping[str, Ruleset] | None = None,
) -> TraceResult:
    """One cell, decided by packets through the gateways' rulesets (compiled unless given)."""
    if source_pod not in topology.pod_by_name:
        raise UnknownName(f"unknown source pod {source_pod!r} (sources are pods)")
    if destination not in topology.destinations:
        raise UnknownName(f"unknown destination {destination!r}")
    cell = cell_spec(topology, topology.pod_by_name[source_pod], destination)
    return Tracer(topology, default_mode, rulesets).trace(cell)


def traced_table(
    topology: Topology,
    default_mode: SecurityMode,
    *,
    rulesets: Mapping[str, Ruleset] | None = None,
) -> TruthTable:
    """The whole table, decided by packets: same shape as ``expect(...).table``.

    ``rulesets`` maps a cluster to the ruleset its gateway holds (a read-back live table, or a
    mutated one in tests); clusters not given get their compiled ruleset.
    """
    tracer = Tracer(topology, default_mode, rulesets)
    return observe(
        tracer, default_mode.value, topology.sources, topology.destinations, cell_specs(topology)
    ).table
