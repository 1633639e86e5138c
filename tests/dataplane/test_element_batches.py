"""Element edits as one nf_tables netlink batch, on the fake and on the real kernel: what the
kernel holds afterwards (read back through libnftables), refusals that change nothing, the
namespace the socket acts in, batches larger than a message and than the socket's buffer, and the
agent's element events end to end."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

import pytest
from nftlab import nft_in, same, three_table

from peerwall.agent.desired import DesiredState
from peerwall.agent.enforcer import Enforcer
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import GatewayState, SetKind
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError
from peerwall.model import SecurityMode, load_topology
from peerwall.nft.fake import FakeNft
from peerwall.nft.netlink import MAX_PER_MESSAGE, SetEdit
from peerwall.nft.objects import render_replace
from support import require_lab

SET = names.peer_set("C2", SetKind.OFFLOADED)


def members(nft: Nft, name: str = SET) -> set[IPv4Address]:
    live = read_table(nft, "inet", "peerwall")
    assert live is not None
    return {IPv4Address(str(e)) for s in live.sets if s.name == name for e in s.elements}


def settled(nft: Nft) -> set[IPv4Address]:
    """``members`` of a big set, read until two reads agree. A listing is a netlink dump in
    chunks, each resuming by skipping as many elements as were sent: when the kernel grows the
    set's hash table between two chunks (it does so in the background after a big insert), the
    order changes and one listing can miss some elements and repeat others."""
    last = members(nft)
    for _ in range(20):
        now = members(nft)
        if now == last:
            return now
        last = now
    return last


def ips(n: int, base: str = "10.250.0.0") -> list[IPv4Address]:
    return [IPv4Address(base) + i for i in range(n)]


def test_edits_reach_the_table_deletes_first_in_one_transaction(any_nft: Nft) -> None:
    any_nft.run(render_replace(three_table()))
    before = members(any_nft)
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=ips(3))])
    assert members(any_nft) == before | set(ips(3))
    # The same address deleted and added in one batch: deleted first, so it stays.
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=ips(1), delete=ips(2))])
    assert members(any_nft) == before | {ips(3)[0], ips(3)[2]}
    # Adding what is there is no error (nft's ``add``, not ``create``).
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=ips(1))])
    assert members(any_nft) == before | {ips(3)[0], ips(3)[2]}


def test_a_refused_batch_changes_nothing_and_says_why(any_nft: Nft) -> None:
    any_nft.run(render_replace(three_table()))
    want = read_table(any_nft, "inet", "peerwall")
    other = names.peer_set("C3", SetKind.OFFLOADED)
    with pytest.raises(NftError, match="No such file or directory"):
        # A good add in one set, a delete of an absent address in another: neither happens.
        any_nft.edit_elements(
            "inet",
            "peerwall",
            [SetEdit(SET, add=ips(2)), SetEdit(other, delete=[IPv4Address("10.251.0.1")])],
        )
    with pytest.raises(NftError, match="No such file or directory"):
        any_nft.edit_elements("inet", "peerwall", [SetEdit("no-such-set", add=ips(1))])
    assert same(read_table(any_nft, "inet", "peerwall"), want)
    # The socket is fine after a refusal: the next batch gets its own answers.
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=ips(1))])
    assert ips(1)[0] in members(any_nft)


def test_a_batch_larger_than_a_message_and_the_socket_buffer_is_one_transaction(
    any_nft: Nft,
) -> None:
    any_nft.run(render_replace(three_table()))
    before = members(any_nft)
    many = ips(6 * MAX_PER_MESSAGE + 17)  # ~390 KB: past the default 208 KiB send buffer
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=many)])
    assert settled(any_nft) == before | set(many)
    with pytest.raises(NftError):
        any_nft.edit_elements(
            "inet", "peerwall", [SetEdit(SET, delete=[*many, IPv4Address("10.252.0.1")])]
        )
    assert settled(any_nft) == before | set(many)
    any_nft.edit_elements("inet", "peerwall", [SetEdit(SET, delete=many)])
    assert settled(any_nft) == before


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    require_lab()
    made = [f"pw-t-{secrets.token_hex(4)}" for _ in range(2)]
    try:
        for name in made:
            subprocess.run(["ip", "netns", "add", name], check=True)
        yield made[0], made[1]
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.mark.lab
def test_a_refused_one_element_batch_names_its_set_and_verb(netns: str) -> None:
    # One address is encoded without the per-message record that names a refusal (the event
    # path); the record is made only when the kernel refuses, and must name the right message.
    absent = IPv4Address("10.251.0.1")
    with LibNft(netns) as nft:
        nft.run(render_replace(three_table()))
        want = read_table(nft, "inet", "peerwall")
        for edit, said in (
            (SetEdit(SET, delete=[absent]), f"delete of 1 element(s) in set inet peerwall {SET}"),
            (SetEdit("no-such-set", add=[absent]), "add of 1 element(s) in set inet peerwall no-"),
        ):
            with pytest.raises(NftError) as refused:
                nft.edit_elements("inet", "peerwall", [edit])
            assert "No such file or directory" in str(refused.value)
            assert said in str(refused.value)
            assert same(read_table(nft, "inet", "peerwall"), want)
        nft.edit_elements("inet", "peerwall", [SetEdit(SET, add=[absent])])  # the socket is fine
        assert absent in members(nft)


@pytest.mark.lab
def test_the_socket_acts_in_its_context_namespace_only(two_namespaces: tuple[str, str]) -> None:
    one, two = two_namespaces
    root_before = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    with LibNft(one) as a, LibNft(two) as b:
        a.run(render_replace(three_table()))
        b.run(render_replace(three_table()))
        a.edit_elements("inet", "peerwall", [SetEdit(SET, add=ips(1))])
        assert ips(1)[0] in members(a)
        assert ips(1)[0] not in members(b)
    assert str(ips(1)[0]) in nft_in(one, "list", "set", "inet", "peerwall", SET)
    assert str(ips(1)[0]) not in nft_in(two, "list", "set", "inet", "peerwall", SET)
    root = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert str(ips(1)[0]) not in root and root == root_before


class Recording:
    """An ``Nft`` that records which path each transaction took."""

    def __init__(self, inner: Nft) -> None:
        self.inner = inner
        self.scripts = 0
        self.batches = 0

    def run(self, script: str) -> None:
        self.scripts += 1
        self.inner.run(script)

    def apply(self, tx) -> None:  # type: ignore[no-untyped-def]
        self.scripts += 1
        self.inner.apply(tx)

    def list_json(self, command: str):  # type: ignore[no-untyped-def]
        return self.inner.list_json(command)

    def edit_elements(self, family: str, table: str, edits) -> None:  # type: ignore[no-untyped-def]
        self.batches += 1
        self.inner.edit_elements(family, table, edits)

    def __getattr__(self, name: str) -> Any:  # the read-back's other questions
        return getattr(self.inner, name)


def three() -> GatewayState:
    text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
    return gateway_state(load_topology(text, "three"), "C1", SecurityMode.FULL_POD_TO_POD)


@pytest.mark.parametrize("seed", range(3))
def test_agent_element_events_go_as_batches_and_the_kernel_ends_equal(
    any_nft: Nft, seed: int
) -> None:
    rnd = random.Random(seed)
    state = three()
    nft = Recording(any_nft)
    enforcer = Enforcer(nft)  # type: ignore[arg-type]
    desired = DesiredState(state.cluster, state.tunnel_pattern, state.conncheck_port)
    desired.load(state)
    assert enforcer.sync(desired).kind == "full"
    scripts = nft.scripts
    keys: list[str] = []
    peers = list(state.peers)
    for step in range(80):
        if rnd.random() < 0.6 or not keys:
            key = f"pod/{step}"
            keys.append(key)
            addresses = [IPv4Address(f"10.244.{rnd.randint(0, 3)}.{rnd.randint(1, 250)}")]
            desired.contribute(key, rnd.choice(peers), rnd.choice(list(SetKind)), addresses)
        else:
            desired.withdraw(keys.pop(rnd.randrange(len(keys))))
        if rnd.random() < 0.7:
            assert enforcer.sync(desired).kind in ("elements", "")
    enforcer.sync(desired)
    assert nft.scripts == scripts and nft.batches > 0  # no script after the first table
    assert same(read_table(any_nft, "inet", "peerwall"), build(desired.snapshot()))
    # A mode change still goes through libnftables (the cidrs set is an interval set).
    name = peers[0]
    desired.upsert_peer(
        replace(state.peers[name], mode=SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION)
    )
    assert enforcer.sync(desired).kind == "mode" and nft.scripts == scripts + 1
    assert same(read_table(any_nft, "inet", "peerwall"), build(desired.snapshot()))


def test_a_kernel_that_lost_an_element_makes_the_event_fall_back_to_a_whole_table(
    any_nft: Nft,
) -> None:
    state = three()
    enforcer = Enforcer(any_nft)
    desired = DesiredState(state.cluster, state.tunnel_pattern, state.conncheck_port)
    desired.contribute("pod/x", "C2", SetKind.OFFLOADED, [IPv4Address("10.244.9.9")])
    desired.load(state)
    enforcer.sync(desired)
    # Someone deletes the element behind the agent's back; the agent's delete is then refused.
    any_nft.run(f"delete element inet peerwall {SET} {{ 10.244.9.9 }}\n")
    desired.withdraw("pod/x")
    assert enforcer.sync(desired).kind == "failed"
    assert enforcer.sync(desired).kind == "full"
    assert same(read_table(any_nft, "inet", "peerwall"), build(desired.snapshot()))
    assert isinstance(any_nft, FakeNft | LibNft)


DROPPED = """
from ipaddress import IPv4Address
from peerwall.nft.netlink import SetEdit
from peerwall.dataplane.netlink import NetlinkSets
from peerwall.errors import NftError
try:
    NetlinkSets().edit("inet", "peerwall", [SetEdit("s", add=[IPv4Address("10.9.9.9")])])
except NftError as e:
    print(f"refused: {e}")
"""


@pytest.mark.lab
def test_without_cap_net_admin_the_batch_is_refused_at_once_with_the_reason(netns: str) -> None:
    # The kernel refuses the whole batch at its header (EPERM) and answers nothing else: the
    # refusal is read and reported as such, not as an acknowledgement that never came.
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "capsh", "--drop=cap_net_admin", "--",
         "-c", f"exec {sys.executable} -c '{DROPPED}'"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "refused: " in done.stdout, done.stderr
    assert "Operation not permitted" in done.stdout
