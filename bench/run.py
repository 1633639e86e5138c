"""Run every benchmark in one go and keep their results: `make bench` (root needed for the lab).

Each benchmark prints one JSON object on its last line; this runner stores it as
bench/results/<name>.json and prints one line per benchmark. It exits 1 if any target is missed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "policy": [HERE / "policy_bench.py"],
    "probe": [HERE / "probe_throughput.py", "--pods", "50", "--probes", "20000"],
    "lab": [HERE / "lab_bench.py", "--pods", "200"],
}


def main() -> int:
    (HERE / "results").mkdir(exist_ok=True)
    failed = []
    for name, argv in BENCHES.items():
        print(f"== {name}", flush=True)
        done = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True)
        sys.stdout.write(done.stdout)
        lines = done.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            print(
                f"{name}: no result line (exit {done.returncode})\n{done.stderr}", file=sys.stderr
            )
            failed.append(name)
            continue
        (HERE / "results" / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        if done.returncode != 0 or result.get("ok") is False:
            failed.append(name)
    print("all targets met" if not failed else f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
