"""nft script text -> the values of ``nft.objects``: rules, and the commands of a script.

It reads the forms peerwall writes (and close neighbours), and refuses anything else with
``UnknownRuleForm`` rather than guess what the kernel would do::

    ct state [!=] established,related          iifname|oifname [!=] "<name>" ("pwt-*" wildcards)
    ct mark [& <mask>] [!=] <n>|{ ... }         ct mark set <n> | ct mark & <keep> | <n>
    ct direction original|reply
    tcp flags & (fin|syn|rst|ack) [!=] syn
    ip saddr|daddr [!=] <addr>|<addr/len>|<a-b>|@<set>|{ ... }
    tcp|udp dport [!=] <port>|{ ... }          icmp type <type>     meta nfproto|l4proto <x>
    counter [packets N bytes M]                accept | drop | return | continue | jump|goto <c>
    limit rate <n>/second burst <b> packets    log prefix "<text>" group <n>
    dnat|snat ip prefix to <addr/len>          iifname|oifname vmap @<map> | { "<if>" : <verdict> }
    comment "<text>"

Scripts: ``add|delete|flush table``, ``table F T { ... }`` blocks (comment, set, map, chain),
``add set|map|chain``, ``add rule``, ``add|delete element``, ``flush chain``, ``delete
chain|set|map``. This is what the in-memory ``Nft`` fake runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import AddressValueError, IPv4Address, IPv4Network, NetmaskValueError
from typing import Any

from peerwall.nft.objects import (
    FIELDS,
    PRIORITIES,
    TCP_FLAGS,
    Action,
    Chain,
    Counter,
    CtMarkSet,
    Element,
    Expr,
    Hook,
    Limit,
    Log,
    Match,
    Nat,
    NftMap,
    NftSet,
    Range,
    Rule,
    SetRef,
    Value,
    VMap,
    masked,
    unmasked,
)

__all__ = ["Command", "NftSyntaxError", "UnknownRuleForm", "parse_rule", "parse_script"]

CT_STATES = frozenset({"new", "established", "related", "invalid", "untracked"})
TCP_FLAG_NAMES = frozenset({"fin", "syn", "rst", "psh", "ack", "urg", "ecn", "cwr"})
VERDICTS = ("accept", "drop", "return", "continue", "jump", "goto")


class NftSyntaxError(ValueError):
    """A script that nft would refuse (or that this parser does not know)."""


class UnknownRuleForm(NftSyntaxError):
    """A rule the parser does not understand; it refuses to guess what the kernel would do."""

    def __init__(self, rule: str, why: str) -> None:
        super().__init__(f"cannot read rule {rule!r}: {why}")
        self.rule = rule
        self.why = why


_TOKEN = re.compile(r'\s*("[^"]*"|[{},:;|]|!=|==|[^\s{},:;"|]+)')


def _tokens(text: str, fail: Any) -> list[str]:
    """Words, punctuation and quoted strings (kept with their quotes, so that a quoted name can
    never be taken for a keyword)."""
    out: list[str] = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        if m is None:
            raise fail(f"cannot tokenize at {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == '"' else token


def parse_address(text: str) -> Element | None:
    """``a.b.c.d``, ``a.b.c.d/len`` (no host bits) or ``a-b``; None if not one of those."""
    try:
        if "-" in text:
            lo, hi = (IPv4Address(x) for x in text.split("-", 1))
            return Range(lo, hi) if lo <= hi else None
        if "/" in text:
            return IPv4Network(text)
        return IPv4Address(text)
    except (AddressValueError, NetmaskValueError, ValueError):
        return None


class _Tokens:
    def __init__(self, text: str, toks: list[str], fail: Any) -> None:
        self.text = text
        self.toks = toks
        self.i = 0
        self.fail = fail

    def peek(self, ahead: int = 0) -> str | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self, what: str) -> str:
        if self.i >= len(self.toks):
            raise self.fail(f"expected {what} at the end")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, word: str) -> None:
        tok = self.take(repr(word))
        if tok != word:
            raise self.fail(f"expected {word!r}, got {tok!r}")

    def skip(self, word: str) -> bool:
        if self.peek() == word:
            self.i += 1
            return True
        return False

    def done(self) -> bool:
        return self.i >= len(self.toks)


class _RuleParser:
    def __init__(self, tokens: _Tokens) -> None:
        self.t = tokens

    def verdict(self, tok: str) -> Action:
        if tok in ("accept", "drop", "return", "continue"):
            return Action(tok)  # type: ignore[arg-type]
        if tok in ("jump", "goto"):
            return Action(tok, self.t.take("a chain name"))  # type: ignore[arg-type]
        raise self.t.fail(f"unknown verdict {tok!r}")

    def braced(self, item: Any) -> list[Any]:
        out = []
        while True:
            out.append(item())
            sep = self.t.take("',' or '}'")
            if sep == "}":
                return out
            if sep != ",":
                raise self.t.fail(f"expected ',' or '}}', got {sep!r}")

    def value(self, field: str) -> Value:
        tok = self.t.take("a value")
        if tok == "{":
            return frozenset(self.braced(lambda: self.scalar(field, self.t.take("a value"))))
        if tok.startswith("@"):
            return SetRef(tok[1:])
        return self.scalar(field, tok)

    def scalar(self, field: str, tok: str) -> Value:
        if field in ("iifname", "oifname"):
            if not tok.startswith('"'):
                raise self.t.fail(f"interface names are quoted, got {tok!r}")
            return _unquote(tok)
        if field in ("ip saddr", "ip daddr"):
            addr = parse_address(tok)
            if addr is None:
                raise self.t.fail(f"not an IPv4 address, prefix or range: {tok!r}")
            return addr
        if field in ("tcp dport", "udp dport"):
            if not tok.isdigit() or not 0 <= int(tok) <= 65535:
                raise self.t.fail(f"not a port: {tok!r}")
            return int(tok)
        if field == "ct state":
            states = [tok]
            while self.t.skip(","):
                states.append(self.t.take("a conntrack state"))
            if unknown := set(states) - CT_STATES:
                raise self.t.fail(f"unknown conntrack state(s) {sorted(unknown)}")
            return frozenset(states)
        if field == "ct mark" or unmasked(field) is not None:
            try:
                mark = int(tok, 0)
            except ValueError:
                raise self.t.fail(f"not a mark: {tok!r}") from None
            if not 0 <= mark < 1 << 32:
                raise self.t.fail(f"a mark is 32 bits, got {tok!r}")
            return mark
        if field == TCP_FLAGS and tok in TCP_FLAG_NAMES:
            return tok
        if field == "ct direction" and tok in ("original", "reply"):
            return tok
        if field == "meta nfproto" and tok in ("ipv4", "ipv6"):
            return tok
        if field == "meta l4proto" and tok in ("tcp", "udp", "icmp", "icmpv6"):
            return tok
        if field == "icmp type" and re.fullmatch(r"[a-z-]+", tok):
            return tok
        raise self.t.fail(f"unknown value {tok!r} for {field}")

    def field(self, tok: str) -> str:
        if tok in ("iifname", "oifname"):
            return tok
        if tok == "tcp" and self.t.peek() == "flags" and self.t.peek(1) == "&":
            words = ["tcp"]
            while not words[-1].endswith(")"):
                words.append(self.t.take("the closing ')' of the flag mask"))
            if " ".join(words[:3]) + " " + "".join(words[3:]) != TCP_FLAGS:
                raise self.t.fail(f"only {TCP_FLAGS!r} is known, got {' '.join(words)!r}")
            return TCP_FLAGS
        nxt = self.t.peek()
        name = f"{tok} {nxt}"
        if name in FIELDS:
            self.t.i += 1
            if self.t.skip("&"):
                return self.mask(name)
            return name
        raise self.t.fail(f"unknown expression or statement {tok!r}")

    def mask(self, field: str) -> str:
        """``<field> & <mask>``, the ``&`` taken."""
        tok = self.t.take("a mask")
        try:
            return masked(field, int(tok, 0))
        except ValueError:
            raise self.t.fail(f"cannot mask {field} with {tok!r}") from None

    def mark_set(self) -> CtMarkSet:
        """After ``ct mark set``: ``<n>``, or ``ct mark & <mask> | <n>`` (the bits of ``mask``
        not in ``n`` are kept, as nft computes it)."""
        if self.t.peek() == "ct":
            self.t.i += 1
            self.t.expect("mark")
            self.t.expect("&")
            mask = self.scalar("ct mark", self.t.take("a mask"))
            self.t.expect("|")
            value = self.scalar("ct mark", self.t.take("a mark"))
            assert isinstance(mask, int) and isinstance(value, int)
            if not mask & ~value:
                raise self.t.fail("a masked mark that keeps no bit")
            return CtMarkSet(value, mask & ~value)
        return CtMarkSet(int(self.value("ct mark")))  # type: ignore[arg-type]

    def parse(self) -> Rule:
        exprs: list[Expr] = []
        comment = None
        terminal = False
        while (tok := self.t.peek()) is not None:
            self.t.i += 1
            if tok == "comment":
                comment = _unquote(self.t.take("a comment"))
                continue
            if terminal:
                raise self.t.fail(f"{tok!r} after the rule's verdict")
            if tok == "counter":
                if self.t.skip("packets"):
                    packets = self.t.take("a packet count")
                    self.t.expect("bytes")
                    if not (packets.isdigit() and self.t.take("a byte count").isdigit()):
                        raise self.t.fail("counter values must be numbers")
                exprs.append(Counter())
            elif tok == "limit":
                exprs.append(self.limit())
            elif tok == "log":
                exprs.append(self.log())
            elif tok in VERDICTS:
                exprs.append(self.verdict(tok))
                terminal = True
            elif tok == "ct" and self.t.peek() == "mark" and self.t.peek(1) == "set":
                self.t.i += 2
                exprs.append(self.mark_set())
            elif tok in ("dnat", "snat"):
                self.t.expect("ip")
                self.t.expect("prefix")
                self.t.expect("to")
                target = self.t.take("a prefix")
                try:
                    prefix = IPv4Network(target)
                except ValueError:
                    raise self.t.fail(f"not an IPv4 prefix: {target!r}") from None
                exprs.append(Nat("dnat" if tok == "dnat" else "snat", prefix))
                terminal = True
            else:
                field = self.field(tok)
                if self.t.skip("vmap"):
                    exprs.append(self.vmap(field))
                    terminal = True
                    continue
                negate = self.t.skip("!=")
                self.t.skip("==")
                exprs.append(Match(field, self.value(field), negate))
        return Rule(tuple(exprs), comment)

    def limit(self) -> Limit:
        self.t.expect("rate")
        rate, _, per = self.t.take("a rate").partition("/")
        if not rate.isdigit() or per not in ("second", "minute", "hour", "day"):
            raise self.t.fail(f"not a packet rate: {rate}/{per}")
        burst = 5
        if self.t.skip("burst"):
            text = self.t.take("a burst")
            if not text.isdigit():
                raise self.t.fail(f"not a burst: {text!r}")
            burst = int(text)
            self.t.expect("packets")
        return Limit(int(rate), burst, per)

    def log(self) -> Log:
        self.t.expect("prefix")
        prefix = _unquote(self.t.take("a prefix"))
        self.t.expect("group")
        group = self.t.take("a group")
        if not group.isdigit():
            raise self.t.fail(f"not a log group: {group!r}")
        return Log(prefix, int(group))

    def vmap(self, field: str) -> VMap:
        tok = self.t.take("@map or '{'")
        if tok.startswith("@"):
            return VMap(field, tok[1:])
        if tok != "{":
            raise self.t.fail(f"expected a verdict map, got {tok!r}")

        def entry() -> tuple[str, Action]:
            key = _unquote(self.t.take("an interface name"))
            self.t.expect(":")
            return key, self.verdict(self.t.take("a verdict"))

        return VMap(field, tuple(self.braced(entry)))


@lru_cache(maxsize=8192)
def parse_rule(text: str) -> Rule:
    """One rule's text -> its expressions. Raises ``UnknownRuleForm``."""

    def fail(why: str) -> UnknownRuleForm:
        return UnknownRuleForm(text, why)

    return _RuleParser(_Tokens(text, _tokens(text, fail), fail)).parse()


