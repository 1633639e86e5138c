"""Fuzzing down to the kernel (issue 14, item 9): the damaged Liqo object sequences of
``test_fuzz_kube`` drive the real enforcer into a real nftables table, one transaction per few
objects. After every transaction the live table is exactly the desired one (read back, no
drift); a transaction the kernel refuses leaves the table as it was (never half applied). Fewer
examples than the pure fuzzers (``hypothesis_profiles.BUDGETS["fuzz-kernel"]``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from fuzz.test_fuzz_kube import new_join, operations, quiet, run_operations
from hypothesis_profiles import budget
from peerwall.agent.enforcer import Enforcer
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.dataplane.drift import drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.errors import NftError
from peerwall.nft.objects import render_replace

pytestmark = pytest.mark.lab


def live(nft: LibNft) -> Any:
    return read_table(nft, names.FAMILY, names.TABLE)


# One namespace for every example, on purpose: each one starts with a whole-table replace over
# whatever the previous one left, as an agent restarting over an old table does.
@budget("fuzz-kernel", suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operations, min_size=1, max_size=4))
def test_damaged_objects_reach_the_kernel_whole_or_not_at_all(
    nft: LibNft, batches: list[list[Any]]
) -> None:
    m = new_join(per_peer_tunnels=True)
    enforcer = Enforcer(nft)
    for ops in [[], *batches]:
        with quiet():
            run_operations(m, ops)
        step = enforcer.sync(m.desired)
        assert step.kind != "failed", "a state the source produced was refused by the kernel"
        desired = build(m.desired.snapshot())
        assert drift(live(nft), desired) == []
    # A refused transaction changes nothing: the whole table plus one bad line.
    before = live(nft)
    bad = render_replace(desired) + "add element inet peerwall nope { 1.2.3.4 }\n"
    with pytest.raises(NftError):
        nft.run(bad)
    assert live(nft) == before
