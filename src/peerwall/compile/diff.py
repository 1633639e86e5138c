"""The smallest nft transaction that turns one ruleset into the next.

Rules are static and sets are dynamic: when only set elements changed, the transaction edits
elements and leaves chains (and their counters) alone; any other change replaces the whole table.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerwall.compile.ruleset import Chain, NftSet, Ruleset, render_elements, render_replace


@dataclass(frozen=True)
class Transaction:
    """One nft script, applied as one atomic kernel transaction.

    ``added``/``removed`` count set elements that enter/leave the table, whatever the script's
    shape: a full replace rewrites every element but still reports only the net change.
    """

    script: str
    full: bool
    added: int
    removed: int

    @property
    def empty(self) -> bool:
        return self.script == ""


EMPTY = Transaction("", full=False, added=0, removed=0)


def same_skeleton(a: Ruleset, b: Ruleset) -> bool:
    """Equal skeletons, regardless of the order of sets and chains.

    nft lists sets, then chains, each in creation order; a table built in another order is the
    same table, and must not force a full replace.
    """
    return _shape(a.skeleton()) == _shape(b.skeleton())


def _shape(rs: Ruleset) -> tuple[str, str, dict[str, NftSet], dict[str, Chain]]:
    return rs.family, rs.table, {s.name: s for s in rs.sets}, {c.name: c for c in rs.chains}


def _element_delta(old: Ruleset | None, new: Ruleset) -> tuple[int, int]:
    before = {s.name: s.elements for s in old.sets} if old else {}
    after = {s.name: s.elements for s in new.sets}
    added = sum(len(e - before.get(n, frozenset())) for n, e in after.items())
    removed = sum(len(e - after.get(n, frozenset())) for n, e in before.items())
    return added, removed


def _render(elements: frozenset[str]) -> str:
    try:
        return render_elements(elements)
    except ValueError:
        # A live set may hold what peerwall never writes (a range "a-b" added by hand); it must
        # still be deletable, in whatever order.
        return "{ " + ", ".join(sorted(elements)) + " }"


def diff(old: Ruleset | None, new: Ruleset, *, force_full: bool = False) -> Transaction:
    """The transaction from ``old`` (``None``: no table) to ``new``; empty if they are equal.

    ``force_full`` asks for a full replace even when element edits would do (after a failure).
    """
    added, removed = _element_delta(old, new)
    if force_full or old is None or not same_skeleton(old, new):
        return Transaction(render_replace(new), full=True, added=added, removed=removed)
    prefix = f"{new.family} {new.table}"
    deletes: list[str] = []
    adds: list[str] = []
    for s in new.sets:
        before = old.set(s.name).elements
        if gone := before - s.elements:
            deletes.append(f"delete element {prefix} {s.name} {_render(gone)}")
        if came := s.elements - before:
            adds.append(f"add element {prefix} {s.name} {_render(came)}")
    if not deletes and not adds:
        return EMPTY
    # Deletes first: an interval set refuses an element that overlaps one still present, e.g.
    # the pod CIDR added while single pod IPs inside it are only deleted later in the script.
    script = "\n".join(deletes + adds) + "\n"
    return Transaction(script, full=False, added=added, removed=removed)
