"""Why a cell has its verdict: the rule, the receiving cluster, the peering and the mode."""

from __future__ import annotations

from dataclasses import dataclass, replace

from peerwall.errors import UnknownName
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Topology
from peerwall.policy.modes import MODES, EffectiveMode, ModeOrigin, effective_mode
from peerwall.policy.verdict import Verdict


@dataclass(frozen=True)
class Explanation:
    source: str
    destination: str
    verdict: Verdict
    rule: str
    """Short identifier of the deciding rule, e.g. ``segregation-offloaded-here``."""
    reason: str
    receiver: str | None = None
    peering: tuple[str, str] | None = None
    """(sender, receiver) of the connection that crosses the peering."""
    mode: EffectiveMode | None = None
    backends: tuple[Explanation, ...] = ()
    declared: str = ""
    """The topology's peering(s) that made the connection, e.g. ``C1 -> C2 (consumer -> provider)``."""

    def render(self, indent: str = "") -> str:
        lines = [f"{indent}{self.source} -> {self.destination}: {self.verdict.value}"]
        lines.append(f"{indent}  rule:     {self.rule}: {self.reason}")
        if self.receiver:
            lines.append(
                f"{indent}  enforced: by {self.receiver}, on traffic arriving from its peer"
            )
        if self.peering:
            sender, receiver = self.peering
            over = f" over {self.declared}" if self.declared else ""
            lines.append(f"{indent}  peering:  {sender} -> {receiver}{over}")
        if self.mode and self.receiver and self.peering:
            sender = self.peering[0]
            lines.append(f"{indent}  mode:     {self.mode.describe(self.receiver, sender)}")
        for b in self.backends:
            lines.append(b.render(indent + "    "))
        return "\n".join(lines)


def declared(topology: Topology, a: str, b: str) -> str:
    """The peerings between ``a`` and ``b`` as the topology declares them."""
    return " and ".join(
        f"{p.consumer} -> {p.provider} (consumer -> provider)"
        for p in topology.peerings
        if {p.consumer, p.provider} == {a, b}
    )


def _mode(
    topology: Topology,
    receiver: str,
    sender: str,
    default: SecurityMode,
    force: SecurityMode | None,
) -> EffectiveMode:
    if force is not None:
        return EffectiveMode(force, ModeOrigin.FORCED)
    return effective_mode(topology, receiver, sender, default)


def _explain_pod(
    topology: Topology, src: Pod, dst: Pod, default: SecurityMode, force: SecurityMode | None = None
) -> Explanation:
    a, r = src.physical, dst.physical
    e = Explanation
    if a == r:
        return e(
            src.name,
            dst.name,
            Verdict.YES,
            "intra-cluster",
            f"both run in {a}; traffic inside a physical cluster is never filtered",
        )
    if not topology.peered(a, r):
        return e(
            src.name,
            dst.name,
            Verdict.NO,
            "no-peering",
            f"{src.name} runs in {a}, {dst.name} in {r}, and {a} and {r} are not peered: no route",
        )
    mode = _mode(topology, r, a, default, force)
    link = (a, r)
    if mode.mode is SecurityMode.FULL_POD_TO_POD:
        return e(
            src.name,
            dst.name,
            Verdict.YES,
            "full-pod-to-pod",
            f"{r} admits every pod of {a}",
            r,
            link,
            mode,
        )
    if dst.home == a:
        return e(
            src.name,
            dst.name,
            Verdict.YES,
            "segregation-offloaded-here",
            f"{dst.name} was offloaded by {a} into {r}",
            r,
            link,
            mode,
        )
    for s in topology.services:
        if s.home == r and a in s.reflected_to and dst.name in s.backends:
            return e(
                src.name,
                dst.name,
                Verdict.YES,
                "segregation-reflected-backend",
                f"{dst.name} backs service {s.name} of {r}, whose namespace "
                f"{s.namespace!r} is offloaded to {a}",
                r,
                link,
                mode,
            )
    return e(
        src.name,
        dst.name,
        Verdict.NO,
        "segregation-denied",
        f"{dst.name} was not offloaded by {a} and backs no service of {r} reflected to {a}",
        r,
        link,
        mode,
    )


