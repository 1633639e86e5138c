"""The truth table under Liqo's reflection policy (issue 17.3): a service not reflected to a
provider does not exist there (DESIGN §1: a service cell is decided "only if v exists in A"), and
under segregation its backends are not "backends of a service of R whose namespace is offloaded
to A" for that provider. Exactly those cells change against the same file without the fields."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.policy import Verdict, expect
from peerwall.policy.explain import explain_cell

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
NO, YES = Verdict.NO, Verdict.YES

C1_PODS = ("P1", "P2", "P3")
C2_PODS = ("P4", "P5", "P6", "P7")


def example(strip: bool = False) -> Topology:
    data = yaml.safe_load(
        resources.files("peerwall").joinpath("examples/reflection.yaml").read_text()
    )
    if strip:
        for item in (*data["peerings"], *data["services"]):
            item.pop("reflection", None)
    return load_topology(yaml.safe_dump(data))


def changed(mode: SecurityMode) -> dict[tuple[str, str], tuple[Verdict, Verdict]]:
    before = expect(example(strip=True), mode).table
    after = expect(example(), mode).table
    return {(s, d): (before[s, d], v) for s, d, v in after.cells() if before[s, d] is not v}


def test_full_pod_to_pod_loses_only_the_unreflected_services() -> None:
    want = {(s, "S4"): (YES, NO) for s in C2_PODS}  # AllowList, S4 not marked: absent in c2
    want |= {(s, "S6"): (YES, NO) for s in C1_PODS}  # DenyList, S6 marked skip: absent in c1
    assert changed(FULL) == want


def test_segregation_also_closes_their_backends_to_that_provider() -> None:
    want = {(s, "S4"): (YES, NO) for s in C2_PODS}
    want |= {(s, "S6"): (YES, NO) for s in C1_PODS}
    want |= {(s, "P3"): (YES, NO) for s in C2_PODS}  # P3 backs only S4
    want |= {(s, "P6"): (YES, NO) for s in C1_PODS}  # P6 backs only S6
    assert changed(SEG) == want
    # The reflected ones keep their backends open: S2 (allow) and S7 (DenyList, unmarked).
    table = expect(example(), SEG).table
    assert all(table[s, "P2"] is YES and table[s, "S2"] is YES for s in C2_PODS)
    assert all(table[s, "P7"] is YES and table[s, "S7"] is YES for s in C1_PODS)


@pytest.mark.parametrize(
    ("src", "dst", "mode", "reason"),
    [
        (
            "P4",
            "S4",
            FULL,
            "service-absent: S4 exists only in c1, not in c2 where P4 runs (S4 is not reflected "
            "to c2: c1's virtual kubelet for c2 reflects under AllowList and S4 is not marked "
            "liqo.io/allow-reflection)",
        ),
        (
            "P1",
            "P6",
            SEG,
            "segregation-denied: P6 was not offloaded by c1 and backs no service of c2 reflected "
            "to c1; S6 is not reflected to c1: c2's virtual kubelet for c1 reflects under "
            "DenyList and S6 is marked liqo.io/skip-reflection",
        ),
        (
            "P4",
            "P2",
            SEG,
            "segregation-reflected-backend: P2 backs service S2 of c1, whose namespace "
            "'offloaded' is offloaded to c2",
        ),
    ],
)
def test_explain_says_why_a_service_is_not_reflected(
    src: str, dst: str, mode: SecurityMode, reason: str
) -> None:
    e = explain_cell(example(), src, dst, mode)
    assert f"{e.rule}: {e.reason}" == reason
