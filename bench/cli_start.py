"""How fast ``peerwall --help`` and ``peerwall modes`` start, side by side with ``python -c pass``
(issue 15: under 0.2 s, and within 4x the bare interpreter); and what the two programs every lab
gateway starts import: its agent's modules and its supervisor (the suite starts hundreds of each).

Every contender is a fresh process of this venv's interpreter, run in turn (interleaved, so that
the load of a shared machine hits them alike), ``--runs`` times each; the figures are the median
wall time and the median CPU time (user + system, from wait4: less sensitive to other work than
the wall clock), and each as a multiple of ``python -c pass``. The load average is printed at the
start and the end.

    .venv/bin/python bench/cli_start.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python")
PEERWALL = str(BIN / "peerwall")
TYPER_APP = "import sys; from peerwall.cli.main import main; sys.argv[0] = 'peerwall'; main()"
AGENT_MODULES = (  # what ``peerwall agent --source file:…`` imports to start (cli/agent.py)
    "peerwall.cli.main, peerwall.cli.agent, peerwall.agent.run, peerwall.agent.filesource, "
    "peerwall.dataplane.conntrack, peerwall.dataplane.nftevents, peerwall.model.load"
)

CONTENDERS = {
    "python -c pass": [PYTHON, "-c", "pass"],
    "peerwall --help": [PEERWALL, "--help"],
    "peerwall modes": [PEERWALL, "modes"],
    "python -m peerwall.cli --help": [PYTHON, "-m", "peerwall.cli", "--help"],
    "typer app --help (the script before)": [PYTHON, "-c", TYPER_APP, "--help"],
    "typer app modes (the script before)": [PYTHON, "-c", TYPER_APP, "modes"],
    "a lab agent's imports": [PYTHON, "-c", f"import {AGENT_MODULES}"],
    "a lab supervisor's imports": [PYTHON, "-c", "import peerwall.lab.supervise"],
}
BASELINE = "python -c pass"


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run (its output discarded; a failure stops the bench)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "80"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed with status {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each contender")
    runs = parser.parse_args().runs
    load_start = os.getloadavg()
    for argv in CONTENDERS.values():  # warm the page cache and the bytecode caches
        run_once(argv)
    walls: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    cpus: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(runs):
        for name, argv in CONTENDERS.items():
            wall, cpu = run_once(argv)
            walls[name].append(wall)
            cpus[name].append(cpu)
    load_end = os.getloadavg()
    base_wall = statistics.median(walls[BASELINE])
    base_cpu = statistics.median(cpus[BASELINE])
    print(f"{runs} runs each, interleaved; {os.cpu_count()} cores; load average (1, 5, 15 min)")
    print(f"at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, ", end="")
    print(f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(f"{'':36} {'wall (median)':>20} {'CPU (median)':>20}")
    for name in CONTENDERS:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        print(
            f"{name:36} {wall * 1000:8.1f} ms {wall / base_wall:6.1f}x "
            f"{cpu * 1000:8.1f} ms {cpu / base_cpu:6.1f}x"
        )


if __name__ == "__main__":
    main()
