"""The nftables objects peerwall writes, as values: one model for scripts, listings and traces.

A rule is a tuple of expressions (matches and statements), not text. The compiler builds these
values; ``render_*`` turns them into nft script text; ``to_json``/``from_json`` convert to and
from libnftables' JSON (libnftables-json(5)), so a live table read back from the kernel compares
equal to the desired one *structurally*, whatever spelling a given nft version prints;
``nft.parse`` parses script text back into the same values (for the in-memory ``Nft`` fake).

Anything in a live table that this model does not know becomes ``Opaque`` and never equals a
desired expression: a rule added by hand shows as drift instead of being misread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any, Literal

__all__ = [
    "FIELDS",
    "TCP_FLAGS",
    "Action",
    "Chain",
    "Counter",
    "CtMarkSet",
    "Element",
    "Expr",
    "Hook",
    "Limit",
    "Log",
    "Match",
    "Nat",
    "NftMap",
    "NftSet",
    "Opaque",
    "Range",
    "Rule",
    "Ruleset",
    "SetRef",
    "VMap",
    "Value",
    "element_from_json",
    "element_text",
    "elements_from_json",
    "field_json",
    "map_verdict_from_json",
    "masked",
    "render_elements",
    "render_replace",
    "render_rule",
    "render_table",
    "rule_from_json",
    "rule_to_json",
    "unmasked",
]


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Range:
    """An inclusive address range ``lo-hi``."""

    lo: IPv4Address
    hi: IPv4Address


@dataclass(frozen=True)
class SetRef:
    """``@name``: a lookup in a named set (resolved when the packet is evaluated)."""

    name: str


Element = IPv4Address | IPv4Network | Range
"""An element of an address set."""

Value = str | int | IPv4Address | IPv4Network | Range | SetRef | frozenset[Any]
"""The right-hand side of a match: a name or keyword, a port, an address, a prefix, a range, a
named set, or an anonymous set (``{ 53, 12345 }``; for ``ct state``, the flags)."""


# --- expressions -------------------------------------------------------------------------------

TCP_FLAGS = "tcp flags & (fin|syn|rst|ack)"
"""The TCP flags that say what a segment is (ECN and PSH/URG masked off): ``syn`` for the first
segment of a connection, whatever ECN it asks for."""

FIELDS: Mapping[str, dict[str, Any]] = {
    "iifname": {"meta": {"key": "iifname"}},
    "oifname": {"meta": {"key": "oifname"}},
    "meta nfproto": {"meta": {"key": "nfproto"}},
    "meta l4proto": {"meta": {"key": "l4proto"}},
    "ip saddr": {"payload": {"protocol": "ip", "field": "saddr"}},
    "ip daddr": {"payload": {"protocol": "ip", "field": "daddr"}},
    "tcp dport": {"payload": {"protocol": "tcp", "field": "dport"}},
    "udp dport": {"payload": {"protocol": "udp", "field": "dport"}},
    "icmp type": {"payload": {"protocol": "icmp", "field": "type"}},
    "ct state": {"ct": {"key": "state"}},
    "ct mark": {"ct": {"key": "mark"}},
    "ct direction": {"ct": {"key": "direction"}},
    TCP_FLAGS: {
        "&": [{"payload": {"protocol": "tcp", "field": "flags"}}, ["fin", "syn", "rst", "ack"]]
    },
}
"""Every packet field peerwall matches on, as nft writes it and as its JSON names it."""

_FIELD_OF_JSON = {json.dumps(v, sort_keys=True): k for k, v in FIELDS.items()}

MASKABLE = frozenset({"ct mark"})
"""The integer fields a match may read some bits of (``masked``)."""


def masked(field: str, mask: int) -> str:
    """``<field> & <mask>``: the field's value ANDed with ``mask`` (a binop nft computes before it
    compares), as a field name of its own: ``Match(masked("ct mark", 0xFFFF0000), 0x80010000)``
    matches a connection whose mark's high 16 bits are ``0x8001``, whatever the low 16 hold."""
    if field not in MASKABLE or not 0 <= mask < 1 << 32:
        raise ValueError(f"cannot mask {field!r} with {mask:#x}")
    return f"{field} & 0x{mask:08x}"


