"""A virtual packet trace through compiled rulesets, without a kernel (STYLE.md §1).

Like knftables' ``nftablesTracer``, this interprets the rule text of a ``Ruleset`` and walks a
packet through it: per rule, the matches, then one verdict or NAT statement. It understands the
forms the compiler emits (and a few close neighbours: verdict maps, ``goto``, ``return``) and raises
``UnknownRuleForm`` on anything else, for every rule of the table before any packet walks it, so it
can never pass a rule it does not understand::

    ct state [!=] established,related          iifname|oifname [!=] "<name>"
    ip saddr|daddr [!=] <addr>|<addr/len>|<a-b>|@<set>
    counter [packets N bytes M]                accept | drop | return | continue
    jump|goto <chain>                          dnat|snat ip prefix to <addr/len>
    iifname|oifname vmap { "<name>" : <verdict>, ... }

nftables semantics kept: a rule matches when all its matches do; an interface match on a packet
without that interface (``oifname`` before routing) never matches, negated or not; a NAT statement
is terminal (it accepts); ``jump`` returns to the caller when the callee falls through, ``goto``
does not; a base chain that falls through applies its policy.

On top of it, ``trace`` and ``traced_table`` compute a truth table from packets alone: a pod's
packet crosses its gateway's hooks (prerouting, routing, forward, postrouting), the tunnel the
route picked, and the receiving gateway's hooks; the cell is YES only if the packet comes out
addressed to the intended pod (or API server) in the intended cluster, and its reply (conntrack
state ``established``, NAT undone) walks back through the same hooks to the source. Routing is by
address: a gateway delivers its own pod CIDR locally and sends ``view(K, R)`` into R's tunnel.
Services (kube-proxy's job: where they exist) and Internet egress (routing) come from the
topology, not from the rulesets. The table must equal ``policy.expect()``: the compiler and the
semantics are then shown to agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Literal

from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.ruleset import Chain, Hook, Ruleset
from peerwall.errors import UnknownName
from peerwall.model.addressing import AddressPlan
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Pod, Topology
from peerwall.policy.truthtable import TruthTable
from peerwall.policy.verdict import Verdict

__all__ = [
    "POD_IFNAME",
    "Packet",
    "PathTrace",
    "Step",
    "TraceError",
    "TraceResult",
    "UnknownRuleForm",
    "check_ruleset",
    "parse_rule",
    "run_chain",
    "run_hook",
    "trace",
    "traced_table",
]

POD_IFNAME = "pod-veth"
"""The gateway side of a local pod's link: any name that is not a tunnel (``pwt-…``)."""

MAX_JUMP_DEPTH = 16
"""nftables' jump stack limit."""


class TraceError(ValueError):
    """The ruleset cannot be traced: a missing chain or set, a loop, a statement in a wrong hook."""


class UnknownRuleForm(TraceError):
    """A rule the tracer does not understand; it refuses to guess what the kernel would do."""

    def __init__(self, rule: str, why: str) -> None:
        super().__init__(f"cannot trace rule {rule!r}: {why}")
        self.rule = rule
        self.why = why


@dataclass(frozen=True)
class Packet:
    iif: str | None
    oif: str | None
    saddr: IPv4Address
    daddr: IPv4Address
    ct_state: str = "new"


# --- parsed rules -------------------------------------------------------------------------------

IfField = Literal["iifname", "oifname"]
AddrField = Literal["saddr", "daddr"]
CT_STATES = frozenset({"new", "established", "related", "invalid", "untracked"})
Interval = tuple[int, int]


@dataclass(frozen=True)
class IfMatch:
    field: IfField
    negate: bool
    name: str


@dataclass(frozen=True)
class CtMatch:
    negate: bool
    states: frozenset[str]


@dataclass(frozen=True)
class AddrMatch:
    field: AddrField
    negate: bool
    set_name: str | None
    """``@set`` lookups are resolved at run time, so a changed set changes the verdict."""
    intervals: tuple[Interval, ...] = ()


@dataclass(frozen=True)
class Jump:
    kind: Literal["accept", "drop", "return", "continue", "jump", "goto"]
    target: str | None = None


