"""Walk a packet through the chains of a ``Ruleset``, as the kernel would, without a kernel.

Like kube-proxy's ``nftablesTracer`` (kubernetes/kubernetes, ``pkg/proxy/nftables/helpers_test.go``),
which runs packets through knftables' ``Fake`` ruleset, this interprets a table's rules: per rule, its matches, then
its statements. nftables semantics kept: a rule matches when all its matches do; a match on a
field the packet does not have (``oifname`` before routing, ``tcp dport`` of a UDP packet, ``ip
saddr`` of an IPv6 packet) never matches, negated or not, because nft adds an implicit protocol
dependency; a NAT statement is terminal (it accepts); ``jump`` returns to the caller when the
callee falls through, ``goto`` does not; a verdict map with no entry for the key goes on with the
next rule; a base chain that falls through applies its policy. An ``Opaque`` expression (read from
a live table, unknown to the model) raises: the tracer never passes a rule it does not understand.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network

from peerwall.nft.objects import (
    TCP_FLAGS,
    Action,
    Chain,
    Counter,
    CtMarkSet,
    Element,
    Hook,
    Limit,
    Log,
    Match,
    Nat,
    NftMap,
    NftSet,
    Opaque,
    Range,
    Rule,
    Ruleset,
    SetRef,
    Value,
    VMap,
    render_rule,
    unmasked,
)

__all__ = ["MAX_JUMP_DEPTH", "Packet", "TraceError", "check_ruleset", "run_chain", "run_hook"]

MAX_JUMP_DEPTH = 16
"""nftables' jump stack limit."""


class TraceError(ValueError):
    """The ruleset cannot be traced: a missing chain, set or map, a loop, an unknown expression,
    a statement in a hook where nft would refuse it."""


@dataclass(frozen=True)
class Packet:
    iif: str | None
    oif: str | None
    saddr: IPv4Address
    daddr: IPv4Address
    proto: str = "tcp"
    """``tcp``, ``udp`` or ``icmp`` (all IPv4); ``ipv6`` for any IPv6 packet."""
    dport: int | None = 8080
    icmp_type: str | None = None
    ct_state: str = "new"
    ct_mark: int = 0
    """The mark of the packet's connection (``compile.ctmark``); a ``ct mark set`` changes it."""
    ct_direction: str = "original"
    """``original`` (the way the connection's first packet went) or ``reply``."""
    tcp_flags: str = "syn"
    """A TCP packet's flags under ``fin|syn|rst|ack``, as nft names them (``syn``, ``ack``, ...)."""


def _contains(e: Element, a: IPv4Address) -> bool:
    if isinstance(e, IPv4Address):
        return e == a
    if isinstance(e, IPv4Network):
        return a in e
    return e.lo <= a <= e.hi


def _ifname_matches(pattern: str, name: str) -> bool:
    # nft's only wildcard is a trailing '*'.
    return fnmatch.fnmatchcase(name, pattern) if pattern.endswith("*") else name == pattern


