"""Run every benchmark in one go and write bench/RESULTS.md: ``make bench`` (as root).

Each benchmark is a script under bench/ that prints a summary and, last, one JSON line; most also
write bench/results/<name>.json (with plots next to them). This runner runs them one after the
other (each alternates its own contenders inside), keeps the last line of those that write no file
of their own, then renders RESULTS.md from bench/results (``report.py``). It exits 1 if a
benchmark fails or misses a target.

    python bench/run.py                 # everything, full sizes (about 9–10 minutes on 2 cores)
    python bench/run.py --only event,churn
    python bench/run.py --quick         # small sizes, to try the machinery (not for RESULTS.md)
    python bench/run.py --smoke --results DIR   # tiny sizes: does every benchmark still run?

``--smoke`` runs each benchmark at a tiny size (``SMOKE``), into ``--results`` (not bench/results:
its figures mean nothing), and renders the report there: ``tests/bench/test_bench_smoke.py``
runs it in ``make test``, so that a change that breaks a benchmark fails the suite.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES: dict[str, list[str]] = {
    "event": ["event_bench.py"],
    "churn": ["churn_bench.py"],
    "dataplane": ["dataplane_bench.py"],
    "verify": ["verify_bench.py"],
    "truthtable": ["truthtable_bench.py"],
    "memory": ["memory_bench.py"],
    "policy": ["policy_bench.py"],
    "probe": ["probe_throughput.py", "--pods", "50", "--probes", "20000"],
    "lab": ["lab_bench.py", "--pods", "200"],
    "live": ["live_edits_bench.py"],
    "watch": ["watch_bench.py"],
    "repair": ["repair_bench.py"],
    "endpoint": ["endpoint_bench.py"],
    "flowlog": ["flowlog_bench.py"],
    "supervised": ["supervised_bench.py", "--kills", "20"],
    "conntrack": ["conntrack_bench.py"],
}
QUICK: dict[str, list[str]] = {
    "event": ["--sizes", "1000,10000", "--peerwall-only", "50000", "--events", "400",
              "--baseline-reps", "2,1", "--restore-events", "10", "--hog-events", "400"],
    "churn": ["--events", "2000", "--base", "2000", "--reps", "1", "--baseline-events", "1",
              "--restore-events", "10"],
    "dataplane": ["--sizes", "0,10000", "--reps", "2", "--seconds", "0.3", "--iperf-reps", "1"],
    "verify": ["--reps", "1", "--sequential", "5", "--connect-only", "20", "--parallel", "20"],
    "truthtable": ["--sizes", "2000,10000", "--reps", "1", "--scale-sizes", "10000,30000"],
    "memory": ["--pods", "5000", "--services", "500", "--reps", "1", "--process-sizes", "5000"],
    "policy": ["--pods", "2000", "--services", "200", "--repeat", "1"],
    "probe": ["--probes", "5000"],
    "lab": ["--pods", "50"],
    "watch": ["--peers", "1,10"],
    "live": [],  # already quick (about 30 s); fewer rounds would miss the 30 edits it checks
    "repair": ["--deletions", "10"],
    "endpoint": ["--switches", "5", "--blocks", "1"],
    "flowlog": ["--reps", "1", "--seconds", "0.5", "--switches", "4", "--switch-pairs", "2",
                "--events", "5000"],
    "supervised": ["--kills", "3"],
    "conntrack": ["--entries", "20000"],
}  # fmt: skip
SMOKE: dict[str, list[str]] = {
    "event": ["--sizes", "200", "--peerwall-only", "", "--events", "20", "--baseline-reps", "1",
              "--restore-events", "2", "--hog-events", "20"],
    "churn": ["--events", "60", "--base", "60", "--reps", "1", "--baseline-events", "1",
              "--restore-events", "2"],
    "dataplane": ["--sizes", "0,100", "--reps", "1", "--seconds", "0.1", "--iperf-reps", "1",
                  "--iperf-seconds", "1"],
    "verify": ["--pods", "8", "--services", "2", "--reps", "1", "--sequential", "2",
               "--connect-only", "2", "--parallel", "2"],
    "truthtable": ["--sizes", "200", "--reps", "1", "--clusters", "4", "--scale-sizes",
                   "1000,2000"],
    "memory": ["--pods", "200", "--services", "20", "--reps", "1", "--process-sizes", "200"],
    "policy": ["--clusters", "4", "--pods", "200", "--services", "20", "--json-pods", "50",
               "--repeat", "1"],
    "probe": ["--pods", "4", "--probes", "100"],
    "lab": ["--pods", "8", "--services", "2"],
    "live": ["--rounds", "1"],
    "watch": ["--peers", "1"],
    "repair": ["--deletions", "2"],
    "endpoint": ["--switches", "2", "--blocks", "1", "--slow", "10", "--scrapers", "2"],
    "flowlog": ["--reps", "1", "--seconds", "0.1", "--switches", "1", "--switch-pairs", "1",
                "--events", "200"],
    "supervised": ["--kills", "1"],
    "conntrack": ["--entries", "50"],
}  # fmt: skip
"""Tiny sizes: seconds each, figures meaningless; every code path of the benchmark still run."""


PR_SET_CHILD_SUBREAPER = 36
"""<linux/prctl.h>."""


def _reap_orphans() -> None:
    """Wait for every descendant that ended and was handed to this process (a subreaper)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", help="comma-separated benchmark names")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (give --results)")
    ap.add_argument("--results", type=Path, help="write results here, not in bench/results")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    if args.smoke and not args.results:
        ap.error("--smoke writes its meaningless figures elsewhere: give --results DIR")
    if args.results:
        # Read by common.py and report.py in this process and in every benchmark's.
        os.environ["PEERWALL_BENCH_RESULTS"] = str(args.results.resolve())
    from common import RESULTS

    names = args.only.split(",") if args.only else list(BENCHES)
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    from common import LoadWatch
    from report import commit_line

    measured = commit_line()  # the code measured: taken before anything runs
    # The daemons a benchmark starts (a lab's agents and supervisors leave their parent) are
    # its own work: as a subreaper, this process inherits them, and reaps them
    # (``_reap_orphans``), so that their CPU time is the benchmark's, not other processes'.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    for name in names:
        argv = [sys.executable, str(HERE / BENCHES[name][0]), *BENCHES[name][1:]]
        if args.quick:
            argv += QUICK.get(name, [])
        if args.smoke:
            argv += SMOKE[name]
        print(f"== {name}: {' '.join(argv[1:])}", flush=True)
        path = RESULTS / f"{name}.json"
        before = path.stat().st_mtime if path.exists() else None
        t = time.perf_counter()
        watch = LoadWatch()
        # stderr (progress lines) goes straight through; stdout is kept for the result line.
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
        _reap_orphans()
        timings[name] = time.perf_counter() - t
        sys.stdout.write(done.stdout)
        lines = done.stdout.strip().splitlines()
        try:
            last = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"{name}: no result line (exit {done.returncode})", file=sys.stderr)
            failed.append(name)
            continue
        wrote = path.exists() and path.stat().st_mtime != before
        if not wrote:
            path.write_text(json.dumps(last, indent=1) + "\n")
        stored = json.loads(path.read_text())
        if isinstance(stored, dict):
            # Measured from here, the benchmark's parent: its processes are all children now.
            stored["loadavg"] = watch.summary()
            path.write_text(json.dumps(stored, indent=1) + "\n")
        if done.returncode != 0 or last.get("ok") is False:
            failed.append(name)
        print(f"   {name}: {timings[name]:.0f} s", flush=True)
    total = time.perf_counter() - started
    (RESULTS / "run.json").write_text(
        json.dumps(
            {
                "seconds": total,
                "timings": timings,
                "quick": args.quick or args.smoke,
                "smoke": args.smoke,
                "failed": failed,
                "commit": measured,
            },
            indent=1,
        )
        + "\n"
    )
    if not args.no_report:
        from report import write_report

        path = write_report()
        print(f"wrote {path}")
    print(
        f"total {total / 60:.1f} min; "
        + ("all targets met" if not failed else f"missed or failed: {', '.join(failed)}")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
