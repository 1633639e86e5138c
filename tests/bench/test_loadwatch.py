"""The benchmarks' load watch counts other processes' CPU time, not the benchmark's own."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from common import OTHERS_LOAD, LoadWatch, own_seconds  # noqa: E402

BURN = (
    "import time\nt = time.process_time()\n"
    "while time.process_time() - t < 0.6:\n    for _ in range(100_000): pass\n"
)
"""0.6 CPU-seconds in user space (the clock read now and then: it is a system call)."""


def _ended(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie: not waited for, its CPU time not ours yet)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_process_it_did_not_wait_for_is_another_process_and_flags_the_load() -> None:
    watch = LoadWatch()
    other = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        while not _ended(other.pid):
            time.sleep(0.05)
        summary = watch.summary()  # its 0.6 CPU-seconds are not this process's children's yet
    finally:
        other.wait()
    wall = time.monotonic() - watch.t0
    assert summary["others_cpus"] >= 0.5 / wall
    assert summary["under_load"] is (summary["others_cpus"] >= OTHERS_LOAD)
    # Once waited for, the same work is the watcher's own (``own_seconds``: this process and
    # the children it waited for), subtracted from the machine's.
    before = own_seconds()
    subprocess.run([sys.executable, "-c", BURN], check=True)
    assert own_seconds() - before >= 0.5  # its user-space share of the 0.6