class _Run:
    def __init__(self, ruleset: Ruleset, hook: Hook | None) -> None:
        self.ruleset = ruleset
        self.hook = hook
        self.matched: list[str] = []
        self.natted = False

    def chain(self, name: str) -> Chain:
        try:
            return self.ruleset.chain(name)
        except KeyError:
            raise TraceError(f"no chain {name!r} in table {self.ruleset.table}") from None

    def set(self, name: str) -> NftSet:
        try:
            return self.ruleset.set(name)
        except KeyError:
            raise TraceError(f"no set {name!r} in table {self.ruleset.table}") from None

    def map(self, name: str) -> NftMap:
        try:
            return self.ruleset.map(name)
        except KeyError:
            raise TraceError(f"no map {name!r} in table {self.ruleset.table}") from None

    def field(self, field: str, p: Packet) -> object | None:
        """The packet's value of ``field``; None when the packet has no such field."""
        v4 = p.proto != "ipv6"
        match field:
            case "iifname":
                return p.iif
            case "oifname":
                return p.oif
            case "meta nfproto":
                return "ipv4" if v4 else "ipv6"
            case "meta l4proto":
                return p.proto if v4 else None
            case "ip saddr":
                return p.saddr if v4 else None
            case "ip daddr":
                return p.daddr if v4 else None
            case "tcp dport":
                return p.dport if p.proto == "tcp" else None
            case "udp dport":
                return p.dport if p.proto == "udp" else None
            case "icmp type":
                return p.icmp_type if p.proto == "icmp" else None
            case "ct state":
                return p.ct_state
            case "ct mark":
                return p.ct_mark
            case "ct direction":
                return p.ct_direction
            case _ if field == TCP_FLAGS:
                return p.tcp_flags if p.proto == "tcp" else None
        parts = unmasked(field)
        if parts is not None:
            value = self.field(parts[0], p)
            return value & parts[1] if isinstance(value, int) else None
        raise TraceError(f"cannot trace a match on {field!r}")

    def holds(self, value: object, want: Value, field: str) -> bool:
        if isinstance(want, SetRef):
            elements = self.set(want.name).elements
            return isinstance(value, IPv4Address) and any(_contains(e, value) for e in elements)
        if isinstance(want, frozenset):
            if field == "ct state":
                return value in want
            return any(self.holds(value, w, field) for w in want)
        if isinstance(want, IPv4Address | IPv4Network | Range):
            return isinstance(value, IPv4Address) and _contains(want, value)
        if field in ("iifname", "oifname"):
            return isinstance(value, str) and isinstance(want, str) and _ifname_matches(want, value)
        return value == want

    def matches(self, m: Match, p: Packet) -> bool:
        value = self.field(m.field, p)
        if value is None:  # nftables breaks: the rule does not match, negated or not
            return False
        return self.holds(value, m.value, m.field) != m.negate

    def nat(self, n: Nat, p: Packet, rule: str) -> Packet:
        if self.hook is not None:
            allowed = {"dnat": ("prerouting", "output"), "snat": ("postrouting", "input")}[n.kind]
            if self.hook.type != "nat" or self.hook.hook not in allowed:
                raise TraceError(
                    f"{rule!r}: {n.kind} is not valid in a {self.hook.type} chain at "
                    f"{self.hook.hook} (nft would refuse the ruleset)"
                )
        mask = int(n.prefix.hostmask)
        if n.kind == "dnat":
            return replace(
                p, daddr=IPv4Address(int(n.prefix.network_address) | (int(p.daddr) & mask))
            )
        return replace(p, saddr=IPv4Address(int(n.prefix.network_address) | (int(p.saddr) & mask)))

    def follow(self, j: Action, p: Packet, depth: int) -> tuple[str | None, Packet, bool]:
        """(final verdict or None, packet, stop this chain?)."""
        if j.kind in ("accept", "drop"):
            return j.kind, p, True
        if j.kind == "return":
            return None, p, True
        if j.kind == "continue":
            return None, p, False
        assert j.target is not None
        target = self.chain(j.target)
        if target.hook is not None:
            raise TraceError(f"a jump to base chain {j.target!r}")
        verdict, p = self.run(j.target, p, depth + 1)
        if verdict is not None:
            return verdict, p, True
        return None, p, j.kind == "goto"

    def rule(self, chain: str, r: Rule, p: Packet, depth: int) -> tuple[str | None, Packet, bool]:
        """(final verdict or None, packet, stop this chain?) for one rule."""
        text = (
            f"{chain}: {render_rule(r) if not any(isinstance(e, Opaque) for e in r.exprs) else r}"
        )
        for e in r.exprs:
            if isinstance(e, Opaque):
                raise TraceError(f"{chain}: cannot trace an unknown expression {e.json}")
            if isinstance(e, Match):
                if not self.matches(e, p):
                    return None, p, False
            elif isinstance(e, Counter | Limit | Log):
                continue  # the tracer decides verdicts: a rate limit is taken as never reached
            elif isinstance(e, CtMarkSet):
                p = replace(p, ct_mark=e.apply(p.ct_mark))
            elif isinstance(e, VMap):
                key = self.field(e.field, p)
                table = dict(e.map) if not isinstance(e.map, str) else self.map(e.map).elements
                hit = next(
                    (
                        v
                        for k, v in table.items()
                        if isinstance(key, str) and _ifname_matches(k, key)
                    ),
                    None,
                )
                if hit is None:
                    return None, p, False
                self.matched.append(text)
                return self.follow(hit, p, depth)
            elif isinstance(e, Nat):
                self.matched.append(text)
                self.natted = True
                return "accept", self.nat(e, p, text), True
            else:
                self.matched.append(text)
                return self.follow(e, p, depth)
        self.matched.append(text)
        return None, p, False

    def run(self, name: str, p: Packet, depth: int = 0) -> tuple[str | None, Packet]:
        """The chain's verdict, or None when it falls through (or returns)."""
        if depth > MAX_JUMP_DEPTH:
            raise TraceError(f"jump depth over {MAX_JUMP_DEPTH} at chain {name!r} (a loop?)")
        for r in self.chain(name).rules:
            verdict, p, stop = self.rule(name, r, p, depth)
            if stop:
                return verdict, p
        return None, p


