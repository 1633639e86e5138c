"""Run every benchmark in one go and write bench/RESULTS.md: ``make bench`` (as root).

Each benchmark is a script under bench/ that prints a summary and, last, one JSON line; most also
write bench/results/<name>.json (with plots next to them). This runner runs them one after the
other (each alternates its own contenders inside), keeps the last line of those that write no file
of their own, then renders RESULTS.md from bench/results (``report.py``). It exits 1 if a
benchmark fails or misses a target.

    python bench/run.py                 # everything, full sizes (about 9–10 minutes on 2 cores)
    python bench/run.py --only event,churn
    python bench/run.py --quick         # small sizes, to try the machinery (not for RESULTS.md)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

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
    "flowlog": ["--reps", "1", "--seconds", "0.5", "--switches", "5", "--events", "5000"],
    "supervised": ["--kills", "3"],
    "conntrack": ["--entries", "20000"],
}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", help="comma-separated benchmark names")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    RESULTS.mkdir(exist_ok=True)
    failed = []
    timings: dict[str, float] = {}
    started = time.perf_counter()
    from common import LoadWatch
    from report import commit_line

    measured = commit_line()  # the code measured: taken before anything runs
    for name in names:
        argv = [sys.executable, str(HERE / BENCHES[name][0]), *BENCHES[name][1:]]
        if args.quick:
            argv += QUICK.get(name, [])
        print(f"== {name}: {' '.join(argv[1:])}", flush=True)
        path = RESULTS / f"{name}.json"
        before = path.stat().st_mtime if path.exists() else None
        t = time.perf_counter()
        watch = LoadWatch()
        # stderr (progress lines) goes straight through; stdout is kept for the result line.
        done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, check=False)
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
        if isinstance(stored, dict) and "loadavg" not in stored:
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
                "quick": args.quick,
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