_MASKED = re.compile(r"(?P<field>[a-z]+ [a-z]+) & (?P<mask>0x[0-9a-f]{8})")


def unmasked(field: str) -> tuple[str, int] | None:
    """``masked``'s inverse: the field and mask of a masked field name; None for a plain one."""
    m = _MASKED.fullmatch(field)
    if m is None or m["field"] not in MASKABLE:
        return None
    return m["field"], int(m["mask"], 16)


def field_json(field: str) -> Any:
    """The JSON of a field (a key of ``FIELDS``, or a ``masked`` one: ``{"&": [field, mask]}``)."""
    parts = unmasked(field)
    if parts is not None:
        return {"&": [FIELDS[parts[0]], parts[1]]}
    return FIELDS[field]


def _field_of_json(left: Any) -> str | None:
    field = _FIELD_OF_JSON.get(json.dumps(left, sort_keys=True))
    if field is not None:
        return field
    if isinstance(left, dict) and set(left) == {"&"}:
        inner, mask = left["&"]
        base = _FIELD_OF_JSON.get(json.dumps(inner, sort_keys=True))
        if base in MASKABLE and isinstance(mask, int) and not isinstance(mask, bool):
            return masked(base, mask)
    return None


@dataclass(frozen=True)
class Match:
    field: str
    """A key of ``FIELDS``."""
    value: Value
    negate: bool = False


@dataclass(frozen=True)
class Counter:
    """Counts packets and bytes; compared without its values (they are state, not rules)."""


@dataclass(frozen=True)
class Action:
    """An nftables verdict statement (``accept``, ``drop``, ``jump <chain>``, ...). Not called a
    verdict: in peerwall that word is a truth-table cell's (``policy.Verdict``)."""

    kind: Literal["accept", "drop", "return", "continue", "jump", "goto"]
    target: str | None = None


@dataclass(frozen=True)
class VMap:
    """``<field> vmap @map`` (a named verdict map) or an inline ``{ key : verdict, ... }``."""

    field: str
    map: str | tuple[tuple[str, Action], ...]


@dataclass(frozen=True)
class Nat:
    """Prefix NAT (``dnat ip prefix to 10.244.0.0/16``): the host bits are kept."""

    kind: Literal["dnat", "snat"]
    prefix: IPv4Network


@dataclass(frozen=True)
class CtMarkSet:
    """``ct mark set <value>``: marks the packet's connection (see ``compile.ctmark``); with
    ``keep``, ``ct mark set ct mark & <keep> | <value>``: the bits of ``keep`` are left as they
    were (another owner's), the others become ``value``'s."""

    value: int
    keep: int = 0
    """The bits of the old mark kept (0: the whole mark is written)."""

    def apply(self, mark: int) -> int:
        """The connection's mark after the statement."""
        return (mark & self.keep) | self.value


@dataclass(frozen=True)
class Limit:
    """``limit rate N/second burst B packets``: matches while under the rate (a token bucket in
    the kernel), so the rest of its rule runs at most that often."""

    rate: int
    burst: int
    per: str = "second"


@dataclass(frozen=True)
class Log:
    """``log prefix "..." group N``: a copy of the packet to NFLOG group N (nfnetlink_log); no
    verdict, the rule goes on."""

    prefix: str
    group: int


@dataclass(frozen=True)
class Opaque:
    """An expression of a live table that this model does not know (kept as its JSON)."""

    json: str


Expr = Match | Counter | Action | VMap | Nat | CtMarkSet | Limit | Log | Opaque


@dataclass(frozen=True)
class Rule:
    exprs: tuple[Expr, ...]
    comment: str | None = None


# --- objects -----------------------------------------------------------------------------------

PRIORITIES = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
}


