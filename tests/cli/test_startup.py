"""`peerwall --help` and `peerwall modes` start without loading what they do not run (issue 15).

The console script (`peerwall.cli.entry`) answers `peerwall`, `peerwall --help` and a bare
`peerwall modes` from the command table without typer, rich, click or pydantic; the typer app
(`peerwall.cli.main`) answers everything else and, for the same commands, still loads neither the
topology's schema, the decider, the Kubernetes client, asyncio nor the metrics library. Asserted on
what a fresh interpreter has imported, not on a clock (start-up times are measured side by side
with `python -c pass` by bench/cli_start.py). The entry's answers are held equal to the typer
app's: the same commands with the same one-line help, the same options, the same `modes` output
and exit statuses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HEAVY = (
    "peerwall.model.spec",  # the topology's schema
    "peerwall.model.load",
    "peerwall.policy.expected",
    "peerwall.compile.build",
    "lightkube",
    "httpx2",
    "asyncio",
    "prometheus_client",
)
CLI_LIBRARIES = ("typer", "rich", "click", "pydantic")
"""What the entry's own answers must not import (typer alone loads pydantic to coerce options)."""

ENTRY = "peerwall.cli.entry"
TYPER_APP = "peerwall.cli.main"

PROBE = """
import contextlib, io, json, sys
from MODULE import main
sys.argv = ["peerwall", *ARGS]
status = 0
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main()
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
print(json.dumps({"out": out.getvalue(), "status": status, "modules": sorted(sys.modules)}))
"""


