"""The cell prober's own logic: verdicts from probe results, and the open-file budget."""

from __future__ import annotations

import subprocess
import sys

from peerwall.policy import Verdict
from peerwall.probe.netns_prober import Outcome, Probe, ProbeResult
from peerwall.probe.run import FD_MARGIN, CellProbe, verdict_of


def result(outcome: Outcome, identity: str | None = None) -> ProbeResult:
    return ProbeResult(Probe("ns", "10.0.0.1", 80), outcome, identity, "", 0.0)


def cell(*expected: str | None) -> CellProbe:
    probes = tuple(Probe("ns", "10.0.0.1", 80, 20000 + i) for i in range(len(expected)))
    return CellProbe("a", "b", probes, expected)


def test_a_service_is_partial_when_only_some_backends_answer() -> None:
    c = cell("p1", "p2")
    ok, blocked = result(Outcome.CONNECTED, "p1"), result(Outcome.BLOCKED)
    assert verdict_of(c, [ok, blocked]) is Verdict.PARTIAL
    assert verdict_of(c, [ok, result(Outcome.CONNECTED, "p2")]) is Verdict.YES
    assert verdict_of(c, [blocked, result(Outcome.UNREACHABLE)]) is Verdict.NO


def test_reaching_someone_else_is_not_reaching_the_destination() -> None:
    assert verdict_of(cell("p1"), [result(Outcome.CONNECTED, "p9")]) is Verdict.NO


def test_refusals_and_setup_errors_are_not_blocks() -> None:
    assert verdict_of(cell("p1"), [result(Outcome.REFUSED)]) is Verdict.ERROR
    assert (
        verdict_of(cell("p1", "p2"), [result(Outcome.CONNECTED, "p1"), result(Outcome.ERROR)])
        is Verdict.ERROR
    )


def test_a_service_without_backends_must_not_answer() -> None:
    assert verdict_of(cell(None), [result(Outcome.BLOCKED)]) is Verdict.NO
    assert verdict_of(cell(None), [result(Outcome.CONNECTED, "x")]) is Verdict.YES


def test_concurrency_is_capped_by_the_open_file_limit() -> None:
    # In a child process: a lowered hard limit cannot be raised back.
    code = f"""
import resource
from peerwall.probe.run import fd_budget
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))
assert fd_budget(listeners=100, wanted=2000) == 512 - 100 - {FD_MARGIN}
assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 512
assert fd_budget(listeners=10, wanted=50) == 50
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
