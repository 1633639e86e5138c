"""The fault suite's bookkeeping: each test says which fault it drove and how long recovery took
(``fault.recovered(seconds)``), and, when ``PEERWALL_FAULTS_RESULTS`` names a file, the session
writes every record there; ``tests/faults/report.py`` turns it into docs/RELIABILITY.md.

A test passes only if nothing denied passed after the fault's window and no allowed established
flow was cut (its assertions), so a passing record's "opened" and "lost" are 0 by construction; a
failing test's record carries its failure, and the report shows it as FAILED.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from importlib import resources

import pytest
from faultkit import SEG, FaultRecord

from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.model import load_topology
from peerwall.settings import LabSettings

RESULTS_ENV = "PEERWALL_FAULTS_RESULTS"


_records: list[FaultRecord] = []


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Iterator[FaultRecord]:
    doc = (request.function.__doc__ or "").strip().splitlines()
    name = doc[0] if doc else request.node.name.removeprefix("test_").replace("_", " ")
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None:
        name += f" ({callspec.id})"
    record = FaultRecord(name, request.node.nodeid)
    yield record
    report = getattr(request.node, "rep_call", None)
    record.load.append(os.getloadavg()[0])
    if report is not None and report.passed:
        _records.extend([record] if record.tries or not record.parts else [])
        _records.extend(record.parts)
    elif report is not None and report.failed:  # a finding: in the report as FAILED, not left out
        crash = getattr(report.longrepr, "reprcrash", None)
        message = getattr(crash, "message", None) or str(report.longrepr)
        record.failed = " ".join(message.split())[:300]
        _records.append(record)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path or not _records:
        return
    previous = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(previous + [_row(r) for r in _records], f, indent=1)


def _row(record: FaultRecord) -> dict[str, object]:
    row = dict(record.__dict__)
    del row["parts"]
    return row


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPlan]:
    """One three-cluster lab (segregation) for every case of a module: the held faults share it,
    each case leaving it as it found it (its mode, its agents, its table). Removed at the end."""
    settings = {"agent_resync_interval": 1}
    folder = tmp_path_factory.mktemp("labs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEERWALL_STATE_DIR", str(folder))
        name = f"t{secrets.token_hex(3)}"
        text = resources.files("peerwall").joinpath("examples/three-clusters.yaml").read_text()
        lab = LabSettings(**settings)  # type: ignore[arg-type]
        try:
            yield labs.up(name, load_topology(text, "three-clusters.yaml"), text, "test", SEG, lab)
        finally:
            labs.down(name, lab)
