"""Every benchmark still runs: ``bench/run.py --smoke`` at tiny sizes, into a scratch folder.

A change elsewhere can break a benchmark without any test noticing (the table owner's ``Source``
protocol once broke the event and churn benchmarks, found only by the next ``make bench``). Here
each benchmark runs at a size that takes seconds, its result is checked for the keys
``bench/report.py`` reads (never its figures: at these sizes they mean nothing, and a missed
target is not a failure), and the report is rendered from them. The benchmarks that build a
whole lab (verify, lab, live, repair, supervised, flowlog, endpoint) cost tens of CPU seconds
even tiny: ``make bench`` and ``bench/run.py --smoke`` run them, this test does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"

KEYS: dict[str, tuple[str, ...]] = {
    "event": ("sizes", "machine"),
    "churn": ("contenders", "machine"),
    "truthtable": ("sizes", "scale", "machine"),
    "memory": ("rss", "processes", "targets", "elements"),
    "policy": ("load", "expect", "json"),
    "probe": ("probes_per_s", "pods", "probes"),
    "watch": ("rows", "machine"),
    "conntrack": ("mixes", "targets"),
}
"""The benchmarks run here and what each result must hold (what ``report.py`` reads)."""


@pytest.mark.lab
def test_every_benchmark_runs_and_reports(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--results", str(results), "--only", ",".join(KEYS)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = (done.stdout + done.stderr)[-4000:]
    run = json.loads((results / "run.json").read_text())
    assert run["smoke"], log
    # "failed" also lists a benchmark that ran to its end but missed a target at this size: a
    # result file with every key is what shows it ran.
    for name, keys in KEYS.items():
        path = results / f"{name}.json"
        assert path.exists(), f"{name}: no result\n{log}"
        result = json.loads(path.read_text())
        missing = [k for k in keys if k not in result]
        assert not missing, f"{name}: result without {missing}\n{log}"
        # Every result states the load it ran under, and what other processes ran meanwhile.
        assert {"start", "max_1min", "others_cpus", "under_load"} <= result["loadavg"].keys(), name
    memory = json.loads((results / "memory.json").read_text())
    assert {p["source"] for p in memory["processes"]} == {"file", "kubernetes"}
    conntrack = json.loads((results / "conntrack.json").read_text())
    assert all(r["entries"] > 0 for r in conntrack["mixes"].values())
    report = (results / "RESULTS.md").read_text()
    for heading in ("## Targets", "## 6. Memory", "## 10. Flow cleanup"):
        assert heading in report, heading
    assert "a **quick** run" in report
    # Nothing of the smoke run went to the real results.
    assert not (ROOT / "bench" / "results" / "run.json").read_text().count('"smoke": true')
