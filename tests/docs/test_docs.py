"""Every command that README.md and docs/*.md show still runs, and still prints what they show.

The convention, for whoever writes the docs:

- A ```` ```console ```` block is run. A line that starts with ``$ `` is a command (a command line
  ending with ``\\`` goes on over the next line, and a here-document ``<<'EOF'`` up to its
  ``EOF``); the lines after it, up to the next command or
  the end of the block, are its expected output: standard output and standard error together,
  as a terminal shows them. Trailing whitespace and trailing blank lines do not count. A line
  ``...`` stands for any number of lines (none included); ``...`` inside a line for any text
  within that line (timings, ports, PIDs).
- A command must exit 0, unless the next command is ``$ echo $?``: its output is then the exit
  status the command must have.
- Commands run with bash, one process each, in a scratch folder that holds the bundled
  examples (``src/peerwall/examples/*.yaml``: ``seed.yaml``, the seed reference, and
  ``three-clusters.yaml``), so files a command writes are seen by the next ones of the same
  file. ``peerwall`` is this checkout's sources; ``NO_COLOR=1``, ``COLUMNS=100``.
- A block is a *lab block* if one of its commands runs ``peerwall demo`` or ``peerwall lab …``,
  or touches a lab (a ``pw-`` namespace, ``$PEERWALL_STATE_DIR``). Lab blocks need root: the
  lab blocks of a file run in order, as one session, in a test marked ``lab``, with
  ``PEERWALL_STATE_DIR`` in a temporary folder. Each lab name the session uses (``--name try``;
  ``peerwall demo`` without ``--name`` is given one, ``demo``'s) is replaced by a fresh name of
  the same length, so that labs of other users of the machine are never touched, and replaced back in
  the output; every lab is brought down afterwards, whatever happened. ``lab status`` must be
  given ``--name`` (without it, it reports every lab on the machine).
- The other blocks of a file (*plain blocks*) run in order as another session, without root.
- A ```` ```sh ```` block is not run (helm, kubectl, liqoctl need a real cluster; ``make``
  installs things). Every ``peerwall`` command in any block, and in inline code that starts
  with ``peerwall``, must name subcommands and options that exist, as ``--help`` lists them.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "src" / "peerwall" / "examples"
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REQUIRED_DOCS = {
    "concepts.md",
    "semantics.md",
    "howto-lab.md",
    "howto-diff.md",
    "howto-real-clusters.md",
    "topology-format.md",
    "enforcement.md",
    "exit-codes.md",
    "kubernetes.md",
}
COLUMNS = "100"
COMMAND_TIMEOUT = 240
ELLIPSIS = "..."
LAB_COMMAND = re.compile(r"\bpeerwall\s+(demo|lab)\b|(?<![\w-])pw-|PEERWALL_STATE_DIR")
LAB_SUBCOMMANDS = ("up", "apply", "down", "status", "set-mode", "probe", "drops")
DEFAULT_LAB_NAME = {"demo": "demo", "lab": "lab"}
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1")
FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})\s*([^\s`]*)")


# ---------------------------------------------------------------------------------------------
# Reading the docs


@dataclass(frozen=True)
class Block:
    path: Path
    lang: str
    start: int
    """Line number (from 1) of the block's first content line."""
    lines: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path}:{self.start}"


@dataclass
class Command:
    text: str
    """The command as bash gets it (continuation lines included)."""
    expected: list[str]
    line: int
    path: Path
    status: int = 0
    """The exit status it must have (0 unless ``$ echo $?`` follows it)."""

    @property
    def where(self) -> str:
        rel = self.path.relative_to(REPO) if self.path.is_relative_to(REPO) else self.path
        return f"{rel}:{self.line}"


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown file, with their language."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            body.append(lines[j])
            j += 1
        out.append(Block(path, lang, i + 2, tuple(body)))
        i = j + 1
    return out