@dataclass(frozen=True)
class Hook:
    """What makes a chain a base chain."""

    type: str  # filter | nat
    hook: str  # prerouting | input | forward | output | postrouting
    priority: int
    policy: str = "accept"

    def render(self) -> str:
        name = next((k for k, v in PRIORITIES.items() if v == self.priority), None)
        prio = name if name is not None else str(self.priority)
        return f"type {self.type} hook {self.hook} priority {prio}; policy {self.policy};"


@dataclass(frozen=True)
class NftSet:
    name: str
    type: str = "ipv4_addr"
    flags: tuple[str, ...] = ()
    comment: str | None = None
    elements: frozenset[Element] = field(default_factory=frozenset)

    def declaration(self) -> NftSet:
        """The set without its elements: what must match for an element-only update."""
        return NftSet(self.name, self.type, self.flags, self.comment)


@dataclass(frozen=True)
class NftMap:
    """A verdict map keyed by interface name (``type ifname : verdict``)."""

    name: str
    key_type: str = "ifname"
    comment: str | None = None
    elements: Mapping[str, Action] = field(default_factory=dict)

    def declaration(self) -> NftMap:
        return NftMap(self.name, self.key_type, self.comment)

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.key_type,
                self.comment,
                tuple(sorted(self.elements.items(), key=lambda kv: kv[0])),
            )
        )


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()
    hook: Hook | None = None
    comment: str | None = field(default=None, compare=False)
    """Shown by ``nft list``; not compared (libnftables 1.0.6 leaves it out of JSON)."""


@dataclass(frozen=True)
class Ruleset:
    """One table: the unit peerwall owns in a gateway."""

    family: str
    table: str
    sets: tuple[NftSet, ...] = ()
    maps: tuple[NftMap, ...] = ()
    chains: tuple[Chain, ...] = ()
    comment: str | None = None
    """Shown by ``nft list``; not compared (libnftables 1.0.6 leaves it out of JSON)."""
    flags: tuple[str, ...] = ()
    """Table flags as read back (``dormant`` unhooks every chain); peerwall writes none."""

    def set(self, name: str) -> NftSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise KeyError(name)

    def map(self, name: str) -> NftMap:
        for m in self.maps:
            if m.name == name:
                return m
        raise KeyError(name)

    def chain(self, name: str) -> Chain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)

    def elements(self, name: str) -> frozenset[Element]:
        return self.set(name).elements


# --- text --------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'


def _sort_key(e: object) -> tuple[int, int, str]:
    if isinstance(e, IPv4Address):
        return (0, int(e), "")
    if isinstance(e, IPv4Network):
        return (0, int(e.network_address), str(e))
    if isinstance(e, Range):
        return (0, int(e.lo), str(e.hi))
    if isinstance(e, int):
        return (1, e, "")
    return (2, 0, str(e))


def element_text(e: object) -> str:
    if isinstance(e, Range):
        return f"{e.lo}-{e.hi}"
    if isinstance(e, IPv4Network) and e.prefixlen == 32:
        return str(e.network_address)
    return str(e)


def render_elements(elements: Iterable[object]) -> str:
    """``{ a, b, ... }`` in numeric order, so scripts are stable and readable."""
    return "{ " + ", ".join(element_text(e) for e in sorted(elements, key=_sort_key)) + " }"


def _hex(v: int) -> str:
    return f"0x{v:08x}"


def _value(field: str, v: Value) -> str:
    if isinstance(v, SetRef):
        return f"@{v.name}"
    if isinstance(v, frozenset):
        if field == "ct state":
            return ",".join(sorted(v))
        if unmasked(field) is not None:
            return "{ " + ", ".join(_hex(x) for x in sorted(v)) + " }"
        return render_elements(v)
    if isinstance(v, int) and unmasked(field) is not None:
        return _hex(v)
    if isinstance(v, str):
        return _quote(v) if field in ("iifname", "oifname") else v
    return element_text(v)


def _verdict(v: Action) -> str:
    return f"{v.kind} {v.target}" if v.target else v.kind


