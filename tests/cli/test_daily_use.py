"""The small things of daily use (issue 20.2, 20.4): filters and yaml on matrix, explain --check,
completion for zsh and of names, help pages without a stray ``<bool>``, help examples that name
files that exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from peerwall.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"
SEED = str(EXAMPLES / "seed.yaml")
THREE = str(EXAMPLES / "three-clusters.yaml")
SEG = "networking.securityMode=IntraClusterTrafficSegregation"


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={"NO_COLOR": "1", "COLUMNS": "200"})


def peerwall(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PEERWALL_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "peerwall.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=EXAMPLES,
    )


# --- filters and yaml ------------------------------------------------------------------------


def test_matrix_filters_keep_rows_and_columns() -> None:
    doc = json.loads(
        run("matrix", "-f", SEED, "--from", "P[45]", "--cluster", "C2", "-o", "json").stdout
    )
    assert doc["sources"] == ["P4", "P5"]
    assert doc["destinations"] == ["P4", "P5", "S3", "I2"]  # C2's pods, services, Internet
    ns = json.loads(run("matrix", "-f", SEED, "--namespace", "offloaded", "-o", "json").stdout)
    assert ns["sources"] == ["P2", "P3", "P4"] and ns["destinations"] == ["P2", "P3", "P4", "S2"]
    both = json.loads(run("matrix", "-f", THREE, "--to", "web*", "--to", "A?", "-o", "json").stdout)
    assert both["destinations"] == ["web1", "web2", "web3", "web", "A1", "A2"]
    full = json.loads(run("matrix", "-f", THREE, "-o", "json").stdout)
    for s, row in both["matrix"].items():  # the cells kept are the table's own
        assert row == {d: full["matrix"][s][d] for d in row}
    table = run("matrix", "-f", SEED, "--set", SEG, "--to", "P1")
    assert table.exit_code == 0
    assert "only to P1" in table.stdout
    assert " P1 " in table.stdout and " P2 " not in table.stdout.split("\n", 3)[-1].split("\n")[0]
    assert "NO*" in table.stdout  # still highlighted against FullPodToPod


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cluster", "C9"), "unknown cluster (--cluster) 'C9' (valid: C1, C2)"),
        (
            ("--namespace", "ofloaded"),
            "unknown namespace (--namespace) 'ofloaded' (did you mean offloaded?)",
        ),
        (("--from", "S1"), "unknown source pod (--from) 'S1'"),
        (("--to", "Q*"), "unknown destination (--to) 'Q*'"),
        (("--from", "P4", "--to", "P4"), "no cell is left by the filters (from P4; to P4)"),
    ],
)
def test_a_filter_that_selects_nothing_is_an_error(args: tuple[str, ...], message: str) -> None:
    result = run("matrix", "-f", SEED, *args)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(message)


@pytest.mark.parametrize(
    "command",
    [
        ("matrix", "-f", SEED),
        ("explain", "-f", SEED, "P4", "P1"),
        ("modes",),
    ],
)
def test_yaml_is_the_json_document(command: tuple[str, ...]) -> None:
    as_json = json.loads(run(*command, "-o", "json").stdout)
    as_yaml = yaml.safe_load(run(*command, "-o", "yaml").stdout)
    assert as_yaml == as_json


def test_every_command_with_json_has_yaml() -> None:
    """Wherever --output lists json, it lists yaml (the help is what users read)."""
    pages = [(), ("lab",)]
    seen = 0
    for group in pages:
        names = [c for c in re.findall(r"^│ (\S+)\s{2,}", run(*group, "--help").stdout, re.M)]
        for name in names:
            if name == "lab" and not group:
                continue
            page = run(*group, name, "--help").stdout
            if re.search(r"--output.*json", page, re.S) and "json" in page:
                seen += 1
                assert "yaml" in page, f"{' '.join((*group, name))}: json without yaml"
    assert seen >= 6  # matrix, explain, modes, diff, lab status, lab probe


# --- explain --check --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "cell", "status"),
    [
        (SEED, ("P1", "S1"), 0),  # YES
        (SEED, ("P1", "S3"), 1),  # NO
        (THREE, ("local3", "web"), 1),  # PARTIAL: not every backend
    ],
)
def test_explain_check_exits_with_the_answer(file: str, cell: tuple[str, str], status: int) -> None:
    checked = run("explain", "-f", file, *cell, "--check")
    assert checked.exit_code == status, checked.output
    assert run("explain", "-f", file, *cell).exit_code == 0  # without --check: always 0


# --- help -------------------------------------------------------------------------------------


def help_pages() -> list[tuple[str, ...]]:
    top = re.findall(r"^│ (\S+)\s{2,}", run("--help").stdout, re.M)
    lab = re.findall(r"^│ (\S+)\s{2,}", run("lab", "--help").stdout, re.M)
    return [(), *((c,) for c in top), *(("lab", c) for c in lab)]


def test_no_help_page_shows_a_stray_bool() -> None:
    pages = help_pages()
    assert len(pages) > 15
    for page in pages:
        text = run(*page, "--help").stdout
        assert "<bool>" not in text, page
    assert re.search(r"--force-table\s+Print", run("matrix", "--help").stdout)


def test_help_examples_name_files_that_exist() -> None:
    """Every `-f FILE` of an Example: line is a bundled example (the docs run in that folder)."""
    checked = 0
    for page in help_pages():
        text = run(*page, "--help").stdout
        for example in re.findall(r"Example: (peerwall [^\n│]*)", text):
            command = example.split("|")[0]  # not what a pipe feeds (nft -f -)
            for file in re.findall(r"(?:-f|--file|--after)\s+(\S+)", command):
                checked += 1
                assert (EXAMPLES / file).is_file(), f"{' '.join(page)}: {example}"
    assert checked >= 8


# --- completion -------------------------------------------------------------------------------


def test_install_completion_zsh_installs_zsh(tmp_path: Path) -> None:
    """From a bash (the test's shell, or none), `--install-completion zsh` installs for zsh."""
    done = peerwall("--install-completion", "zsh", HOME=str(tmp_path), SHELL="/bin/bash")
    assert done.returncode == 0, done.stderr
    assert "zsh completion installed" in done.stdout
    script = (tmp_path / ".zfunc" / "_peerwall").read_text()
    assert script.startswith("#compdef peerwall")
    assert "fpath+=~/.zfunc" in (tmp_path / ".zshrc").read_text()
    assert not (tmp_path / ".bash_completions").exists()
    fish = peerwall("--install-completion", "fish", HOME=str(tmp_path))
    assert fish.returncode == 0 and (tmp_path / ".config/fish/completions/peerwall.fish").is_file()
    bad = peerwall("--install-completion", "tcsh", HOME=str(tmp_path))
    assert bad.returncode == 2 and "give one of bash, zsh" in bad.stderr
    shown = peerwall("--show-completion", "zsh")
    assert shown.returncode == 0 and shown.stdout.startswith("#compdef peerwall")


def completions(words: str, **env: str) -> list[str]:
    """What zsh would be offered after ``words`` (typer's zsh protocol)."""
    out = peerwall(_TYPER_COMPLETE_ARGS=words, _PEERWALL_COMPLETE="complete_zsh", **env).stdout
    return re.findall(r'"((?:[^"\\]|\\.)*)"', out)


def test_completion_of_names_from_the_topology_file() -> None:
    assert completions("peerwall explain -f seed.yaml P") == ["P1", "P2", "P3", "P4", "P5"]
    assert completions("peerwall explain -f seed.yaml P1 S") == ["S1", "S2", "S3"]
    assert completions("peerwall matrix -f three-clusters.yaml --to web") == [
        "web1",
        "web2",
        "web3",
        "web",
    ]
    assert completions("peerwall matrix -f seed.yaml --cluster ") == ["C1", "C2"]
    assert completions("peerwall diff -f seed.yaml --namespace o") == ["offloaded"]
    assert completions("peerwall rules -f three-clusters.yaml --cluster C") == ["C1", "C2", "C3"]
    assert completions("peerwall explain -f missing.yaml P") == []  # no file: no names, no error


def test_completion_of_lab_names(tmp_path: Path) -> None:
    for name in ("tcompa", "tcompb", "other"):
        (tmp_path / name).mkdir()
    offered = completions("peerwall lab probe -n tcomp", PEERWALL_STATE_DIR=str(tmp_path))
    assert offered == ["tcompa", "tcompb"]
    assert "other" in completions("peerwall lab down --name ", PEERWALL_STATE_DIR=str(tmp_path))
