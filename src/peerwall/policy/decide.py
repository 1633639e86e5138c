"""DESIGN.md §1 as one decision procedure: a verdict, and the rule that decided it.

Everything that needs a verdict asks here: the truth tables (over equivalence classes), the
explanations (which only put a ``Decision`` into words), and the compiler's per-peer sets
(from ``PodClass``: its two segregation
fields are the two per-peer sets). Services are decided by one aggregation of their backends' verdicts
(``aggregate``), which the tracer and the prober use too.

Classes: a source behaves according to (physical, home); a pod destination according to
``PodClass`` (where it runs, its home, and the peers whose reflected services it backs); so a
table over 10,000 pods costs thousands of decisions, not a hundred million.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import repeat
from operator import attrgetter

from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Service, Topology
from peerwall.policy.modes import EffectiveMode, ModeOrigin, effective_mode
from peerwall.policy.verdict import Verdict

__all__ = [
    "ApiClass",
    "Decider",
    "Decision",
    "DecisionRule",
    "DestinationClass",
    "InternetClass",
    "PodClass",
    "ServiceClass",
    "SourceClass",
    "aggregate",
]


class DecisionRule(str, Enum):
    """The rules of DESIGN.md §1; the values are what explanations and JSON call them."""

    INTRA_CLUSTER = "intra-cluster"
    NO_PEERING = "no-peering"
    FULL_POD_TO_POD = "full-pod-to-pod"
    SEGREGATION_OFFLOADED_HERE = "segregation-offloaded-here"
    SEGREGATION_REFLECTED_BACKEND = "segregation-reflected-backend"
    SEGREGATION_DENIED = "segregation-denied"
    SERVICE_ABSENT = "service-absent"
    SERVICE_NO_BACKENDS = "service-no-backends"
    SERVICE_BACKENDS = "service-backends"
    INTERNET_OWN = "internet-own"
    INTERNET_OTHER = "internet-other"
    API_LOCAL = "api-local"
    API_FULL_POD_TO_POD = "api-full-pod-to-pod"
    API_HOME_CLUSTER = "api-home-cluster"
    API_SEGREGATED = "api-segregated"
    API_MASQUERADED = "api-masqueraded"


@dataclass(frozen=True)
class SourceClass:
    physical: str
    home: str


@dataclass(frozen=True)
class PodClass:
    physical: str
    home: str
    backs_for: frozenset[str]
    """Peers of ``physical`` to which a service of ``physical`` backed by the pod is reflected
    (empty for an offloaded pod: a service selects only pods of its home cluster)."""


@dataclass(frozen=True)
class ServiceClass:
    present_in: frozenset[str]
    backends: tuple[PodClass, ...]
    """One per backend, in order (duplicates kept: the aggregation counts backends)."""


@dataclass(frozen=True)
class ServiceVerdictClass:
    """A service as the truth table needs it: where it exists and the *distinct* classes of its
    backends. Its verdict (all backends reached, some, none) depends on which classes its
    backends fall in, not on how many there are: services selecting a whole tier share one
    class, and each backend class is decided once per row class, not each backend."""

    present_in: frozenset[str]
    backends: frozenset[PodClass]


@dataclass(frozen=True)
class InternetClass:
    cluster: str


@dataclass(frozen=True)
class ApiClass:
    cluster: str


DestinationClass = PodClass | ServiceClass | ServiceVerdictClass | InternetClass | ApiClass


@dataclass(frozen=True)
class Decision:
    """A verdict and what decided it. ``receiver`` enforces, on traffic from ``sender``, under
    ``mode``; a service's decision carries one decision per backend, in order."""

    verdict: Verdict
    rule: DecisionRule
    receiver: str | None = None
    sender: str | None = None
    mode: EffectiveMode | None = None
    backends: tuple[Decision, ...] = ()


def aggregate(verdicts: Iterable[Verdict]) -> Verdict:
    """A service's verdict from its backends': YES if all are reached, PARTIAL if some, NO if
    none (or there are none)."""
    seen = [v is Verdict.YES for v in verdicts]
    if seen and all(seen):
        return Verdict.YES
    return Verdict.PARTIAL if any(seen) else Verdict.NO