def commands(block: Block) -> list[Command]:
    """The commands of a console block, each with its expected output and exit status."""
    out: list[Command] = []
    lines = block.lines
    i = 0
    if lines and not lines[0].startswith("$ "):
        raise ValueError(f"{block.where}: a console block starts with a '$ ' command line")
    while i < len(lines):
        line = lines[i]
        start = i
        text = line[2:]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        heredoc = HEREDOC.search(text)
        if heredoc:  # the document is part of the command, up to its delimiter
            while i + 1 < len(lines):
                i += 1
                text += "\n" + lines[i]
                if lines[i].strip() == heredoc.group(2):
                    break
        i += 1
        expected: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        if text.strip() == "echo $?":
            if not out:
                raise ValueError(f"{block.where}: '$ echo $?' with no command before it")
            status = "\n".join(expected).strip()
            if not status.isdigit():
                raise ValueError(
                    f"{block.where}: '$ echo $?' must be followed by the exit status, got {status!r}"
                )
            out[-1].status = int(status)
            continue
        out.append(Command(text, expected, block.start + start, block.path))
    return out


def is_lab(block: Block) -> bool:
    return any(LAB_COMMAND.search(c.text) for c in commands(block))


@dataclass
class Sessions:
    plain: list[Command] = field(default_factory=list)
    lab: list[Command] = field(default_factory=list)


def sessions(path: Path, text: str | None = None) -> Sessions:
    out = Sessions()
    for b in blocks(path, text):
        if b.lang != "console":
            continue
        (out.lab if is_lab(b) else out.plain).extend(commands(b))
    return out


# ---------------------------------------------------------------------------------------------
# Comparing output


def normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _line_pattern(line: str) -> str:
    return ".*?".join(re.escape(part) for part in line.split(ELLIPSIS))


def matches(expected: Sequence[str], actual: Sequence[str]) -> bool:
    """``actual`` fits ``expected``, where ``...`` is a wildcard (a whole line: any lines)."""
    exp = normalise("\n".join(expected))
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line.strip() == ELLIPSIS else _line_pattern(line) + r"\n"
        for line in exp
    )
    text = "".join(f"{line}\n" for line in normalise("\n".join(actual)))
    return re.fullmatch(pattern, text) is not None


def mismatch(cmd: Command, status: int, output: str) -> str | None:
    """Why the command's run does not fit the doc, or None if it does."""
    problems = []
    if status != cmd.status:
        problems.append(
            f"exit status {status}, the doc expects {cmd.status}"
            + ("" if cmd.status else " (add '$ echo $?' and the status if that is intended)")
        )
    actual = normalise(output)
    if not matches(cmd.expected, actual):
        diff = difflib.unified_diff(
            normalise("\n".join(cmd.expected)), actual, "documented", "actual", lineterm=""
        )
        problems.append("output differs:\n" + "\n".join(diff))
    if not problems:
        return None
    return f"{cmd.where}: $ {cmd.text}\n" + "\n".join(problems)


# ---------------------------------------------------------------------------------------------
# Running


_SHELL_SYNTAX = re.compile(r"[|&;<>$`\\*?(){}\[\]~#!\n]")


_SINGLE_QUOTED = re.compile(r"'[^']*'")
_TAIL = re.compile(r"\s*\|\s*tail -(\d+)$")
_INTO = re.compile(r"\s*>\s*([\w.-]+)$")


def in_process_words(text: str) -> list[str] | None:
    """The arguments of a command that is nothing but ``peerwall ARGS`` (no pipe, redirection,
    variable, glob or other shell syntax outside single quotes, where the shell reads none), or
    None: only those run in-process."""
    if _SHELL_SYNTAX.search(_SINGLE_QUOTED.sub("''", text)):
        return None
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    return words[1:] if words and words[0] == "peerwall" else None


@dataclass(frozen=True)
class InProcess:
    """``peerwall ARGS``, alone or followed by ``| tail -N`` or ``> FILE``: what runs in-process."""

    words: list[str]
    tail: int | None = None
    """``| tail -N``: the last N lines of standard output; the status is tail's (0), standard
    error goes past tail, ahead of what tail prints at the end."""
    into: str | None = None
    """``> FILE``: standard output into FILE (in the session's folder), standard error shown."""


def in_process_command(text: str) -> InProcess | None:
    """``text`` as a command to run in-process, or None if it is anything else."""
    if m := _TAIL.search(text):
        words = in_process_words(text[: m.start()])
        return None if words is None else InProcess(words, tail=int(m.group(1)))
    if m := _INTO.search(text):
        words = in_process_words(text[: m.start()])
        return None if words is None else InProcess(words, into=m.group(1))
    words = in_process_words(text)
    return None if words is None else InProcess(words)


