"""What the benchmarks share: namespaces that always go away, statistics, the machine, results.

Every namespace a benchmark creates is named ``pw-bench-<tag>-<role>`` and removed in a
``finally`` (SIGTERM and SIGINT leave through it too). Nothing is done in the root namespace but
creating and deleting those namespaces.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_ENV = "PEERWALL_BENCH_RESULTS"
RESULTS = Path(os.environ.get(RESULTS_ENV) or HERE / "results")
"""Where results go: bench/results, or elsewhere for a smoke run (``run.py --smoke``), whose
figures must not replace the real ones."""
PREFIX = "pw-bench-"


# --- the load on the machine while a benchmark runs ----------------------------------------------


def busy_seconds() -> float:
    """User-space CPU seconds every process of the machine has run since boot: user and nice
    time (``/proc/stat``'s first line, in clock ticks). Not system time: the kernel's own
    threads work for the benchmark too (a namespace it deleted is torn down by a kworker, its
    packets by softirqs), and would count as other work."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return sum(int(x) for x in fields[1:3]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """User-space CPU seconds of this process and of every child it waited for (theirs
    included)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime for u in usage)


OTHERS_LOAD = 0.2
"""CPUs' worth of other processes' work, on average over a benchmark, from which it is flagged
under load."""


class LoadWatch:
    """The load on the machine from when this module is imported (a benchmark's start) to its
    result. The load average, sampled every 2 s by a daemon thread, is stated; but a benchmark's
    own work (its CPU hog, its processes) stays in the 1-minute average for a minute or two and
    would flag the next one. So ``under_load`` is read from what *other* processes ran: the
    user-space CPU time of the whole machine meanwhile, less the benchmark's own (this process
    and the children it waited for; ``run.py`` measures each benchmark this way as its parent),
    at least ``OTHERS_LOAD`` CPUs' worth on average."""

    def __init__(self) -> None:
        self.start = os.getloadavg()
        self.max_1min = self.start[0]
        self.t0 = time.monotonic()
        self.busy0 = busy_seconds()
        self.own0 = own_seconds()
        thread = threading.Thread(target=self._sample, name="loadwatch", daemon=True)
        thread.start()

    def _sample(self) -> None:
        while True:
            time.sleep(2.0)
            self.max_1min = max(self.max_1min, os.getloadavg()[0])

    def summary(self) -> dict[str, Any]:
        end = os.getloadavg()
        peak = max(self.max_1min, end[0])
        cores = os.cpu_count() or 1
        wall = max(time.monotonic() - self.t0, 1e-9)
        others = max(0.0, (busy_seconds() - self.busy0) - (own_seconds() - self.own0)) / wall
        return {
            "start": [round(x, 2) for x in self.start],
            "end": [round(x, 2) for x in end],
            "max_1min": round(peak, 2),
            "cores": cores,
            "others_cpus": round(others, 2),
            "under_load": others >= OTHERS_LOAD,
        }


LOAD = LoadWatch()


# --- namespaces ----------------------------------------------------------------------------------


def run(argv: Sequence[str], *, input: str | None = None, netns: str | None = None) -> str:
    """Run a command (inside ``netns`` via ``ip netns exec`` when given); fail loudly."""
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
    done = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={done.returncode}: {done.stderr.strip()}")
    return done.stdout


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Namespaces:
    """Create ``pw-bench-<tag>-<role>`` namespaces; ``close()`` (or the ``with`` exit) removes
    every one of them, also after a failure half-way or a SIGTERM."""

    def __init__(self, bench: str) -> None:
        self.tag = f"{bench}-{secrets.token_hex(2)}"
        self.names: list[str] = []

    def name(self, role: str) -> str:
        return f"{PREFIX}{self.tag}-{role}"

    def add(self, *roles: str) -> list[str]:
        names = [self.name(r) for r in roles]
        self.names += names  # recorded first: a half-made batch is removed all the same
        ip_batch([f"netns add {n}" for n in names])
        for n in names:
            ip_batch(["link set lo up"], n)
        return names

    def remove(self, names: Sequence[str]) -> None:
        """Delete some of them now (their links go with them)."""
        subprocess.run(
            ["ip", "-force", "-batch", "-"],
            input="".join(f"netns delete {n}\n" for n in names),
            capture_output=True,
            text=True,
            check=False,
        )
        self.names = [n for n in self.names if n not in names]

    def close(self) -> None:
        if self.names:
            self.remove(list(self.names))

    def __enter__(self) -> Namespaces:
        signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sysctl(netns: str, key: str, value: str) -> None:
    from peerwall import nsenter

    with nsenter.entered(netns), open("/proc/sys/" + key.replace(".", "/"), "w") as f:
        f.write(value)


def leftovers() -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


# --- statistics ----------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (p99 of 1,000 samples is the 990th smallest)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and the repetitions of a figure."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def latency_summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "p50": quantile(values, 0.50),
        "p99": quantile(values, 0.99),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


@contextlib.contextmanager
def cpu_clock() -> Iterator[dict[str, float]]:
    """CPU seconds used by this process and its children (waited for) inside the block."""
    out: dict[str, float] = {}
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    try:
        yield out
    finally:
        me1 = resource.getrusage(resource.RUSAGE_SELF)
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["wall"] = time.perf_counter() - wall0
        out["cpu_self"] = (me1.ru_utime - me0.ru_utime) + (me1.ru_stime - me0.ru_stime)
        out["cpu_children"] = (ch1.ru_utime - ch0.ru_utime) + (ch1.ru_stime - ch0.ru_stime)
        out["cpu"] = out["cpu_self"] + out["cpu_children"]


def maxrss_bytes() -> int:
    """This process's peak RSS: VmHWM, its own memory's high-water mark. (``ru_maxrss`` of a
    child started by fork + exec also carries its parent's peak at the fork: a 10,000-pod
    truth-table child "peaked" at 870 MiB after its parent generated a million pods.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- the machine and the results -------------------------------------------------------------


def machine() -> dict[str, Any]:
    def first_line(argv: list[str]) -> str:
        try:
            return (
                subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
            )
        except (OSError, IndexError):
            return "absent"

    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nft": first_line(["nft", "--version"]),
        "ipset": first_line(["ipset", "--version"]),
        "iptables": first_line(["iptables", "--version"]),
        "iperf3": first_line(["iperf3", "--version"]),
        "gcc": first_line(["gcc", "--version"]),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def result_path(name: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / name


def measured_commit() -> str:
    """The commit whose code a result measured (``+`` if the tree had other changes)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True)
        return done.stdout.strip()

    dirty = [
        line
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if "bench/results/" not in line and "bench/RESULTS.md" not in line
    ]
    return git("rev-parse", "--short=12", "HEAD") + ("+" if dirty else "")


def emit(name: str, result: dict[str, Any]) -> None:
    """Store ``result`` as bench/results/<name>.json and print it as the last line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result.setdefault("loadavg", LOAD.summary())
    result.setdefault("commit", measured_commit())
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"bench": name, "ok": result.get("ok", True)}))
    sys.stdout.flush()


def finish(name: str, result: dict[str, Any], started: float) -> int:
    """Close a benchmark whose ``result["targets"]`` are all to be met: its duration, ``ok``, the
    stored result; the exit status for bench/run.py (1 if a target is missed)."""
    result["seconds"] = time.perf_counter() - started
    result["ok"] = all(t["met"] for t in result["targets"].values())
    emit(name, result)
    return 0 if result["ok"] else 1


def need_root(name: str) -> bool:
    if os.geteuid() == 0:
        return True
    emit(name, {"skipped": "needs root (network namespaces)", "ok": False})
    return False
