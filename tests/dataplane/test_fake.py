"""The in-memory nft behaves as the kernel does on the scripts peerwall writes (a differential
test: the same scripts, failures included, on both, read back the same)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from nftlab import FULL, same, seed_table, three_table

from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import plain, read_table
from peerwall.errors import NftError
from peerwall.nft.fake import FakeNft
from peerwall.nft.listing import parse_table
from peerwall.nft.objects import render_replace, render_table
from peerwall.nft.transaction import (
    AddElements,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    Operation,
    Transaction,
    delete_table,
    diff,
    replace_table,
)

BACKENDS = names.peer_set("C2", SetKind.BACKENDS)
SCRIPTS = [
    render_replace(seed_table()),
    f"add element inet peerwall {BACKENDS} {{ 10.244.3.3 }}\n",
    f"add element inet peerwall {BACKENDS} {{ 10.244.3.3 }}\n",  # adding twice is fine
    f"delete element inet peerwall {BACKENDS} {{ 10.244.9.9 }}\n",  # missing: refused
    f"add element inet peerwall {BACKENDS} {{ 10.244.0.0/24 }}\n",  # a range in a hash set
    f"delete chain inet peerwall {names.peer_chain('C2')}\n",  # still referenced: refused
    f"delete set inet peerwall {BACKENDS}\n",  # still referenced: refused
    diff(seed_table(), seed_table(mode=FULL)).script,
    render_table(seed_table()),  # a table block over an existing table appends its rules
    render_replace(three_table()),
    "add table inet peerwall\nadd chain inet peerwall c\nadd rule inet peerwall nope accept\n",
    'add rule inet peerwall filter-forward tcp dport 22 counter accept comment "ssh"\n',
    "flush table inet peerwall\n",
    "delete table inet peerwall\n",
    "delete table inet peerwall\n",  # missing: refused
]


def read_side(backend: Nft) -> tuple[object, ...]:
    """What the read-back asks of a backend besides the whole listing: the tables and their
    flags, the terse family listing, each plain set's addresses."""
    tables = backend.table_flags("inet")
    if ("inet", "peerwall") not in tables:
        return (tables,)
    shape = parse_table(backend.list_json_terse("list ruleset inet"), "inet", "peerwall")
    addresses = {}
    for s in shape.sets:
        if plain(s):
            found = backend.set_addresses("inet", "peerwall", s.name)
            addresses[s.name] = None if found is None else sorted(found)
    return tables, shape.sets, shape.maps, shape.chains, addresses


@pytest.mark.lab
def test_the_fake_and_the_kernel_agree_script_by_script(nft: LibNft) -> None:
    fake = FakeNft()
    for i, script in enumerate(SCRIPTS):
        outcomes = []
        for backend in (fake, nft):
            generation, was = backend.generation(), read_table(backend, "inet", "peerwall")
            try:
                backend.run(script)
                outcomes.append("ok")
            except NftError:
                outcomes.append("refused")
            # A refused transaction leaves the generation; a change bumps it (the kernel's does
            # not bump for a transaction that changes nothing, the fake's does: either is safe
            # for the read-back, which only needs "unchanged generation: unchanged ruleset").
            bumped = backend.generation() != generation
            if outcomes[-1] == "refused":
                assert not bumped, (i, backend)
            else:
                assert bumped or read_table(backend, "inet", "peerwall") == was, (i, backend)
        assert outcomes[0] == outcomes[1], (i, script, outcomes)
        assert same(read_table(fake, "inet", "peerwall"), read_table(nft, "inet", "peerwall")), (
            i,
            script,
        )
        assert read_side(fake) == read_side(nft), (i, script)


def _on_peerwall(*ops: Operation) -> Transaction:
    return Transaction("inet", "peerwall", ops)


TRANSACTIONS = [
    replace_table(seed_table()),
    _on_peerwall(AddElements(BACKENDS, (IPv4Address("10.244.3.3"),))),
    _on_peerwall(AddElements(BACKENDS, (IPv4Address("10.244.3.3"),))),  # adding twice is fine
    _on_peerwall(DeleteElements(BACKENDS, (IPv4Address("10.244.9.9"),))),  # missing: refused
    _on_peerwall(DeleteChain(names.peer_chain("C2"))),  # still referenced: refused
    _on_peerwall(DeleteSet(BACKENDS)),  # still referenced: refused
    _on_peerwall(AddElements("no-such-set", (IPv4Address("10.0.0.1"),))),  # refused
    diff(seed_table(), seed_table(mode=FULL)),
    diff(seed_table(mode=FULL), three_table()),
    diff(three_table(), seed_table()),
    replace_table(three_table()),
    delete_table("inet", "peerwall"),
    delete_table("inet", "peerwall"),  # missing: refused
]


@pytest.mark.lab
def test_the_fake_applies_operations_as_the_kernel_runs_their_script(nft: LibNft) -> None:
    """The fake applies a transaction's typed operations without writing or parsing text; the
    kernel runs the same transaction's script: refused or not, both read back the same."""
    fake = FakeNft()
    for i, tx in enumerate(TRANSACTIONS):
        outcomes = []
        try:
            fake.apply(tx)
            outcomes.append("ok")
        except NftError:
            outcomes.append("refused")
        try:
            nft.run(tx.script)
            outcomes.append("ok")
        except NftError:
            outcomes.append("refused")
        assert outcomes[0] == outcomes[1], (i, tx.script, outcomes)
        assert same(read_table(fake, "inet", "peerwall"), read_table(nft, "inet", "peerwall")), (
            i,
            tx.script,
        )