class Runner:
    """Runs commands of one session: a scratch folder with the examples, this checkout's peerwall.

    With ``in_process``, a command that is only ``peerwall ARGS`` runs in this process, through
    the same entry (``app``, named ``peerwall``), environment, folder and empty standard input,
    its standard output and error together as a terminal shows them: what a spawned interpreter
    would print, without paying for one per command (``test_self_in_process_is_the_same``)."""

    def __init__(
        self, tmp: Path, names: dict[str, str] | None = None, *, in_process: bool = False
    ) -> None:
        self.cwd = tmp / "work"
        shutil.copytree(EXAMPLES, self.cwd, ignore=shutil.ignore_patterns("__pycache__"))
        bindir = tmp / "bin"
        bindir.mkdir()
        shim = bindir / "peerwall"
        shim.write_text(
            f"#!{sys.executable}\nimport sys\nsys.argv[0] = 'peerwall'\n"
            "from peerwall.cli.entry import main\nmain()\n"
        )
        shim.chmod(0o755)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("PEERWALL_") and k not in ("FORCE_COLOR", "CLICOLOR_FORCE")
        }
        pythonpath = [str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])]
        env.update(
            NO_COLOR="1",
            COLUMNS=COLUMNS,
            TERM="dumb",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(pythonpath),
            PATH=os.pathsep.join([str(bindir), env.get("PATH", "/usr/bin:/bin")]),
            PEERWALL_STATE_DIR=str(tmp / "labs"),
        )
        self.env = env
        self.names = names or {}
        """Documented lab name -> the name this run uses."""
        self.in_process = in_process

    def run(self, text: str) -> tuple[int, str]:
        command = in_process_command(text) if self.in_process else None
        if command is not None:
            return self.invoke(command)
        proc = subprocess.run(
            ["bash", "-c", text],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return proc.returncode, proc.stdout

    def invoke(self, command: InProcess | list[str]) -> tuple[int, str]:
        from typer.testing import CliRunner

        from peerwall.cli.main import app

        if isinstance(command, list):
            command = InProcess(command)
        # The session's environment exactly: what it does not set is unset.
        env: dict[str, str | None] = {k: None for k in os.environ if k not in self.env}
        env.update(self.env)
        with contextlib.chdir(self.cwd):
            result = CliRunner().invoke(app, command.words, env=env, prog_name="peerwall")
        crash = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crash = "".join(traceback.format_exception(result.exception))
        if command.tail is not None:
            lines = result.stdout.splitlines(keepends=True)
            return 0, result.stderr + crash + "".join(lines[-command.tail :])
        if command.into is not None:
            (self.cwd / command.into).write_text(result.stdout)
            return result.exit_code, result.stderr + crash
        return result.exit_code, result.output + crash

    def check(self, cmd: Command) -> str | None:
        text = rename_labs(cmd.text, self.names)
        if self.names and (foreign := unmapped_labs(text, self.names)):
            return f"{cmd.where}: $ {cmd.text}\nnot run: it would touch lab(s) {', '.join(foreign)}"
        status, output = self.run(text)
        for documented, used in self.names.items():
            output = output.replace(used, documented)
        return mismatch(cmd, status, output)


def run_session(runner: Runner, cmds: Iterable[Command]) -> list[str]:
    problems = []
    for cmd in cmds:
        problem = runner.check(cmd)
        if problem:
            problems.append(problem)
    return problems


# --- lab names ------------------------------------------------------------------------------

_NAME_OPTION = re.compile(r"(?<![\w-])(?:--name|-n)(?:=|\s+)([a-z0-9]+)")
_INVOCATION = re.compile(
    r"\bpeerwall\s+(demo|lab\s+(?:" + "|".join(LAB_SUBCOMMANDS) + r"))\b([^|;&\n]*)"
)


def lab_names(cmds: Iterable[Command]) -> set[str]:
    """The lab names a session's commands use, explicit (``--name try``) or by default."""
    names: set[str] = set()
    for cmd in cmds:
        for m in _INVOCATION.finditer(cmd.text):
            given = _NAME_OPTION.search(m.group(2))
            if given:
                names.add(given.group(1))
            elif m.group(1).startswith("lab status"):
                raise ValueError(
                    f"{cmd.where}: give 'lab status' a --name (without it, it reports every lab "
                    "on the machine, other users' too)"
                )
            else:
                names.add(DEFAULT_LAB_NAME[m.group(1).split()[0]])
    return names


def fresh_names(names: Iterable[str]) -> dict[str, str]:
    """A free lab name of the same length for each name (so output keeps its layout). Names
    start with a letter that is no hex digit, so they cannot hide in a hash."""
    taken = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    out: dict[str, str] = {}
    for name in sorted(names):
        while True:
            candidate = secrets.choice("ghjkmpqrvwxz") + "".join(
                secrets.choice("ghjkmpqrvwxz23456789") for _ in range(len(name) - 1)
            )
            if candidate not in out.values() and not any(
                t.startswith(f"pw-{candidate}-") for t in taken
            ):
                out[name] = candidate
                break
    return out


def rename_labs(text: str, names: dict[str, str]) -> str:
    """The command with each documented lab name replaced by the one this run uses: the value of
    ``--name``, a ``--name`` added where the default is meant, and the name in namespaces
    (``pw-try-pod-P4``) and lab folders (``…/try/agents``); a name that is not also a word of
    peerwall's commands (``try``, not ``lab`` or ``demo``) wherever it stands as a word."""

    def invocation(m: re.Match[str]) -> str:
        given = _NAME_OPTION.search(m.group(2))
        if given:
            rest = m.group(2)
            name = given.group(1)
            used = names.get(name, name)
            rest = rest[: given.start(1)] + used + rest[given.end(1) :]
            return f"peerwall {m.group(1)}{rest}"
        default = DEFAULT_LAB_NAME[m.group(1).split()[0]]
        if default not in names:
            return m.group(0)
        return f"peerwall {m.group(1)} --name {names[default]}{m.group(2)}"

    text = _INVOCATION.sub(invocation, text)
    for name, used in names.items():
        text = re.sub(rf"(?<![\w-])pw-{re.escape(name)}-", f"pw-{used}-", text)
        text = text.replace(f"/{name}/", f"/{used}/")
        if name not in DEFAULT_LAB_NAME.values():
            text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", used, text)
    return text


def unmapped_labs(text: str, names: dict[str, str]) -> list[str]:
    """Lab names a renamed command still uses that are not this run's: it would touch a lab
    that is not ours."""
    ours = set(names.values())
    found = {
        g.group(1) for m in _INVOCATION.finditer(text) if (g := _NAME_OPTION.search(m.group(2)))
    }
    found |= set(re.findall(r"(?<![\w-])pw-([a-z0-9]+)-", text))
    return sorted(found - ours)


# ---------------------------------------------------------------------------------------------
# Subcommands and options, as --help lists them


@dataclass(frozen=True)
class Help:
    commands: frozenset[str]
    options: frozenset[str]


_OPTION = re.compile(r"^-{1,2}[A-Za-z][\w-]*$")


def parse_help(text: str) -> Help:
    """The subcommands and options a ``--help`` page (typer's panels) lists."""
    commands: set[str] = set()
    options: set[str] = set()
    panel = ""
    for line in text.splitlines():
        if line.startswith("╭"):
            panel = line.strip("╭─╮ ").split(" ")[0]
            continue
        if not line.startswith("│"):
            continue
        body = line.strip("│").rstrip()
        if panel == "Commands":
            m = re.match(r"^ (\S+)\s{2,}", body)
            if m:
                commands.add(m.group(1))
        elif panel == "Options":
            # An option's line is indented by at most 4 (a "*" marks required ones); the lines
            # that continue a description are indented further.
            if len(body) - len(body.lstrip()) > 4:
                continue
            words = body.split()
            for word in words[1:] if words[:1] == ["*"] else words:
                if not _OPTION.match(word):
                    break
                options.add(word)
    return Help(frozenset(commands), frozenset(options))


@cache
def help_page(path: tuple[str, ...]) -> Help:
    """The subcommands and options of ``peerwall PATH --help``, read in-process (the page is
    the same as a spawned ``peerwall`` prints: ``test_self_in_process_is_the_same``)."""
    from typer.testing import CliRunner

    from peerwall.cli.main import app

    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PEERWALL_")}
    env.update(NO_COLOR="1", COLUMNS="250", TERM="dumb")
    result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="peerwall")
    if result.exit_code != 0:
        raise AssertionError(f"peerwall {' '.join(path)} --help failed: {result.output}")
    return parse_help(result.stdout)