# --- scripts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command of a script: ``verb`` (add, delete, flush, define), the ``kind`` of object,
    its ``family``/``table``/``name``, and what it carries."""

    verb: str
    kind: str  # table | set | map | chain | rule | element
    family: str
    table: str
    name: str | None = None
    obj: NftSet | NftMap | Chain | None = None
    rule: Rule | None = None
    elements: tuple[Any, ...] = ()
    comment: str | None = None


def _statements(text: str) -> list[list[str]]:
    """A script -> its top-level statements, as tokens. A line break ends a statement, or inside
    braces becomes ';' (which separates the statements of a block); ';' at the top level also
    ends a statement. Comments (``#`` to the end of the line) are dropped."""
    out: list[list[str]] = []
    cur: list[str] = []
    depth = 0
    for raw in text.splitlines():
        line = raw if '"' in raw else raw.split("#", 1)[0]

        def fail(why: str, line: str = raw) -> NftSyntaxError:
            return NftSyntaxError(f"{why} in {line.strip()!r}")

        for tok in _tokens(line, fail):
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth < 0:
                    raise fail("unbalanced '}'")
            if tok == ";" and depth == 0:
                if cur:
                    out.append(cur)
                cur = []
            else:
                cur.append(tok)
        if depth == 0:
            if cur:
                out.append(cur)
            cur = []
        elif cur and cur[-1] != ";":
            cur.append(";")
    if depth != 0:
        raise NftSyntaxError("unbalanced braces at the end of the script")
    return out


def _fail(why: str) -> NftSyntaxError:
    return NftSyntaxError(why)


def _split_body(toks: list[str]) -> list[list[str]]:
    """A block's tokens (between its braces) -> its statements, nested blocks kept whole."""
    out: list[list[str]] = []
    cur: list[str] = []
    depth = 0
    for tok in toks:
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        if tok == ";" and depth == 0:
            if cur:
                out.append(cur)
            cur = []
            continue
        cur.append(tok)
    if cur:
        out.append(cur)
    return out


def _inner(toks: list[str], start: int) -> list[str]:
    """Tokens inside the brace block opening at ``toks[start]``."""
    if start >= len(toks) or toks[start] != "{" or toks[-1] != "}":
        raise _fail(f"expected a block in {' '.join(toks)!r}")
    return toks[start + 1 : -1]


def _elements(toks: list[str], key_type: str) -> tuple[Any, ...]:
    if not toks or toks[0] != "{" or toks[-1] != "}":
        raise _fail(f"expected {{ elements }}, got {' '.join(toks)!r}")
    body = toks[1:-1]
    items: list[list[str]] = [[]]
    for tok in body:
        if tok == ",":
            items.append([])
        elif tok != ";":
            items[-1].append(tok)
    out: list[Any] = []
    for item in items:
        if not item:
            continue
        if key_type == "ifname":
            if len(item) == 1:
                out.append(_unquote(item[0]))
                continue
            if len(item) >= 3 and item[1] == ":":
                kind = item[2]
                target = item[3] if len(item) > 3 else None
                out.append((_unquote(item[0]), Action(kind, target)))  # type: ignore[arg-type]
                continue
            raise _fail(f"bad map element {' '.join(item)!r}")
        if len(item) != 1 or (e := parse_address(item[0])) is None:
            raise _fail(f"not an IPv4 address, prefix or range: {' '.join(item)!r}")
        out.append(e)
    return tuple(out)


def _set_or_map(kind: str, name: str, body: list[str]) -> NftSet | NftMap:
    type_ = "ipv4_addr"
    flags: tuple[str, ...] = ()
    comment = None
    elements: tuple[Any, ...] = ()
    for st in _split_body(body):
        head = st[0]
        if head == "type":
            if kind == "map":
                if st[2:4] != [":", "verdict"]:
                    raise _fail(f"map {name}: only 'type ifname : verdict' is known")
                type_ = st[1]
            else:
                type_ = st[1]
        elif head == "flags":
            flags = tuple(t for t in st[1:] if t != ",")
        elif head == "comment":
            comment = _unquote(st[1])
        elif head == "elements":
            if st[1] != "=":
                raise _fail(f"{kind} {name}: expected 'elements ='")
            elements = _elements(st[2:], "ifname" if kind == "map" else type_)
        else:
            raise _fail(f"{kind} {name}: unknown statement {head!r}")
    if kind == "map":
        return NftMap(name, type_, comment, dict(elements))
    return NftSet(name, type_, flags, comment, frozenset(elements))


def _hook(st: list[str], chain: str) -> Hook:
    # type filter hook forward priority filter ; policy accept
    try:
        type_, hook = st[1], st[3]
        prio_toks = st[5:]
        prio_text = " ".join(prio_toks)
    except IndexError:
        raise _fail(f"chain {chain}: bad hook {' '.join(st)!r}") from None
    m = re.fullmatch(r"([a-z]+|-?\d+)(?: ([+-]) (\d+))?", prio_text)
    if st[0] != "type" or st[2] != "hook" or st[4] != "priority" or m is None:
        raise _fail(f"chain {chain}: bad hook {' '.join(st)!r}")
    base, sign, offset = m.groups()
    value = int(base) if base.lstrip("-").isdigit() else PRIORITIES.get(base)
    if value is None:
        raise _fail(f"chain {chain}: unknown priority {base!r}")
    if offset:
        value += int(offset) if sign == "+" else -int(offset)
    return Hook(type_, hook, value)


def _chain(name: str, body: list[str]) -> Chain:
    hook = None
    comment = None
    policy = "accept"
    rules: list[Rule] = []
    for st in _split_body(body):
        if st[0] == "type":
            hook = _hook(st, name)
        elif st[0] == "policy":
            policy = st[1]
        elif st[0] == "comment" and len(st) == 2:
            comment = _unquote(st[1])
        else:
            rules.append(_rule_of(st))
    if hook is not None:
        hook = Hook(hook.type, hook.hook, hook.priority, policy)
    return Chain(name, tuple(rules), hook, comment)


def _rule_of(toks: list[str]) -> Rule:
    text = " ".join(toks)

    def fail(why: str) -> UnknownRuleForm:
        return UnknownRuleForm(text, why)

    return _RuleParser(_Tokens(text, toks, fail)).parse()


def parse_script(text: str) -> list[Command]:
    """A script -> its commands, in order. Raises ``NftSyntaxError``."""
    commands: list[Command] = []
    for st in _statements(text):
        verb = st[0]
        if verb == "table":
            family, table = st[1], st[2]
            commands.append(Command("add", "table", family, table))
            # nft declares a block's chains before it fills its sets and maps (a verdict map may
            # jump to a chain defined further down), and adds rules last.
            rules: list[Command] = []
            start = len(commands)
            for inner in _split_body(_inner(st, 3)):
                head = inner[0]
                if head == "comment":
                    commands.append(
                        Command("add", "table", family, table, comment=_unquote(inner[1]))
                    )
                elif head in ("set", "map"):
                    obj = _set_or_map(head, inner[1], _inner(inner, 2))
                    commands.append(Command("add", head, family, table, inner[1], obj))
                elif head == "chain":
                    chain = _chain(inner[1], _inner(inner, 2))
                    bare = Chain(chain.name, (), chain.hook, chain.comment)
                    commands.insert(start, Command("add", "chain", family, table, chain.name, bare))
                    start += 1
                    rules.append(Command("add", "chain", family, table, chain.name, chain))
                else:
                    raise _fail(f"table {table}: unknown statement {head!r}")
            commands += rules
            continue
        if verb not in ("add", "delete", "flush", "create", "destroy"):
            raise _fail(f"unknown command {verb!r}")
        kind = st[1]
        if kind == "table":
            rest = st[4:]
            comment = None
            if rest:
                body = _split_body(_inner(st, 4))
                comment = next((_unquote(b[1]) for b in body if b[0] == "comment"), None)
            commands.append(Command(verb, "table", st[2], st[3], comment=comment))
        elif kind in ("set", "map"):
            family, table, name = st[2], st[3], st[4]
            decl = _set_or_map(kind, name, _inner(st, 5)) if verb == "add" else None
            commands.append(Command(verb, kind, family, table, name, decl))
        elif kind == "chain":
            family, table, name = st[2], st[3], st[4]
            declared: Chain | None = None
            if verb == "add":
                declared = _chain(name, _inner(st, 5)) if len(st) > 5 else Chain(name)
            commands.append(Command(verb, "chain", family, table, name, declared))
        elif kind == "rule":
            family, table, target = st[2], st[3], st[4]
            commands.append(Command(verb, "rule", family, table, target, rule=_rule_of(st[5:])))
        elif kind == "element":
            family, table, name = st[2], st[3], st[4]
            commands.append(Command(verb, "element", family, table, name, elements=tuple(st[5:])))
        else:
            raise _fail(f"unknown object {kind!r} in {' '.join(st)!r}")
    return commands


def element_values(tokens: tuple[str, ...], key_type: str) -> tuple[Any, ...]:
    """The elements of an ``add|delete element`` command, for a set of ``key_type``."""
    return _elements(list(tokens), key_type)