def render_expr(e: Expr) -> str:
    if isinstance(e, Match):
        op = "!= " if e.negate else ("== " if unmasked(e.field) is not None else "")
        return f"{e.field} {op}{_value(e.field, e.value)}"
    if isinstance(e, Counter):
        return "counter"
    if isinstance(e, Action):
        return _verdict(e)
    if isinstance(e, VMap):
        if isinstance(e.map, str):
            return f"{e.field} vmap @{e.map}"
        inner = ", ".join(f"{_quote(k)} : {_verdict(v)}" for k, v in e.map)
        return f"{e.field} vmap {{ {inner} }}"
    if isinstance(e, Nat):
        return f"{e.kind} ip prefix to {e.prefix}"
    if isinstance(e, CtMarkSet):
        if e.keep:
            return f"ct mark set ct mark & {_hex(e.keep)} | {_hex(e.value)}"
        return f"ct mark set {e.value}"
    if isinstance(e, Limit):
        return f"limit rate {e.rate}/{e.per} burst {e.burst} packets"
    if isinstance(e, Log):
        return f"log prefix {_quote(e.prefix)} group {e.group}"
    raise ValueError(f"cannot render an opaque expression {e.json}")


def render_rule(rule: Rule) -> str:
    text = " ".join(render_expr(e) for e in rule.exprs)
    if rule.comment:
        text += f" comment {_quote(rule.comment)}"
    return text


def render_table(rs: Ruleset) -> str:
    """The table as an nft script block (``table inet peerwall { ... }``)."""
    out = [f"table {rs.family} {rs.table} {{"]
    if rs.comment:
        out.append(f"\tcomment {_quote(rs.comment)}")
    for m in rs.maps:
        out.append(f"\tmap {m.name} {{")
        out.append(f"\t\ttype {m.key_type} : verdict")
        if m.comment:
            out.append(f"\t\tcomment {_quote(m.comment)}")
        if m.elements:
            out.append(f"\t\telements = {render_map_elements(m.elements)}")
        out.append("\t}")
    for s in rs.sets:
        out.append(f"\tset {s.name} {{")
        out.append(f"\t\ttype {s.type}")
        if s.flags:
            out.append(f"\t\tflags {','.join(s.flags)}")
        if s.comment:
            out.append(f"\t\tcomment {_quote(s.comment)}")
        if s.elements:
            out.append(f"\t\telements = {render_elements(s.elements)}")
        out.append("\t}")
    for c in rs.chains:
        out.append(f"\tchain {c.name} {{")
        if c.comment:
            out.append(f"\t\tcomment {_quote(c.comment)}")
        if c.hook:
            out.append(f"\t\t{c.hook.render()}")
        out.extend(f"\t\t{render_rule(r)}" for r in c.rules)
        out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def render_map_elements(elements: Mapping[str, Action]) -> str:
    return (
        "{ " + ", ".join(f"{_quote(k)} : {_verdict(v)}" for k, v in sorted(elements.items())) + " }"
    )


def render_replace(rs: Ruleset) -> str:
    """One transaction that replaces the table exactly, whether or not it exists.

    ``flush table`` would keep old set elements; creating then deleting the table first makes the
    script valid either way, and the whole buffer is one atomic transaction (so ``nft -f`` of
    it, twice or after another peerwall script, leaves exactly one copy).
    """
    return (
        f"add table {rs.family} {rs.table}\ndelete table {rs.family} {rs.table}\n"
        + render_table(rs)
    )


# --- JSON --------------------------------------------------------------------------------------


def _value_json(v: Value) -> Any:
    if isinstance(v, SetRef):
        return f"@{v.name}"
    if isinstance(v, frozenset):
        return {"set": [_value_json(x) for x in sorted(v, key=_sort_key)]}
    if isinstance(v, IPv4Network):
        if v.prefixlen == 32:
            return str(v.network_address)
        return {"prefix": {"addr": str(v.network_address), "len": v.prefixlen}}
    if isinstance(v, Range):
        return {"range": [str(v.lo), str(v.hi)]}
    if isinstance(v, IPv4Address):
        return str(v)
    return v


def _verdict_json(v: Action) -> dict[str, Any]:
    return {v.kind: {"target": v.target} if v.target else None}