def _probe(module: str, *args: str) -> tuple[str, int, set[str]]:
    """What ``peerwall ARGS`` printed through ``module``'s main, its status, what it imported."""
    code = PROBE.replace("MODULE", module).replace("ARGS", repr(list(args)))
    env = {k: v for k, v in os.environ.items() if k != "_PEERWALL_COMPLETE"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["out"], answer["status"], set(answer["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in modules or any(m.startswith(n + ".") for m in modules)]


@pytest.mark.parametrize("args", [(), ("--help",), ("modes",)])
def test_the_entry_answers_the_light_commands_without_the_cli_libraries(
    args: tuple[str, ...],
) -> None:
    out, status, modules = _probe(ENTRY, *args)
    assert "FullPodToPod" in out or "Usage" in out, out  # it ran and printed its answer
    assert status == (2 if not args else 0)
    loaded = _loaded(modules, CLI_LIBRARIES + HEAVY)
    assert not loaded, f"peerwall {' '.join(args)} imported {loaded}"
    assert not _loaded(modules, (TYPER_APP,))


@pytest.mark.parametrize("args", [("--help",), ("modes",)])
def test_the_typer_app_too_loads_nothing_heavy_for_them(args: tuple[str, ...]) -> None:
    out, _, modules = _probe(TYPER_APP, *args)
    assert "FullPodToPod" in out or "Usage" in out, out
    loaded = _loaded(modules, HEAVY)
    assert not loaded, f"peerwall {' '.join(args)} imported {loaded}"


def test_the_entry_hands_any_other_command_to_the_typer_app() -> None:
    """The control: the same probe sees typer and the core when a command needs them."""
    _, status, modules = _probe(
        ENTRY, "matrix", "-f", str(REPO / "src/peerwall/examples/seed.yaml")
    )
    assert status == 0
    assert {"typer", TYPER_APP, "peerwall.policy.expected", "peerwall.model.spec"} <= modules


def test_the_typer_app_imports_only_the_module_of_the_command_it_runs() -> None:
    _, _, modules = _probe(TYPER_APP, "modes", "--output", "json")
    assert "peerwall.cli.modes" in modules
    assert not _loaded(modules, ("peerwall.cli.lab", "peerwall.cli.matrix", "peerwall.cli.agent"))


AGENT_MODULES = (
    "peerwall.cli.main",
    "peerwall.cli.agent",
    "peerwall.agent.run",
    "peerwall.agent.filesource",
    "peerwall.dataplane.conntrack",
    "peerwall.dataplane.nft",
    "peerwall.dataplane.nftevents",
    "peerwall.settings",
    "peerwall.model",
)
"""What ``peerwall agent --source file:…`` imports to start (``cli/agent.py``), every lab agent."""


def _imported_by(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds after importing ``modules``."""
    code = f"import sys, {', '.join(modules)}; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_an_agent_starts_without_what_only_some_of_its_paths_need() -> None:
    """Every lab gateway starts an agent, and the suite hundreds of labs: an agent does not load
    rich (only a help draws with it), the nft fake and its parser (tests and dry runs), the
    explanations (the first drop loads them), the Kubernetes client (that source only), nor
    ``ctypes.util`` (finding libc by name runs ``ldconfig``)."""
    modules = _imported_by(*AGENT_MODULES)
    assert {"typer", "peerwall.agent.run", "peerwall.dataplane.nft"} <= modules  # the control
    unneeded = (
        "rich",
        "peerwall.nft.fake",
        "peerwall.nft.parse",
        "peerwall.policy.explain",
        "peerwall.agent.kube",
        "lightkube",
        "httpx2",
        "ctypes.util",
    )
    loaded = _loaded(modules, unneeded)
    assert not loaded, f"the agent's start imported {loaded}"


def test_the_lab_supervisor_imports_no_more_than_it_runs() -> None:
    """The supervisor (``lab.supervise``) starts with every lab agent: none of the agent, the CLI
    libraries or the core, and its probe is ``http.client``, not ``urllib.request``."""
    modules = _imported_by("peerwall.lab.supervise")
    assert "http.client" in modules  # the control
    assert {m for m in modules if m.startswith("peerwall")} == {
        "peerwall",
        "peerwall.lab",
        "peerwall.lab.supervise",
    }
    loaded = _loaded(modules, ("urllib.request", "asyncio", *CLI_LIBRARIES))
    assert not loaded, f"the supervisor imported {loaded}"


# ---------------------------------------------------------------------------------------------
# The entry's answers are the typer app's


def _run(
    module: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``peerwall ARGS`` as a program, through ``module``'s main."""
    code = f"import sys; sys.argv[0] = 'peerwall'; from {module} import main; main()"
    base = {k: v for k, v in os.environ.items() if k != "_PEERWALL_COMPLETE"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**base, "COLUMNS": "100", "NO_COLOR": "1", **(env or {})},
    )


@pytest.mark.parametrize(
    "args",
    [
        ("modes",),  # the entry's own answer
        ("modes", "--output", "json"),  # the rest are the typer app's
        ("-h",),
        ("matrx",),
        ("--max-input-size", "0", "modes"),
    ],
)
def test_the_entry_prints_what_the_typer_app_prints(args: tuple[str, ...]) -> None:
    entry, typer_app = _run(ENTRY, *args), _run(TYPER_APP, *args)
    assert (entry.returncode, entry.stdout, entry.stderr) == (
        typer_app.returncode,
        typer_app.stdout,
        typer_app.stderr,
    )
    assert entry.stdout or entry.stderr


def test_a_bare_modes_is_the_documented_listing() -> None:
    done = _run(ENTRY, "modes")
    assert done.returncode == 0 and not done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("* FullPodToPod ") and lines[1].startswith("  IntraCluster")
    assert lines[-1] == "(* default; select with --set networking.securityMode=MODE)"


def test_completion_requests_go_to_the_typer_app() -> None:
    """A shell asking for completions runs a bare ``peerwall``: the entry must not answer it."""
    env = {"_PEERWALL_COMPLETE": "complete_bash", "COMP_WORDS": "peerwall ma", "COMP_CWORD": "1"}
    entry, typer_app = _run(ENTRY, env=env), _run(TYPER_APP, env=env)
    assert (entry.returncode, entry.stdout) == (typer_app.returncode, typer_app.stdout)
    assert "matrix" in entry.stdout and "Usage" not in entry.stdout


@pytest.mark.parametrize("args", [(), ("--help",)])
def test_the_help_has_the_typer_apps_status_and_stream(args: tuple[str, ...]) -> None:
    entry, typer_app = _run(ENTRY, *args), _run(TYPER_APP, *args)
    assert entry.returncode == typer_app.returncode == (0 if args else 2)
    assert entry.stdout.startswith("Usage: peerwall [OPTIONS] COMMAND [ARGS]...")
    assert "Usage: peerwall [OPTIONS] COMMAND [ARGS]..." in typer_app.stdout
    assert not entry.stderr and not typer_app.stderr


def _section(text: str, title: str) -> dict[str, str]:
    """A help section's two columns: term -> its help, wrapped lines joined."""
    lines = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    rows: dict[str, str] = {}
    term = ""
    for line in lines:
        start = re.match(r"  (\S+(?: \S+)?)(?:  +(.*))?$", line)
        if start and not line.startswith("   "):
            term = start.group(1)
            rows[term] = start.group(2) or ""
        else:
            rows[term] = f"{rows[term]} {line.strip()}".strip()
    return rows


def _one_line(text: str | None) -> str:
    """What a help listing shows of a help text: its first paragraph, on one line."""
    return " ".join((text or "").split("\n\n")[0].split())


def test_the_help_lists_the_typer_apps_commands_and_options() -> None:
    import typer.main
    from rich.text import Text

    from peerwall.cli.entry import help_text
    from peerwall.cli.main import app

    group = typer.main.get_command(app)
    ctx = group.make_context("peerwall", ["--help"], resilient_parsing=True)
    typer_commands = {
        name: _one_line(group.get_command(ctx, name).help) for name in group.list_commands(ctx)
    }
    typer_options = {
        " ".join([p.opts[0], *([p.metavar] if p.metavar else [])]): _one_line(p.help)
        for p in group.get_params(ctx)
    }
    text = help_text(columns=80)
    assert _section(text, "Commands") == typer_commands
    assert list(_section(text, "Commands")) == list(typer_commands)  # and in the same order
    assert _section(text, "Options") == typer_options
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    assert paragraphs[1] == _one_line(group.help)
    assert paragraphs[-1] == Text.from_markup(group.epilog or "").plain


def test_every_command_in_the_table_loads() -> None:
    """Each table entry names a real function or sub-app, whose own help the listing shows."""
    import typer.main

    from peerwall.cli.commands import COMMANDS
    from peerwall.cli.main import app

    group = typer.main.get_command(app)
    ctx = group.make_context("peerwall", ["--help"], resilient_parsing=True)
    for name, (help_line, _) in COMMANDS.items():
        command = group.get_command(ctx, name)
        assert command is not None and command.name == name
        assert _one_line(command.help) == help_line, name


def test_the_console_script_is_the_entry() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["peerwall"] == f"{ENTRY}:main"