WRAPPERS = {"sudo", "env", "time", "exec", "nohup", "command"}


def invocations(text: str) -> Iterator[list[str]]:
    """The words of every ``peerwall`` command in a piece of shell: where ``peerwall`` (or a path
    to it) is the program of a simple command, maybe after variable assignments, ``sudo``,
    ``env`` or ``ip netns exec NS``. Synopsis brackets and ellipses are dropped, and so are
    redirections."""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            words = line.split()
        segment: list[str] = []
        for word in [*words, ";"]:
            if word in ("|", "||", "&&", ";", "&"):
                found = _invocation(segment)
                if found is not None:
                    yield found
                segment = []
            else:
                segment.append(word)


def _invocation(words: list[str]) -> list[str] | None:
    i = 0
    while i < len(words):
        w = words[i]
        if re.match(r"^[A-Za-z_]\w*=", w) or w in WRAPPERS or w in ("(", "$("):
            i += 1
        elif words[i : i + 3] == ["ip", "netns", "exec"]:
            i += 4
        else:
            break
    if i >= len(words) or not (words[i] == "peerwall" or words[i].endswith("bin/peerwall")):
        return None
    out: list[str] = []
    rest = iter(words[i + 1 :])
    for word in rest:
        if word in (">", ">>", "<", "&>"):
            next(rest, None)  # the file of a redirection
            continue
        if word in ("(", ")", "$("):
            continue
        word = word.strip("[]")
        if word and word not in ("…", ELLIPSIS):
            out.append(word)
    return out