def _explain_cell(
    topology: Topology,
    source: str,
    destination: str,
    default: SecurityMode,
    force: SecurityMode | None = None,
) -> Explanation:
    src = topology.pod_by_name.get(source)
    if src is None:
        raise UnknownName(f"unknown source pod {source!r} (sources are pods)")
    a = src.physical
    e = Explanation
    dst_pod = topology.pod_by_name.get(destination)
    if dst_pod is not None:
        return _explain_pod(topology, src, dst_pod, default, force)
    svc = topology.service_by_name.get(destination)
    if svc is not None:
        if a not in svc.present_in:
            where = ", ".join(svc.present_in)
            return e(
                source,
                destination,
                Verdict.NO,
                "service-absent",
                f"{svc.name} exists only in {where}, not in {a} where {source} runs",
            )
        parts = tuple(
            explain_pod(topology, src, topology.pod_by_name[b], default, force)
            for b in svc.backends
        )
        ok = sum(p.verdict is Verdict.YES for p in parts)
        if not parts:
            return e(
                source, destination, Verdict.NO, "service-no-backends", f"{svc.name} selects no pod"
            )
        verdict = Verdict.YES if ok == len(parts) else Verdict.PARTIAL if ok else Verdict.NO
        return e(
            source,
            destination,
            verdict,
            "service-backends",
            f"{svc.name} exists in {a}; {ok} of {len(parts)} backends reachable",
            backends=parts,
        )
    for c in topology.clusters:
        if destination == c.internet:
            if a == c.name:
                return e(
                    source,
                    destination,
                    Verdict.YES,
                    "internet-own",
                    f"egress leaves through {a}, where {source} runs",
                )
            return e(
                source,
                destination,
                Verdict.NO,
                "internet-other",
                f"{source} runs in {a}; only {c.name}'s pods leave through {c.name}",
            )
        if destination == c.api_server:
            k = c.name
            if a == k:
                return e(
                    source,
                    destination,
                    Verdict.YES,
                    "api-local",
                    f"{source} runs in {k}, next to its API server",
                )
            if not topology.peered(a, k):
                return e(
                    source,
                    destination,
                    Verdict.NO,
                    "no-peering",
                    f"{a} and {k} are not peered: no route",
                )
            mode = _mode(topology, k, a, default, force)
            if MODES[mode.mode].admits_api(src.home, k):
                rule = (
                    "api-full-pod-to-pod"
                    if mode.mode is SecurityMode.FULL_POD_TO_POD
                    else "api-home-cluster"
                )
                why = (
                    f"{k} admits every pod of {a}"
                    if rule == "api-full-pod-to-pod"
                    else f"{source} was offloaded by {k}: it may reach its home API server"
                )
                return e(source, destination, Verdict.YES, rule, why, k, (a, k), mode)
            return e(
                source,
                destination,
                Verdict.NO,
                "api-segregated",
                f"{source}'s home is {src.home}, not {k}",
                k,
                (a, k),
                mode,
            )
    raise UnknownName(f"unknown destination {destination!r}")


def _with_declared(topology: Topology, e: Explanation) -> Explanation:
    if e.peering is None or e.declared:
        return e
    return replace(e, declared=declared(topology, *e.peering))


def explain_pod(
    topology: Topology, src: Pod, dst: Pod, default: SecurityMode, force: SecurityMode | None = None
) -> Explanation:
    """Why pod ``src`` can or cannot open a connection to pod ``dst``."""
    return _with_declared(topology, _explain_pod(topology, src, dst, default, force))


def explain_cell(
    topology: Topology,
    source: str,
    destination: str,
    default: SecurityMode,
    force: SecurityMode | None = None,
) -> Explanation:
    """Why the cell (``source``, ``destination``) of the truth table has its verdict."""
    return _with_declared(topology, _explain_cell(topology, source, destination, default, force))