def _reflecting(topology: Topology) -> dict[str, frozenset[str]]:
    """Pod name -> peers its home cluster reflects a service it backs to (pods at home only).

    The services of one namespace share their peers (its ``offloadedTo``): the pods of one set
    of peers are gathered by set unions, then given it by ``dict.fromkeys`` (no step per pod in
    Python, a million pods back services); only a pod that backs services of two different sets
    of peers is given their union one by one."""
    backing: dict[tuple[str, ...], set[str]] = {}
    done: set[tuple[int, tuple[str, ...]]] = set()
    for s in topology.services:
        # Services of one selector share their backends' tuple: its pods are added once.
        if not s.reflected_to or (id(s.backends), s.reflected_to) in done:
            continue
        done.add((id(s.backends), s.reflected_to))
        backing.setdefault(s.reflected_to, set()).update(s.backends)
    out: dict[str, frozenset[str]] = {}
    given: set[str] = set()  # out's keys (a set: ``&`` then walks the smaller of the two)
    for reflected_to, names in backing.items():
        peers = frozenset(reflected_to)
        both = names & given
        given |= names
        for name in both:
            have = out[name]
            if not peers <= have:
                out[name] = have | peers
        out.update(dict.fromkeys(names.difference(both) if both else names, peers))
    # Only pods at home: a service selects pods of its home cluster, so an offloaded backend
    # runs elsewhere; at home, a peer is never the pod's own cluster (offloadedTo excludes it).
    for pod in topology.pods:
        if pod.home != pod.physical:
            out.pop(pod.name, None)
    return out