def check_ruleset(ruleset: Ruleset) -> None:
    """Refuse a ruleset the tracer cannot interpret faithfully, before any packet walks it:
    unknown expressions, references to missing sets, maps or chains, jumps to base chains."""
    if ruleset.family not in ("inet", "ip"):
        raise TraceError(f"cannot trace IPv4 packets through a {ruleset.family} table")
    chains = {c.name: c for c in ruleset.chains}
    sets = {s.name for s in ruleset.sets}
    maps = {m.name: m for m in ruleset.maps}

    def jump_ok(where: str, v: Action) -> None:
        if v.target is None:
            return
        target = chains.get(v.target)
        if target is None:
            raise TraceError(f"{where}: jumps to a missing chain {v.target!r}")
        if target.hook is not None:
            raise TraceError(f"{where}: jumps to base chain {v.target!r}")

    for m in ruleset.maps:
        for v in m.elements.values():
            jump_ok(f"map {m.name}", v)
    for c in ruleset.chains:
        for r in c.rules:
            for e in r.exprs:
                if isinstance(e, Opaque):
                    raise TraceError(f"{c.name}: cannot trace an unknown expression {e.json}")
                if (
                    isinstance(e, Match)
                    and isinstance(e.value, SetRef)
                    and e.value.name not in sets
                ):
                    raise TraceError(f"{c.name}: refers to a missing set @{e.value.name}")
                if isinstance(e, VMap):
                    if isinstance(e.map, str) and e.map not in maps:
                        raise TraceError(f"{c.name}: refers to a missing map @{e.map}")
                    if not isinstance(e.map, str):
                        for _, v in e.map:
                            jump_ok(c.name, v)
                if isinstance(e, Action):
                    jump_ok(c.name, e)


def run_chain(ruleset: Ruleset, chain: str, packet: Packet) -> tuple[str, Packet, list[str]]:
    """Walk ``packet`` through one chain (and the chains it jumps to).

    Returns the verdict (``accept``/``drop``; at the end of a base chain its policy, at the end of
    a regular chain ``continue``), the packet after NAT, and the rules that matched, each as
    ``"<chain>: <rule>"``, in order.
    """
    check_ruleset(ruleset)
    run = _Run(ruleset, None)
    c = run.chain(chain)
    run.hook = c.hook
    verdict, packet = run.run(chain, packet)
    if verdict is None:
        verdict = c.hook.policy if c.hook else "continue"
    return verdict, packet, run.matched


def run_hook(ruleset: Ruleset, hook: str, packet: Packet) -> tuple[str, Packet, list[str]]:
    """Walk ``packet`` through every base chain of ``ruleset`` on netfilter hook ``hook``.

    Chains run in priority order; ``drop`` anywhere is final; NAT chains see only new connections,
    and once a NAT statement has bound the connection, later NAT chains of the hook are skipped
    (as the kernel does). ``accept`` when every chain let the packet through (or none is attached
    to the hook). Call ``check_ruleset`` once before.
    """
    chains = sorted(
        (c for c in ruleset.chains if c.hook is not None and c.hook.hook == hook),
        key=lambda c: c.hook.priority if c.hook else 0,
    )
    matched: list[str] = []
    natted = False
    for c in chains:
        assert c.hook is not None
        if c.hook.type == "nat" and (natted or packet.ct_state != "new"):
            continue
        run = _Run(ruleset, c.hook)
        verdict, packet = run.run(c.name, packet)
        matched += run.matched
        natted = natted or run.natted
        if (verdict or c.hook.policy) == "drop":
            return "drop", packet, matched
    return "accept", packet, matched
