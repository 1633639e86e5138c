"""`peerwall --help` and `peerwall modes` start without loading what they do not run (issue 15):
the topology schema, the decider, the Kubernetes client, asyncio, the metrics library.
Asserted on what a fresh interpreter has imported, not on a clock (start-up times are measured,
side by side with `python -c pass`, in the closing notes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "peerwall.model.spec",  # the topology's schema (typer itself loads pydantic to coerce options)
    "peerwall.model.load",
    "peerwall.policy.expected",
    "peerwall.compile.build",
    "lightkube",
    "httpx2",
    "asyncio",
    "prometheus_client",
)

PROBE = """
import contextlib, io, json, sys
from peerwall.cli.main import main
sys.argv = ["peerwall", *ARGS]
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
    main()
print(json.dumps({"out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _run(*args: str) -> tuple[str, set[str]]:
    code = PROBE.replace("ARGS", repr(list(args)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["out"], set(answer["modules"])


@pytest.mark.parametrize("args", [("--help",), ("modes",)])
def test_a_light_command_loads_nothing_heavy(args: tuple[str, ...]) -> None:
    out, modules = _run(*args)
    assert "FullPodToPod" in out or "Usage" in out, out  # it ran and printed its answer
    loaded = [m for m in HEAVY if m in modules]
    assert not loaded, f"peerwall {' '.join(args)} imported {loaded}"


def test_a_command_that_computes_still_loads_the_core() -> None:
    """The control: the same probe sees the core when a command needs it."""
    _, modules = _run("matrix")
    assert "peerwall.policy.expected" in modules and "peerwall.model.spec" in modules