class Decider:
    """Decisions for one topology under one default mode (or every mode forced)."""

    def __init__(
        self,
        topology: Topology,
        default: SecurityMode = SecurityMode.FULL_POD_TO_POD,
        force: SecurityMode | None = None,
    ) -> None:
        self.topology = topology
        self.default = default
        self.force = force
        self._reflecting = _reflecting(topology)
        self._modes: dict[tuple[str, str], EffectiveMode] = {}
        self._interned: dict[PodClass, PodClass] = {}
        self._class_of: dict[str, PodClass] = {}
        """Pod name -> its class, one object per distinct class (``service_verdict_class``)."""
        self._class_list: list[PodClass] | None = None
        self.internets = {c.internet: c.name for c in topology.clusters}
        self.apis = {c.api_server: c.name for c in topology.clusters if c.api_server}

    # --- classes -----------------------------------------------------------------------------

    def source_class(self, pod: Pod) -> SourceClass:
        return SourceClass(pod.physical, pod.home)

    def pod_class(self, pod: Pod) -> PodClass:
        return PodClass(pod.physical, pod.home, self._reflecting.get(pod.name, frozenset()))

    def service_class(self, service: Service) -> ServiceClass:
        pods = self.topology.pod_by_name
        return ServiceClass(
            frozenset(service.present_in),
            tuple(self.pod_class(pods[b]) for b in service.backends),
        )

    def destination_class(self, name: str) -> DestinationClass:
        t = self.topology
        if (pod := t.pod_by_name.get(name)) is not None:
            return self.pod_class(pod)
        if (svc := t.service_by_name.get(name)) is not None:
            return self.service_class(svc)
        if name in self.internets:
            return InternetClass(self.internets[name])
        if name in self.apis:
            return ApiClass(self.apis[name])
        raise KeyError(name)

    def pod_classes(self) -> Mapping[str, PodClass]:
        """Every pod's class by pod name, equal classes one object (compared by identity);
        built in one pass, a ``PodClass`` made once per distinct class."""
        if len(self._class_of) < len(self.topology.pods):
            names = map(attrgetter("name"), self.topology.pods)
            self._class_of = dict(zip(names, self.pod_class_list(), strict=True))
        return self._class_of

    def pod_class_list(self) -> Sequence[PodClass]:
        """Every pod's class in the order of ``topology.pods``, equal classes one object.

        A million pods: the keys (physical, home, peers it backs for) are made and looked up by
        ``map`` and ``zip``, with no step per pod in Python; a ``PodClass`` is made once per
        distinct key."""
        if self._class_list is None:
            pods = self.topology.pods
            empty = frozenset[str]()
            keys = list(
                zip(
                    map(attrgetter("physical"), pods),
                    map(attrgetter("home"), pods),
                    map(self._reflecting.get, map(attrgetter("name"), pods), repeat(empty)),
                    strict=True,
                )
            )
            interned = self._interned
            made = {
                k: interned.setdefault(c, c) for k in dict.fromkeys(keys) for c in (PodClass(*k),)
            }
            self._class_list = list(map(made.__getitem__, keys))
        return self._class_list

    def service_verdict_class(self, service: Service) -> ServiceVerdictClass:
        # Equal classes are one object (interned): distinct ones are found by identity, and
        # only those are hashed, whatever the number of backends.
        classes = list(map(self.pod_classes().__getitem__, service.backends))
        distinct = dict(zip(map(id, classes), classes, strict=True))
        return ServiceVerdictClass(frozenset(service.present_in), frozenset(distinct.values()))

    def destination_classes(self) -> list[DestinationClass]:
        """The class of every destination, in table order (services by ``ServiceVerdictClass``:
        the table needs verdicts only; ``destination_class`` keeps every backend, to explain)."""
        t = self.topology
        out: list[DestinationClass] = [self.pod_class(p) for p in t.pods]
        out += [self.service_verdict_class(s) for s in t.services]
        out += [InternetClass(c.name) for c in t.clusters]
        out += [ApiClass(c.name) for c in t.clusters if c.api_server]
        return out

    # --- the rules ---------------------------------------------------------------------------

    def mode(self, receiver: str, sender: str) -> EffectiveMode:
        """The mode ``receiver`` applies to traffic from ``sender`` (assumes they are peered)."""
        key = (receiver, sender)
        if key not in self._modes:
            if self.force is not None:
                self._modes[key] = EffectiveMode(self.force, ModeOrigin.FORCED)
            else:
                self._modes[key] = effective_mode(self.topology, receiver, sender, self.default)
        return self._modes[key]

    def decide(self, src: SourceClass, dst: DestinationClass) -> Decision:
        if isinstance(dst, PodClass):
            return self.pod(src, dst)
        if isinstance(dst, ServiceClass):
            return self.service(src, dst)
        if isinstance(dst, ServiceVerdictClass):
            return self.service_verdict(src, dst)
        if isinstance(dst, InternetClass):
            own = src.physical == dst.cluster
            return Decision(
                Verdict.YES if own else Verdict.NO,
                DecisionRule.INTERNET_OWN if own else DecisionRule.INTERNET_OTHER,
            )
        return self.api(src, dst)

    def pod(self, src: SourceClass, dst: PodClass) -> Decision:
        a, r = src.physical, dst.physical
        if a == r:
            return Decision(Verdict.YES, DecisionRule.INTRA_CLUSTER)
        if not self.topology.peered(a, r):
            return Decision(Verdict.NO, DecisionRule.NO_PEERING)
        mode = self.mode(r, a)
        if mode.mode is SecurityMode.FULL_POD_TO_POD:
            rule, verdict = DecisionRule.FULL_POD_TO_POD, Verdict.YES
        elif dst.home == a:
            rule, verdict = DecisionRule.SEGREGATION_OFFLOADED_HERE, Verdict.YES
        elif a in dst.backs_for:
            rule, verdict = DecisionRule.SEGREGATION_REFLECTED_BACKEND, Verdict.YES
        else:
            rule, verdict = DecisionRule.SEGREGATION_DENIED, Verdict.NO
        return Decision(verdict, rule, r, a, mode)

    def service(self, src: SourceClass, dst: ServiceClass) -> Decision:
        if src.physical not in dst.present_in:
            return Decision(Verdict.NO, DecisionRule.SERVICE_ABSENT)
        if not dst.backends:
            return Decision(Verdict.NO, DecisionRule.SERVICE_NO_BACKENDS)
        parts = tuple(self.pod(src, b) for b in dst.backends)
        verdict = aggregate(p.verdict for p in parts)
        return Decision(verdict, DecisionRule.SERVICE_BACKENDS, backends=parts)

    def service_verdict(self, src: SourceClass, dst: ServiceVerdictClass) -> Decision:
        """``service``'s verdict, from the distinct backend classes (no per-backend parts)."""
        if src.physical not in dst.present_in:
            return Decision(Verdict.NO, DecisionRule.SERVICE_ABSENT)
        if not dst.backends:
            return Decision(Verdict.NO, DecisionRule.SERVICE_NO_BACKENDS)
        verdict = aggregate(self.pod(src, b).verdict for b in dst.backends)
        return Decision(verdict, DecisionRule.SERVICE_BACKENDS)

    def api(self, src: SourceClass, dst: ApiClass) -> Decision:
        a, k = src.physical, dst.cluster
        if a == k:
            return Decision(Verdict.YES, DecisionRule.API_LOCAL)
        if not self.topology.peered(a, k):
            return Decision(Verdict.NO, DecisionRule.NO_PEERING)
        mode = self.mode(k, a)
        if mode.mode is SecurityMode.FULL_POD_TO_POD:
            return Decision(Verdict.YES, DecisionRule.API_FULL_POD_TO_POD, k, a, mode)
        if src.home == k and self.topology.cluster_by_name[a].full_masquerade:
            # Its packets carry a's masquerade source, never an API client's address.
            return Decision(Verdict.NO, DecisionRule.API_MASQUERADED, k, a, mode)
        if src.home == k:
            return Decision(Verdict.YES, DecisionRule.API_HOME_CLUSTER, k, a, mode)
        return Decision(Verdict.NO, DecisionRule.API_SEGREGATED, k, a, mode)

    def cell(self, source: str, destination: str) -> Decision:
        """The decision for one cell, by names."""
        pod = self.topology.pod_by_name[source]
        return self.decide(self.source_class(pod), self.destination_class(destination))