def expr_to_json(e: Expr) -> Any:
    if isinstance(e, Match):
        if e.field == "ct state":
            flags = sorted(e.value) if isinstance(e.value, frozenset) else [e.value]
            right: Any = flags[0] if len(flags) == 1 else flags
            return {
                "match": {"op": "!=" if e.negate else "in", "left": FIELDS[e.field], "right": right}
            }
        op = "!=" if e.negate else "=="
        return {"match": {"op": op, "left": field_json(e.field), "right": _value_json(e.value)}}
    if isinstance(e, Counter):
        return {"counter": None}
    if isinstance(e, Action):
        return _verdict_json(e)
    if isinstance(e, VMap):
        data: Any = (
            f"@{e.map}"
            if isinstance(e.map, str)
            else {"set": [[k, _verdict_json(v)] for k, v in e.map]}
        )
        return {"vmap": {"key": FIELDS[e.field], "data": data}}
    if isinstance(e, Nat):
        addr = {"prefix": {"addr": str(e.prefix.network_address), "len": e.prefix.prefixlen}}
        return {e.kind: {"family": "ip", "addr": addr, "flags": "netmap", "type_flags": "prefix"}}
    if isinstance(e, CtMarkSet):
        value: Any = e.value
        if e.keep:
            value = {"|": [{"&": [FIELDS["ct mark"], e.keep]}, e.value]}
        return {"mangle": {"key": FIELDS["ct mark"], "value": value}}
    if isinstance(e, Limit):
        return {"limit": {"rate": e.rate, "burst": e.burst, "per": e.per}}
    if isinstance(e, Log):
        return {"log": {"prefix": e.prefix, "group": e.group}}
    return json.loads(e.json)


def rule_to_json(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"expr": [expr_to_json(e) for e in rule.exprs]}
    if rule.comment:
        out["comment"] = rule.comment
    return out


class _Unknown(Exception):
    pass


def _value_from_json(field: str, right: Any) -> Value:
    if isinstance(right, str):
        if right.startswith("@"):
            return SetRef(right[1:])
        if field in ("ip saddr", "ip daddr"):
            return _address(right)
        if field == "ct state":
            return frozenset({right})
        return right
    if isinstance(right, bool):
        raise _Unknown
    if isinstance(right, int):
        return right
    if isinstance(right, list) and field == "ct state":
        return frozenset(str(x) for x in right)
    if isinstance(right, dict):
        if "set" in right:
            return frozenset(_value_from_json(field, x) for x in right["set"])
        if "prefix" in right or "range" in right:
            return element_from_json(right)
    raise _Unknown


def _address(text: str) -> IPv4Address:
    a = ip_address(text)
    if not isinstance(a, IPv4Address):
        raise _Unknown
    return a


def element_from_json(e: Any) -> Element:
    """A JSON set element: ``"10.0.0.1"``, ``{"prefix": ...}``, ``{"range": [...]}``,
    ``{"elem": {"val": ...}}`` (an element with a timeout, counter or comment)."""
    if isinstance(e, str):
        return _address(e)
    if isinstance(e, dict):
        if "prefix" in e:
            p = e["prefix"]
            return IPv4Network(f"{p['addr']}/{p['len']}")
        if "range" in e:
            lo, hi = e["range"]
            return Range(_address(lo), _address(hi))
        if "elem" in e:
            return element_from_json(e["elem"]["val"])
    raise _Unknown


def map_verdict_from_json(d: Any) -> Action:
    """A verdict map's value; one this model does not know reads as a jump to a chain that
    cannot exist (``?<json>``), so it never equals a desired element."""
    try:
        return verdict_from_json(d)
    except _Unknown:
        return Action("goto", "?" + json.dumps(d, sort_keys=True))


def elements_from_json(elements: Iterable[Any]) -> frozenset[Element] | None:
    """A set's elements; None if one of them is not an address, prefix or range."""
    try:
        return frozenset(element_from_json(e) for e in elements)
    except (_Unknown, KeyError, TypeError, ValueError):
        return None