def check_invocation(words: Sequence[str]) -> str | None:
    """Why these words are no valid peerwall command line, or None."""
    path: list[str] = []
    page = help_page(())
    leaf = False
    for word in words:
        if word.startswith("$") or word in ("-", "--"):
            continue
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if not _OPTION.match(name):
                continue
            if name not in page.options:
                where = " ".join(["peerwall", *path])
                return f"{where}: no option {name} (its --help lists {', '.join(sorted(page.options))})"
            continue
        if leaf or not page.commands:
            leaf = True
            continue
        if word not in page.commands:
            where = " ".join(["peerwall", *path])
            return f"{where}: no subcommand {word!r} (its --help lists {', '.join(sorted(page.commands))})"
        path.append(word)
        page = help_page(tuple(path))
    return None


def logical_lines(lines: Sequence[str]) -> Iterator[tuple[int, str]]:
    """(index of the first line, text) of each shell line, continuations (``\\``) joined."""
    start, parts = 0, []
    for n, line in enumerate(lines):
        if not parts:
            start = n
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        yield start, " ".join(parts)
        parts = []
    if parts:
        yield start, " ".join(parts)


INLINE = re.compile(r"(?<!`)`(peerwall [^`]+)`(?!`)")


def mentioned(path: Path, text: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """(where, words) of every peerwall command in the file's blocks and inline code."""
    raw = path.read_text(encoding="utf-8") if text is None else text
    for b in blocks(path, raw):
        if b.lang in ("console",):
            for c in commands(b):
                for words in invocations(c.text):
                    yield c.where, words
        elif b.lang in ("sh", "bash", "shell", ""):
            for n, line in logical_lines(b.lines):
                for words in invocations(line):
                    yield f"{b.where.rsplit(':', 1)[0]}:{b.start + n}", words
    in_block = False
    for n, line in enumerate(raw.splitlines(), 1):
        if FENCE.match(line):
            in_block = not in_block
            continue
        if in_block:
            continue
        for m in INLINE.finditer(line):
            for words in invocations(m.group(1)):
                yield f"{path.name}:{n}", words


# ---------------------------------------------------------------------------------------------
# The tests


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_the_docs_are_there() -> None:
    present = {p.name for p in (REPO / "docs").glob("*.md")}
    assert present >= REQUIRED_DOCS, f"missing: {sorted(REQUIRED_DOCS - present)}"


PLAIN_DOCS = [p for p in DOC_FILES if sessions(p).plain]
LAB_DOCS = [p for p in DOC_FILES if sessions(p).lab]


@pytest.mark.parametrize("path", PLAIN_DOCS, ids=_rel)
def test_plain_commands_print_what_the_docs_show(path: Path, tmp_path: Path) -> None:
    cmds = sessions(path).plain
    problems = run_session(Runner(tmp_path, in_process=True), cmds)
    assert not problems, "\n\n".join(problems)


@pytest.mark.lab
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", LAB_DOCS, ids=_rel)
def test_lab_commands_print_what_the_docs_show(path: Path, tmp_path: Path) -> None:
    cmds = sessions(path).lab
    names = fresh_names(lab_names(cmds))
    runner = Runner(tmp_path, names, in_process=True)
    try:
        problems = run_session(runner, cmds)
    finally:
        for used in names.values():
            runner.run(f"peerwall lab down --name {used}")
    assert not problems, "\n\n".join(problems)


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_MD_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


def cited(path: Path) -> Iterator[tuple[str, Path | None]]:
    """What a doc cites: each relative link target, and each Markdown file it names, with the
    file of the repository it stands for (None if there is none)."""
    text = path.read_text(encoding="utf-8")
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        local = (path.parent / target.split("#")[0]).resolve()
        yield target, local if local.exists() else None
    # Files named in prose; a command in a code block may write a file of any name.
    prose = "\n".join(line for line in _outside_fences(text.splitlines()))
    for name in _MD_NAME.findall(prose):
        candidates = [path.parent / name, REPO / name, REPO / "docs" / name]
        yield name, next((c for c in candidates if c.exists()), None)


def _outside_fences(lines: list[str]) -> Iterator[str]:
    fence = ""
    for line in lines:
        m = FENCE.match(line)
        if m and (not fence or m.group(2).startswith(fence)):
            fence = "" if fence else m.group(2)[0] * 3
            continue
        if not fence:
            yield line


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_docs_cite_only_what_the_repository_has(path: Path) -> None:
    """No doc cites a file that is not in the repository (the design brief is not: its semantics
    are docs/semantics.md), and every relative link resolves."""
    missing = sorted({name for name, found in cited(path) if found is None})
    assert not missing, (
        f"{path.relative_to(REPO)} cites what the repository does not have: {missing}"
    )


def test_howto_lab_and_the_makefile_install_the_same() -> None:
    """What howto-lab.md says `make demo` installs is what the Makefile installs for it, nc
    included (the lab prints `reproduce: ip netns exec … nc …` lines)."""
    makefile = (REPO / "Makefile").read_text()
    m = re.search(r"^APT_PACKAGES\s*:=\s*(.+)$", makefile, re.M)
    assert m, "Makefile: no APT_PACKAGES"
    installed = set(m.group(1).split())
    assert re.search(r"^demo: venv$", makefile, re.M) and re.search(
        r"^venv: system", makefile, re.M
    )
    howto = " ".join((REPO / "docs" / "howto-lab.md").read_text().split())
    said = re.search(r"`make demo` installs the Debian packages `([^`]+)`", howto)
    assert said, "howto-lab.md: no sentence on what make demo installs"
    assert set(said.group(1).split()) == installed
    assert "netcat-openbsd" in installed


SAME = [
    "peerwall modes",
    "peerwall lab --help",
    "peerwall matrix -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation",
    "peerwall explain -f seed.yaml P1 s2",
    "peerwall matrix",
    "peerwall diff -f seed.yaml --set networking.securityMode=IntraClusterTrafficSegregation",
    "peerwall lab probe --name x --from",
]


@pytest.mark.parametrize("text", SAME)
def test_self_in_process_is_the_same(text: str, tmp_path: Path) -> None:
    """A command run in-process prints what it prints in an interpreter of its own, and exits
    alike: output, errors (one line, or the parser's box) and status."""
    words = in_process_words(text)
    assert words is not None
    spawned = Runner(tmp_path / "a").run(text)
    inside = Runner(tmp_path / "b", in_process=True).run(text)
    assert inside == spawned
    assert in_process_words("peerwall matrix -f seed.yaml | head") is None
    assert in_process_words("peerwall lab probe > x.html") is None
    assert in_process_words("peerwall demo --name $X") is None


PIPED = [
    "peerwall matrix -f seed.yaml --to 'P*' | tail -2",
    "peerwall matrix -f nowhere.yaml | tail -1",
    "peerwall matrix -f seed.yaml -o json > out.json",
    "peerwall matrix -f nowhere.yaml > out.json",
    "peerwall matrix --from 'P[45]' -f seed.yaml",
]


@pytest.mark.parametrize("text", PIPED)
def test_self_in_process_pipes_and_redirects_are_the_same(text: str, tmp_path: Path) -> None:
    """``peerwall ARGS | tail -N`` and ``peerwall ARGS > FILE`` run in-process print and exit as
    the shell makes them (tail's status; errors past the pipe or the file), the file written is
    the same, and a glob in single quotes is the command's, not the shell's."""
    assert in_process_command(text) is not None
    spawned_runner, inside_runner = Runner(tmp_path / "a"), Runner(tmp_path / "b", in_process=True)
    spawned, inside = spawned_runner.run(text), inside_runner.run(text)
    assert inside == spawned
    by_shell, by_us = (r.cwd / "out.json" for r in (spawned_runner, inside_runner))
    assert by_us.exists() == by_shell.exists()
    if by_shell.exists():
        assert by_us.read_text() == by_shell.read_text()
    for shell in ("peerwall matrix | tail -1 | head", "peerwall matrix > $F", "peerwall 'a' *"):
        assert in_process_command(shell) is None


def test_self_citations_are_checked(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "As DESIGN.md §1 says; see [semantics](semantics.md) and [x](nowhere.md#a).\n"
        "```sh\npeerwall diff -o markdown > comment.md\n```\n"
    )
    (tmp_path / "semantics.md").write_text("")
    missing = {name for name, found in cited(doc) if found is None}
    assert missing == {"DESIGN.md", "nowhere.md#a", "nowhere.md"}


@pytest.mark.parametrize("path", DOC_FILES, ids=_rel)
def test_every_peerwall_command_shown_exists(path: Path) -> None:
    problems = [
        f"{where}: {why}"
        for where, words in mentioned(path)
        if (why := check_invocation(words)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_there_are_sessions_to_run() -> None:
    # If the detection of blocks or of lab blocks broke, docs would silently go unchecked.
    assert {p.name for p in LAB_DOCS} >= {"README.md", "howto-lab.md"}
    assert {p.name for p in PLAIN_DOCS} >= REQUIRED_DOCS - {
        "howto-lab.md",
        "howto-real-clusters.md",
        "kubernetes.md",
    }


# --- the test can fail ----------------------------------------------------------------------

MODES_DOC = """\
```console
$ peerwall modes
* FullPodToPod                    pods of peered clusters reach each other in every namespace, no restriction
  IntraClusterTrafficSegregation  a peer reaches only the pods it offloaded here and the local backends of services reflected to it; everything inside a physical cluster stays open
(* default; select with --set networking.securityMode=MODE)
```
"""


def _doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_self_a_changed_expected_output_is_detected(tmp_path: Path) -> None:
    good = _doc(tmp_path, MODES_DOC)
    assert run_session(Runner(tmp_path / "a"), sessions(good, MODES_DOC).plain) == []
    changed = MODES_DOC.replace("no restriction", "no restrictions")
    problems = run_session(Runner(tmp_path / "b"), sessions(good, changed).plain)
    assert len(problems) == 1
    assert "output differs" in problems[0] and "+* FullPodToPod" in problems[0]


def test_self_an_unexpected_exit_status_is_detected(tmp_path: Path) -> None:
    failing = "```console\n$ peerwall matrix -f missing.yaml\nmissing.yaml: no such file\n```\n"
    path = _doc(tmp_path, failing)
    problems = run_session(Runner(tmp_path / "a"), sessions(path, failing).plain)
    assert len(problems) == 1 and "exit status 2, the doc expects 0" in problems[0]
    declared = failing.replace("file\n```", "file\n$ echo $?\n2\n```")
    cmds = sessions(path, declared).plain
    assert [c.status for c in cmds] == [2]
    assert run_session(Runner(tmp_path / "b"), cmds) == []


def test_self_ellipses() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert matches(["done in ... s: ok"], ["done in 2.4 s: ok"])
    assert matches(["x  "], ["x", ""])
    assert not matches(["done in ... s: ok"], ["done in 2.4 s: wrong"])
    assert not matches(["a", "b"], ["a", "b", "c"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])


def test_self_unknown_subcommands_and_options_are_detected(tmp_path: Path) -> None:
    text = (
        "```sh\npeerwall matrix -f x.yaml --set networking.securityMode=FullPodToPod\n"
        "peerwall lab probe --name lab --output html > probe.html\n"
        "peerwall lab up -f t.yaml [--set …] [--name lab]\n"
        "helm install peerwall deploy/helm/peerwall --set networking.securityMode=FullPodToPod\n"
        "peerwall matrix -f x.yaml --no-such-option\n"
        "peerwall lab nosuch\n"
        "```\nand inline `peerwall diff -f a.yaml --frobnicate`.\n"
    )
    found = [check_invocation(w) for _, w in mentioned(_doc(tmp_path, text), text)]
    assert found[:3] == [None, None, None]
    assert "no option --no-such-option" in str(found[3])
    assert "no subcommand 'nosuch'" in str(found[4])
    assert "no option --frobnicate" in str(found[5])
    assert len(found) == 6  # helm's release named peerwall is no peerwall command


def test_self_lab_names_are_replaced_and_defaults_added() -> None:
    x = REPO / "x.md"
    cmds = [
        Command("peerwall lab up -f seed.yaml --name try", [], 1, x),
        Command("ip netns exec pw-try-pod-P4 nc -zvw1 10.1.0.2 8080", [], 2, x),
        Command("peerwall demo --set networking.securityMode=FullPodToPod", [], 3, x),
        Command("peerwall lab probe -n lab | tail -1", [], 4, x),
        Command('kill "$(cat "$PEERWALL_STATE_DIR/try/agents/C1.pid")"', [], 5, x),
    ]
    assert lab_names(cmds) == {"try", "demo", "lab"}
    names = {"try": "qz7", "demo": "wx2k", "lab": "vq9"}
    renamed = [rename_labs(c.text, names) for c in cmds]
    assert renamed == [
        "peerwall lab up -f seed.yaml --name qz7",
        "ip netns exec pw-qz7-pod-P4 nc -zvw1 10.1.0.2 8080",
        "peerwall demo --name wx2k --set networking.securityMode=FullPodToPod",
        "peerwall lab probe -n vq9 | tail -1",
        'kill "$(cat "$PEERWALL_STATE_DIR/qz7/agents/C1.pid")"',
    ]
    assert all(unmapped_labs(text, names) == [] for text in renamed)
    assert unmapped_labs("ip netns exec pw-lab-gw-C1 nft list ruleset", names) == ["lab"]
    assert unmapped_labs("peerwall lab down --name other", names) == ["other"]
    fresh = fresh_names({"try", "demo"})
    assert {len(v) for v in fresh.values()} == {3, 4} and not set(fresh.values()) & {"try", "demo"}
    with pytest.raises(ValueError, match="give 'lab status' a --name"):
        lab_names([Command("peerwall lab status", [], 1, x)])


def test_self_here_documents_and_continuations(tmp_path: Path) -> None:
    text = (
        "```console\n$ cat > t.yaml <<'EOF'\nclusters:\n  - {name: C1, podCIDR: 10.244.0.0/16}\n"
        "EOF\n$ peerwall matrix -f t.yaml \\\n    --output csv\nsource,internet@C1\n```\n"
        "```sh\npeerwall matrix -f t.yaml \\\n  --no-such-option\n```\n"
    )
    path = _doc(tmp_path, text)
    cmds = sessions(path, text).plain
    assert [c.text.splitlines()[0] for c in cmds] == [
        "cat > t.yaml <<'EOF'",
        "peerwall matrix -f t.yaml \\",
    ]
    assert [c.expected for c in cmds] == [[], ["source,internet@C1"]]
    assert run_session(Runner(tmp_path / "a"), cmds) == []
    found = [check_invocation(w) for _, w in mentioned(path, text)]
    assert found[:1] == [None] and "no option --no-such-option" in str(found[-1])