@dataclass(frozen=True)
class Nat:
    kind: Literal["snat", "dnat"]
    prefix: IPv4Network


@dataclass(frozen=True)
class VMap:
    field: IfField
    entries: tuple[tuple[str, Jump], ...]


Match = IfMatch | CtMatch | AddrMatch
Terminal = Jump | Nat | VMap


@dataclass(frozen=True)
class ParsedRule:
    text: str
    matches: tuple[Match, ...]
    terminal: Terminal | None
    """None: the rule only matches and counts; evaluation goes on with the next rule."""


_TOKEN = re.compile(r'\s*("[^"]*"|[{},:]|[^\s{},:"]+)')


def _tokens(text: str) -> list[str]:
    """Words, punctuation and quoted strings (kept with their quotes, so that a quoted name can
    never be taken for a keyword)."""
    out: list[str] = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UnknownRuleForm(text, f"cannot tokenize at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token


def _parse_address(text: str) -> Interval | None:
    """``a.b.c.d``, ``a.b.c.d/len`` (no host bits) or ``a-b`` -> inclusive interval; None if not
    one of those."""
    try:
        if "-" in text:
            lo, hi = (int(IPv4Address(x)) for x in text.split("-", 1))
            return (lo, hi) if lo <= hi else None
        if "/" in text:
            net = IPv4Network(text)
            return int(net.network_address), int(net.broadcast_address)
        a = int(IPv4Address(text))
        return a, a
    except (AddressValueError, NetmaskValueError, ValueError):
        return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def fail(self, why: str) -> UnknownRuleForm:
        return UnknownRuleForm(self.text, why)

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> str:
        if self.i >= len(self.toks):
            raise self.fail(f"expected {what} at the end of the rule")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.take(repr(word))
        if tok != word:
            raise self.fail(f"expected {word!r}, got {tok!r}")

    def negation(self) -> bool:
        if self.peek() == "!=":
            self.i += 1
            return True
        if self.peek() == "==":
            self.i += 1
        return False

    def jump(self, tok: str) -> Jump:
        if tok in ("accept", "drop", "return", "continue"):
            return Jump(tok)  # type: ignore[arg-type]
        if tok in ("jump", "goto"):
            return Jump(tok, self.take("a chain name"))  # type: ignore[arg-type]
        raise self.fail(f"unknown verdict {tok!r}")

    def vmap(self, field: IfField) -> VMap:
        self.expect("{")
        entries: list[tuple[str, Jump]] = []
        while True:
            key = _unquote(self.take("an interface name"))
            self.expect(":")
            entries.append((key, self.jump(self.take("a verdict"))))
            sep = self.take("',' or '}'")
            if sep == "}":
                return VMap(field, tuple(entries))
            if sep != ",":
                raise self.fail(f"expected ',' or '}}' in a verdict map, got {sep!r}")

    def parse(self) -> ParsedRule:
        matches: list[Match] = []
        terminal: Terminal | None = None
        while (tok := self.peek()) is not None:
            if terminal is not None:
                raise self.fail(f"{tok!r} after the rule's verdict")
            self.i += 1
            if tok == "ct":
                self.expect("state")
                negate = self.negation()
                states = [self.take("a conntrack state")]
                while self.peek() == ",":
                    self.i += 1
                    states.append(self.take("a conntrack state"))
                if unknown := set(states) - CT_STATES:
                    raise self.fail(f"unknown conntrack state(s) {sorted(unknown)}")
                matches.append(CtMatch(negate, frozenset(states)))
            elif tok in ("iifname", "oifname"):
                field: IfField = "iifname" if tok == "iifname" else "oifname"
                if self.peek() == "vmap":
                    self.i += 1
                    terminal = self.vmap(field)
                    continue
                negate = self.negation()
                matches.append(IfMatch(field, negate, _unquote(self.take("an interface name"))))
            elif tok == "ip":
                which = self.take("saddr or daddr")
                if which not in ("saddr", "daddr"):
                    raise self.fail(f"unknown ip match {which!r} (only saddr and daddr)")
                addr_field: AddrField = "saddr" if which == "saddr" else "daddr"
                negate = self.negation()
                value = self.take("an address or @set")
                if value.startswith("@"):
                    matches.append(AddrMatch(addr_field, negate, value[1:]))
                else:
                    iv = _parse_address(value)
                    if iv is None:
                        raise self.fail(f"not an IPv4 address, prefix or range: {value!r}")
                    matches.append(AddrMatch(addr_field, negate, None, (iv,)))
            elif tok == "counter":
                if self.peek() == "packets":
                    self.i += 1
                    packets = self.take("a packet count")
                    self.expect("bytes")
                    if not (packets.isdigit() and self.take("a byte count").isdigit()):
                        raise self.fail("counter values must be numbers")
            elif tok in ("dnat", "snat"):
                self.expect("ip")
                self.expect("prefix")
                self.expect("to")
                target = self.take("a prefix")
                try:
                    prefix = IPv4Network(target)
                except ValueError:
                    raise self.fail(f"not an IPv4 prefix: {target!r}") from None
                terminal = Nat("dnat" if tok == "dnat" else "snat", prefix)
            elif tok in ("accept", "drop", "return", "continue", "jump", "goto"):
                terminal = self.jump(tok)
            else:
                raise self.fail(f"unknown expression or statement {tok!r}")
        return ParsedRule(self.text, tuple(matches), terminal)


@lru_cache(maxsize=4096)
def parse_rule(text: str) -> ParsedRule:
    """One rule's text -> its matches and its verdict or NAT statement."""
    return _Parser(text).parse()


@lru_cache(maxsize=1024)
def _set_intervals(
    name: str, type_: str, flags: tuple[str, ...], elements: frozenset[str]
) -> tuple[Interval, ...]:
    if type_ != "ipv4_addr":
        raise TraceError(f"set {name}: cannot trace a set of type {type_!r}")
    out = []
    for e in elements:
        iv = _parse_address(e)
        if iv is None:
            raise TraceError(f"set {name}: not an IPv4 address, prefix or range: {e!r}")
        if iv[0] != iv[1] and "interval" not in flags:
            raise TraceError(f"set {name}: element {e!r} needs the interval flag")
        out.append(iv)
    return tuple(out)


# --- running chains -----------------------------------------------------------------------------


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

    def intervals(self, m: AddrMatch) -> tuple[Interval, ...]:
        if m.set_name is None:
            return m.intervals
        try:
            s = self.ruleset.set(m.set_name)
        except KeyError:
            raise TraceError(f"no set {m.set_name!r} in table {self.ruleset.table}") from None
        return _set_intervals(s.name, s.type, s.flags, s.elements)

    def matches(self, m: Match, p: Packet) -> bool:
        if isinstance(m, IfMatch):
            value = p.iif if m.field == "iifname" else p.oif
            if value is None:  # nftables breaks: the rule does not match, negated or not
                return False
            return (value == m.name) != m.negate
        if isinstance(m, CtMatch):
            return (p.ct_state in m.states) != m.negate
        addr = int(p.saddr if m.field == "saddr" else p.daddr)
        hit = any(lo <= addr <= hi for lo, hi in self.intervals(m))
        return hit != m.negate

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
            new = IPv4Address(int(n.prefix.network_address) | (int(p.daddr) & mask))
            return replace(p, daddr=new)
        new = IPv4Address(int(n.prefix.network_address) | (int(p.saddr) & mask))
        return replace(p, saddr=new)

    def follow(self, j: Jump, p: Packet, depth: int) -> tuple[str | None, Packet, bool]:
        """(final verdict or None, packet, stop this chain?)."""
        if j.kind in ("accept", "drop"):
            return j.kind, p, True
        if j.kind == "return":
            return None, p, True
        if j.kind == "continue":
            return None, p, False
        assert j.target is not None
        verdict, p = self.run(j.target, p, depth + 1)
        if verdict is not None:
            return verdict, p, True
        return None, p, j.kind == "goto"

    def run(self, name: str, p: Packet, depth: int = 0) -> tuple[str | None, Packet]:
        """The chain's verdict, or None when it falls through (or returns)."""
        if depth > MAX_JUMP_DEPTH:
            raise TraceError(f"jump depth over {MAX_JUMP_DEPTH} at chain {name!r} (a loop?)")
        for text in self.chain(name).rules:
            rule = parse_rule(text)
            if not all(self.matches(m, p) for m in rule.matches):
                continue
            t = rule.terminal
            if isinstance(t, VMap):
                value = p.iif if t.field == "iifname" else p.oif
                hit = next((j for k, j in t.entries if k == value), None)
                if hit is None:
                    continue
                self.matched.append(f"{name}: {text}")
                verdict, p, stop = self.follow(hit, p, depth)
            else:
                self.matched.append(f"{name}: {text}")
                if t is None:
                    continue
                if isinstance(t, Nat):
                    self.natted = True
                    return "accept", self.nat(t, p, text)
                verdict, p, stop = self.follow(t, p, depth)
            if stop:
                return verdict, p
        return None, p


def check_ruleset(ruleset: Ruleset) -> None:
    """Refuse a ruleset the tracer cannot interpret faithfully, before any packet walks it.

    Every rule must parse (even one no packet reaches), every ``@set`` and jump target must exist,
    jumps must not target base chains, set elements and base chain priorities must parse.
    """
    if ruleset.family not in ("inet", "ip"):
        raise TraceError(f"cannot trace IPv4 packets through a {ruleset.family} table")
    chains = {c.name: c for c in ruleset.chains}
    sets = {st.name: st for st in ruleset.sets}
    for st in ruleset.sets:
        _set_intervals(st.name, st.type, st.flags, st.elements)
    for c in ruleset.chains:
        if c.hook is not None:
            _priority(c.hook.priority)
        for text in c.rules:
            rule = parse_rule(text)
            for m in rule.matches:
                if isinstance(m, AddrMatch) and m.set_name is not None and m.set_name not in sets:
                    raise TraceError(f"{c.name}: {text!r} refers to a missing set @{m.set_name}")
            t = rule.terminal
            jumps = [j for _, j in t.entries] if isinstance(t, VMap) else [t]
            for j in jumps:
                if isinstance(j, Jump) and j.target is not None:
                    target = chains.get(j.target)
                    if target is None:
                        raise TraceError(f"{c.name}: {text!r} jumps to a missing chain")
                    if target.hook is not None:
                        raise TraceError(f"{c.name}: {text!r} jumps to a base chain")


def run_chain(ruleset: Ruleset, chain: str, packet: Packet) -> tuple[str, Packet, list[str]]:
    """Walk ``packet`` through one chain (and the chains it jumps to).

    Returns the verdict (``accept``/``drop``; at the end of a base chain its policy, at the end of
    a regular chain ``continue``), the packet after NAT, and the rules that matched, each as
    ``"<chain>: <rule>"``, in order. Raises ``UnknownRuleForm`` if any rule of the ruleset is of a
    form the tracer does not know, ``TraceError`` if the ruleset is otherwise inconsistent.
    """
    check_ruleset(ruleset)
    run = _Run(ruleset, None)
    c = run.chain(chain)
    run.hook = c.hook
    verdict, packet = run.run(chain, packet)
    if verdict is None:
        verdict = c.hook.policy if c.hook else "continue"
    return verdict, packet, run.matched


_PRIORITIES = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
}