def verdict_from_json(d: Any) -> Action:
    if isinstance(d, dict) and len(d) == 1:
        ((kind, arg),) = d.items()
        if kind in ("accept", "drop", "return", "continue") and arg is None:
            return Action(kind)
        if kind in ("jump", "goto") and isinstance(arg, dict) and "target" in arg:
            return Action(kind, str(arg["target"]))
    raise _Unknown


def _expr_from_json(d: Any) -> Expr:
    if not isinstance(d, dict) or len(d) != 1:
        raise _Unknown
    ((kind, arg),) = d.items()
    if kind == "match":
        field = _field_of_json(arg["left"])
        if field is None:
            raise _Unknown
        op = arg["op"]
        ok = ("in", "!=") if field == "ct state" else ("==", "!=")
        if op not in ok:
            raise _Unknown
        right = arg["right"]
        if field in MASKABLE and isinstance(right, dict) and "prefix" in right:
            # nft lists ``ct mark & 0xffff0000 == V`` (a mask of leading bits, one value) as
            # ``ct mark V/16``: read back as the masked match that was written.
            bits = int(right["prefix"]["len"])
            addr = right["prefix"]["addr"]
            if not isinstance(addr, int) or isinstance(addr, bool) or not 0 < bits <= 32:
                raise _Unknown
            return Match(masked(field, ((1 << bits) - 1) << (32 - bits)), addr, op == "!=")
        return Match(field, _value_from_json(field, right), op == "!=")
    if kind == "counter":
        return Counter()
    if kind == "vmap":
        field = _FIELD_OF_JSON.get(json.dumps(arg["key"], sort_keys=True))
        if field is None:
            raise _Unknown
        data = arg["data"]
        if isinstance(data, str) and data.startswith("@"):
            return VMap(field, data[1:])
        if isinstance(data, dict) and "set" in data:
            return VMap(field, tuple((str(k), verdict_from_json(v)) for k, v in data["set"]))
        raise _Unknown
    if kind == "mangle":
        if arg["key"] != FIELDS["ct mark"]:
            raise _Unknown
        return _mark_set_from_json(arg["value"])
    if kind == "limit":
        extra = set(arg) - {"rate", "burst", "per", "rate_unit", "inv"}
        if extra or arg.get("inv") or arg.get("rate_unit", "packets") != "packets":
            raise _Unknown
        return Limit(int(arg["rate"]), int(arg.get("burst", 5)), str(arg.get("per", "second")))
    if kind == "log":
        if set(arg) != {"prefix", "group"}:
            raise _Unknown
        return Log(str(arg["prefix"]), int(arg["group"]))
    if kind in ("dnat", "snat"):
        if arg.get("type_flags") != "prefix" or "prefix" not in arg.get("addr", {}):
            raise _Unknown
        p = arg["addr"]["prefix"]
        return Nat(kind, IPv4Network(f"{p['addr']}/{p['len']}"))
    return verdict_from_json(d)


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 1 << 32:
        raise _Unknown
    return v


def _mark_set_from_json(value: Any) -> CtMarkSet:
    """``ct mark set V``, or ``ct mark set ct mark & K | V``, which nft lists with the mask
    ``K | V`` (it keeps what it ORs in): read back as the bits kept, ``mask & ~V``."""
    if not isinstance(value, dict):
        return CtMarkSet(_int(value))
    (left, bits) = value["|"]
    (mark, mask) = left["&"]
    if mark != FIELDS["ct mark"]:
        raise _Unknown
    v = _int(bits)
    keep = _int(mask) & ~v
    if not keep:
        raise _Unknown
    return CtMarkSet(v, keep)


def expr_from_json(d: Any) -> Expr:
    """One JSON expression; ``Opaque`` if it is not one this model knows."""
    try:
        return _expr_from_json(d)
    except (_Unknown, KeyError, TypeError, ValueError):
        return Opaque(json.dumps(d, sort_keys=True))


def rule_from_json(rule: Mapping[str, Any]) -> Rule:
    comment = rule.get("comment")
    return Rule(
        tuple(expr_from_json(e) for e in rule.get("expr", ())),
        str(comment) if comment is not None else None,
    )
