"""The ``peerwall`` program (its console script): answers what only lists something — ``peerwall``,
``peerwall --help`` and ``peerwall modes`` — from the command table (``commands``) without loading
typer, rich or pydantic, and hands every other command line, unchanged, to the typer app
(``main``). Those three start about as fast as the interpreter; the typer app alone costs
a tenth of a second of imports before it parses anything.

The top-level help is click's plain layout (typer's without rich): the same usage, commands and
options as the typer app's help, which tests hold equal.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap

from peerwall.cli.commands import COMMANDS, COMPLETE_VAR, EPILOG, HELP, OPTIONS, PROG

USAGE = f"Usage: {PROG} [OPTIONS] COMMAND [ARGS]..."
NO_COMMAND_STATUS = 2
"""``peerwall`` alone prints the help and fails, as a usage error does (typer's no_args_is_help)."""


def main() -> None:
    args = sys.argv[1:]
    if COMPLETE_VAR not in os.environ:  # a shell asking for completions runs a bare `peerwall`
        if args in ([], ["--help"]):
            sys.stdout.write(help_text())
            if not args:
                sys.exit(NO_COMMAND_STATUS)
            return
        if args == ["modes"]:
            from peerwall.cli.modelist import modes_text

            sys.stdout.write(modes_text())
            return
    from peerwall.cli.main import main as typer_main

    typer_main()


def help_text(columns: int | None = None) -> str:
    """``peerwall --help``, wrapped to the terminal (at most 80 columns, as click does)."""
    if columns is None:
        columns = shutil.get_terminal_size().columns
    width = max(min(columns, 80) - 2, 50)
    options = [(f"{name} {metavar}".strip(), text) for name, (metavar, text) in OPTIONS.items()]
    commands = [(name, text) for name, (text, _) in COMMANDS.items()]
    return "\n".join(
        [
            USAGE,
            "",
            *_paragraph(HELP, width),
            "",
            "Options:",
            *_definitions(options, width),
            "",
            "Commands:",
            *_definitions(commands, width),
            "",
            *_paragraph(EPILOG, width),
            "",
        ]
    )


def _paragraph(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="  ")


def _definitions(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Terms and their help in two columns; a term too wide for its column has its help on the
    lines below (click's ``write_dl``)."""
    column = min(max(len(term) for term, _ in rows), 30)
    indent = 2 + column + 2
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, max(width - indent, 10)) or [""]
        if len(term) <= column:
            lines.append(f"  {term:<{column}}  {wrapped[0]}".rstrip())
            wrapped = wrapped[1:]
        else:
            lines.append(f"  {term}")
        lines += [" " * indent + line for line in wrapped]
    return lines