def _priority(text: str) -> int:
    m = re.fullmatch(r"\s*([a-z]+|-?\d+)\s*(?:([+-])\s*(\d+))?\s*", text)
    if m is None:
        raise TraceError(f"unknown chain priority {text!r}")
    base, sign, offset = m.groups()
    if base.lstrip("-").isdigit():
        value = int(base)
    elif base in _PRIORITIES:
        value = _PRIORITIES[base]
    else:
        raise TraceError(f"unknown chain priority {text!r}")
    if offset is not None:
        value += int(offset) if sign == "+" else -int(offset)
    return value


def run_hook(ruleset: Ruleset, hook: str, packet: Packet) -> tuple[str, Packet, list[str]]:
    """Walk ``packet`` through every base chain of ``ruleset`` on netfilter hook ``hook``.

    Chains run in priority order; ``drop`` anywhere is final; NAT chains see only new connections,
    and once a NAT statement has bound the connection, later NAT chains of the hook are skipped
    (as the kernel does). ``accept`` when every chain let the packet through (or none is attached
    to the hook). Same errors as ``run_chain``.
    """
    check_ruleset(ruleset)
    return _run_hook(ruleset, hook, packet)


def _run_hook(ruleset: Ruleset, hook: str, packet: Packet) -> tuple[str, Packet, list[str]]:
    chains = sorted(
        (c for c in ruleset.chains if c.hook is not None and c.hook.hook == hook),
        key=lambda c: _priority(c.hook.priority if c.hook else "0"),
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


# --- tracing connections through the gateways --------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One netfilter hook of one gateway."""

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
    """A new connection from a source pod towards one target address: its first packet, and the
    reply."""

    target: str
    """The pod or API server the packet is meant for."""
    delivered: bool
    note: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class TraceResult:
    source: str
    destination: str
    verdict: Verdict
    reason: str
    paths: tuple[PathTrace, ...] = ()
    """One per pod or API server traced (a service has one per backend)."""

    def explain(self) -> str:
        lines = [f"{self.source} -> {self.destination}: {self.verdict.value} ({self.reason})"]
        for path in self.paths:
            lines.append(f"  to {path.target}: {path.note}")
            lines += [f"    {s.describe()}" for s in path.steps]
        return "\n".join(lines)


class _Tracer:
    def __init__(
        self,
        topology: Topology,
        default_mode: SecurityMode,
        rulesets: Mapping[str, Ruleset] | None,
    ) -> None:
        self.topology = topology
        self.mode = default_mode
        self.plan: AddressPlan = topology.addresses
        self.rulesets: dict[str, Ruleset] = dict(rulesets or {})
        self.checked: set[str] = set()
        self.paths: dict[tuple[str, str, str], PathTrace] = {}
        self.internets = {c.internet: c.name for c in topology.clusters}
        self.apis = {c.api_server: c.name for c in topology.clusters if c.api_server}

    def ruleset(self, cluster: str) -> Ruleset:
        if cluster not in self.checked:
            if cluster not in self.rulesets:
                self.rulesets[cluster] = build(self.topology, cluster, self.mode, self.plan)
            check_ruleset(self.rulesets[cluster])
            self.checked.add(cluster)
        return self.rulesets[cluster]

    def route(self, gateway: str, daddr: IPv4Address) -> str | None:
        """Where ``gateway`` sends ``daddr``: itself (a local pod), a peer's tunnel, or nowhere."""
        if daddr in self.topology.cluster_by_name[gateway].pod_cidr:
            return gateway
        for peer in self.topology.peers[gateway]:
            if daddr in self.plan.view(gateway, peer):
                return peer
        return None

    def walk(self, source: Pod, cluster: str, ip: IPv4Address, target: str) -> PathTrace:
        """The first packet of ``source``'s connection to ``ip`` in ``cluster``."""
        key = (source.name, cluster, str(ip))
        if key not in self.paths:
            self.paths[key] = self._walk(source, cluster, ip, target)
        return self.paths[key]

    def _walk(self, source: Pod, cluster: str, ip: IPv4Address, target: str) -> PathTrace:
        here = source.physical
        daddr = self.plan.seen_from(ip, cluster, here)
        if daddr is None:
            return PathTrace(target, False, f"no route: {here} and {cluster} are not peered")
        packet = Packet(POD_IFNAME, None, source.ip, daddr)
        steps: list[Step] = []
        hops: list[tuple[str, Packet, Packet]] = []  # (gateway, as it came in, as it went out)

        def hook(gateway: str, name: str, p: Packet) -> tuple[str, Packet]:
            verdict, after, rules = _run_hook(self.ruleset(gateway), name, p)
            steps.append(Step(gateway, name, p, verdict, after, tuple(rules)))
            return verdict, after

        def failed(note: str) -> PathTrace:
            return PathTrace(target, False, note, tuple(steps))

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
                if here != cluster or packet.daddr != ip:
                    return failed(
                        f"misdelivered: {packet.daddr} in {here}, expected {ip} in {cluster}"
                    )
                trouble = self._reply(hops, hook)
                if trouble is not None:
                    return failed(f"delivered to {ip} in {here}, but {trouble}")
                return PathTrace(
                    target, True, f"delivered to {ip} in {here}, reply returned", tuple(steps)
                )
            # Across the tunnel: on the far side it is the interface named after the sender.
            packet = Packet(names.tunnel_ifname(here), None, packet.saddr, packet.daddr)
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
        packet = Packet(last.oif, None, last.daddr, last.saddr, "established")
        for gateway, came_in, went_out in reversed(hops):
            packet = replace(packet, iif=went_out.oif, oif=None)
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

    def pod(self, source: Pod, pod: Pod) -> PathTrace:
        return self.walk(source, pod.physical, pod.ip, pod.name)

    def trace(self, source_name: str, destination: str) -> TraceResult:
        t = self.topology
        source = t.pod_by_name.get(source_name)
        if source is None:
            raise UnknownName(f"unknown source pod {source_name!r} (sources are pods)")
        a = source.physical

        def result(verdict: Verdict, reason: str, *paths: PathTrace) -> TraceResult:
            return TraceResult(source_name, destination, verdict, reason, paths)

        def single(path: PathTrace) -> TraceResult:
            return result(Verdict.YES if path.delivered else Verdict.NO, path.note, path)

        if (pod := t.pod_by_name.get(destination)) is not None:
            return single(self.pod(source, pod))
        if (svc := t.service_by_name.get(destination)) is not None:
            if a not in svc.present_in:
                return result(
                    Verdict.NO,
                    f"{svc.name} does not exist in {a} (home {svc.home}, "
                    f"reflected to {', '.join(svc.reflected_to) or 'no cluster'})",
                )
            if not svc.backends:
                return result(Verdict.NO, f"{svc.name} has no backends")
            paths = [self.pod(source, t.pod_by_name[b]) for b in svc.backends]
            reached = sum(p.delivered for p in paths)
            if reached == len(paths):
                verdict = Verdict.YES
            else:
                verdict = Verdict.PARTIAL if reached else Verdict.NO
            return result(verdict, f"{reached} of {len(paths)} backends reached", *paths)
        if (k := self.internets.get(destination)) is not None:
            if a == k:
                return result(Verdict.YES, f"egress leaves through {a}'s uplink")
            return result(Verdict.NO, f"egress leaves through {a}, not {k}")
        if (k := self.apis.get(destination)) is not None:
            return single(self.walk(source, k, self.plan.api_ip(k), destination))
        raise UnknownName(f"unknown destination {destination!r}")


def trace(
    topology: Topology,
    default_mode: SecurityMode,
    source_pod: str,
    destination: str,
    *,
    rulesets: Mapping[str, Ruleset] | None = None,
) -> TraceResult:
    """One cell, decided by packets through the gateways' rulesets (compiled unless given)."""
    return _Tracer(topology, default_mode, rulesets).trace(source_pod, destination)


def traced_table(
    topology: Topology,
    default_mode: SecurityMode,
    *,
    rulesets: Mapping[str, Ruleset] | None = None,
) -> TruthTable:
    """The whole table, decided by packets: same shape as ``expect(...).table``.

    ``rulesets`` maps a cluster to the ruleset its gateway holds (a read-back live table, or a
    mutated one in tests); clusters not given get ``build(topology, cluster, default_mode)``.
    """
    tracer = _Tracer(topology, default_mode, rulesets)
    cells = {
        (s, d): tracer.trace(s, d).verdict
        for s in topology.sources
        for d in topology.destinations
        if s != d
    }
    return TruthTable.from_cells(default_mode.value, topology.sources, topology.destinations, cells)
