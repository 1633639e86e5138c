"""Why a cell has its verdict, in words: ``Decision``s of ``policy.decide`` put into prose.

Nothing here decides: every verdict and rule comes from the decision procedure; this module only
adds the names (which service makes a pod a reflected backend, which peerings the topology
declares) and the sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerwall.errors import UnknownName
from peerwall.model.reflection import ReflectionMark
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Service, Topology
from peerwall.policy.decide import Decider, Decision, DecisionRule
from peerwall.policy.modes import EffectiveMode
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


class _Prose:
    def __init__(self, decider: Decider) -> None:
        self.decider = decider
        self.topology = decider.topology

    def explanation(self, src: Pod, destination: str, d: Decision) -> Explanation:
        peering = (d.sender, d.receiver) if d.sender and d.receiver else None
        backends: tuple[Explanation, ...] = ()
        if d.backends:
            svc = self.topology.service_by_name[destination]
            backends = tuple(
                self.explanation(src, b, part)
                for b, part in zip(svc.backends, d.backends, strict=True)
            )
        return Explanation(
            src.name,
            destination,
            d.verdict,
            d.rule.value,
            self.reason(src, destination, d),
            d.receiver,
            peering,
            d.mode,
            backends,
            declared(self.topology, *peering) if peering else "",
        )

    def not_reflected(self, svc: Service, provider: str) -> str:
        """Why ``svc``, whose namespace is offloaded to ``provider``, is not reflected there
        (Liqo's rule: ``model.reflection``)."""
        policy = next(
            p.reflection
            for p in self.topology.peerings
            if (p.consumer, p.provider) == (svc.home, provider)
        )
        mark = (
            "marked liqo.io/skip-reflection"
            if svc.reflection is ReflectionMark.SKIP
            else "not marked liqo.io/allow-reflection"
        )
        return (
            f"{svc.name} is not reflected to {provider}: {svc.home}'s virtual kubelet for "
            f"{provider} reflects under {policy.value} and {svc.name} is {mark}"
        )

    def reason(self, src: Pod, dst: str, d: Decision) -> str:
        t = self.topology
        a, s = src.physical, src.name
        r = d.receiver
        match d.rule:
            case DecisionRule.INTRA_CLUSTER:
                return f"both run in {a}; traffic inside a physical cluster is never filtered"
            case DecisionRule.NO_PEERING:
                if dst in t.pod_by_name:
                    there = t.pod_by_name[dst].physical
                    return f"{s} runs in {a}, {dst} in {there}, and {a} and {there} are not peered: no route"
                return f"{a} and {self.decider.apis[dst]} are not peered: no route"
            case DecisionRule.FULL_POD_TO_POD | DecisionRule.API_FULL_POD_TO_POD:
                return f"{r} admits every pod of {a}"
            case DecisionRule.SEGREGATION_OFFLOADED_HERE:
                return f"{dst} was offloaded by {a} into {r}"
            case DecisionRule.SEGREGATION_REFLECTED_BACKEND:
                svc = next(
                    v
                    for v in t.services
                    if v.home == r and a in v.reflected_to and dst in v.backends
                )
                return (
                    f"{dst} backs service {svc.name} of {r}, whose namespace "
                    f"{svc.namespace!r} is offloaded to {a}"
                )
            case DecisionRule.SEGREGATION_DENIED:
                held = [
                    v
                    for v in t.services
                    if v.home == r and a in v.offloaded_to and a not in v.reflected_to
                    if dst in v.backends
                ]
                why = f"; {self.not_reflected(held[0], a)}" if held else ""
                return (
                    f"{dst} was not offloaded by {a} and backs no service of {r} reflected to "
                    f"{a}{why}"
                )
            case DecisionRule.SERVICE_ABSENT:
                svc = t.service_by_name[dst]
                where = ", ".join(svc.present_in)
                why = f" ({self.not_reflected(svc, a)})" if a in svc.offloaded_to else ""
                return f"{dst} exists only in {where}, not in {a} where {s} runs{why}"
            case DecisionRule.SERVICE_NO_BACKENDS:
                return f"{dst} selects no pod"
            case DecisionRule.SERVICE_BACKENDS:
                ok = sum(b.verdict is Verdict.YES for b in d.backends)
                return f"{dst} exists in {a}; {ok} of {len(d.backends)} backends reachable"
            case DecisionRule.INTERNET_OWN:
                return f"egress leaves through {a}, where {s} runs"
            case DecisionRule.INTERNET_OTHER:
                k = self.decider.internets[dst]
                return f"{s} runs in {a}; only {k}'s pods leave through {k}"
            case DecisionRule.API_LOCAL:
                return f"{s} runs in {a}, next to its API server"
            case DecisionRule.API_HOME_CLUSTER:
                return f"{s} was offloaded by {r}: it may reach its home API server"
            case DecisionRule.API_SEGREGATED:
                return f"{s}'s home is {src.home}, not {r}"
            case DecisionRule.API_MASQUERADED:
                return (
                    f"{s} was offloaded by {r}, but {a} masquerades all its traffic to peers "
                    f"(fullMasquerade): it arrives from {a}'s external address, never an API client"
                )
        raise AssertionError(f"no words for rule {d.rule}")  # pragma: no cover


def explain_cell(
    topology: Topology,
    source: str,
    destination: str,
    default: SecurityMode,
    force: SecurityMode | None = None,
) -> Explanation:
    """Why the cell (``source``, ``destination``) of the truth table has its verdict."""
    src = topology.pod_by_name.get(source)
    if src is None:
        raise UnknownName(f"unknown source pod {source!r} (sources are pods)")
    decider = Decider(topology, default, force)
    try:
        decision = decider.cell(source, destination)
    except KeyError:
        raise UnknownName(f"unknown destination {destination!r}") from None
    return _Prose(decider).explanation(src, destination, decision)
