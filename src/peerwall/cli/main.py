"""``peerwall``: the command line as a typer app. Thin commands over the core, each in its own
module (``matrix``, ``explain``, ``modes``, ``lab``...); option parsing is in ``options``, rendering
in ``render``.

The commands are listed in ``commands.COMMANDS`` (name, one-line help, implementing function) and
this app imports a command's module only when that command runs (or a help lists it), so that
``peerwall matrix`` does not load the lab and ``peerwall lab`` not the figures. ``entry`` answers
``peerwall --help`` and ``peerwall modes`` from the same table before typer is loaded at all.

Every ``PeerwallError`` raised under any command (sub-groups included) is printed to stderr, one line
per problem and without a traceback, and the exit status is 2 (as for a usage error).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup, TyperOption
from typer.models import CommandInfo, TyperInfo

from peerwall import settings
from peerwall.cli.commands import COMMANDS, COMPLETE_VAR, EPILOG, HELP, OPTIONS, PROG
from peerwall.errors import PeerwallError

EXIT_ERROR = 2


def _flag_type(self: TyperOption, ctx: Any) -> str | None:
    """A flag takes no value: its help line shows none (typer 0.29 shows ``<bool>``, which reads
    as if ``--force-table true`` were expected)."""
    return None if self.is_flag else _option_type(self, ctx)


_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


class LazyCommands(Mapping[str, Any]):  # of typer's (vendored) click commands
    """The root's subcommands by name, in ``COMMANDS`` order: each is built (its module imported)
    the first time it is asked for, as typer would have built it from ``app.command()`` or
    ``app.add_typer()``."""

    def __init__(self, group: TyperGroup) -> None:
        self._group = group
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._built:
            self._built[name] = self._build(name, *COMMANDS[name])
        return self._built[name]

    def get(self, name: str, default: Any = None) -> Any:
        # Mapping.get would turn a KeyError raised while importing a command into "no such command".
        return self[name] if name in COMMANDS else default

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)

    def _build(self, name: str, help: str, target: str) -> Any:
        module, _, attribute = target.partition(":")
        implementation = getattr(importlib.import_module(module), attribute)
        if isinstance(implementation, typer.Typer):
            return typer.main.get_group_from_info(
                TyperInfo(implementation, name=name, help=help),
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=self._group.rich_markup_mode,
                suggest_commands=self._group.suggest_commands,
            )
        return typer.main.get_command_from_info(
            CommandInfo(name=name, callback=implementation),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=self._group.rich_markup_mode,
        )


class PeerwallGroup(TyperGroup):
    """The root: its subcommands come from the command table, loaded on demand; a
    ``PeerwallError`` from any subcommand becomes its message on stderr and status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = LazyCommands(self)  # type: ignore[assignment]  # read-only: no add_command

    @property
    def epilog(self) -> str | None:
        """The epilog escaped for rich, whose markup would swallow "[bash|zsh|fish|powershell]";
        escaped when read (by a help, the only reader), so that a command's run does not load rich."""
        from rich.markup import escape

        return escape(self._epilog) if self._epilog else self._epilog

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        self._epilog = value

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)  # the names alone: listing them imports nothing

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if COMPLETE_VAR in os.environ:  # the shell asks for completions: typer's shell classes
            from typer._completion_classes import completion_init

            completion_init()
        return super().main(*args, **kwargs)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """A bare ``--install-completion`` / ``--show-completion`` means the current shell (the
        option's value is optional, which typer's options cannot say)."""
        if ctx.parent is None:
            args = list(args)
            for i, word in enumerate(args):
                if word in COMPLETION_OPTIONS and (i + 1 == len(args) or args[i + 1][:1] == "-"):
                    args.insert(i + 1, DETECT)
                    break
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:  # typer vendors click: its Context type is private
        try:
            return super().invoke(ctx)
        except PeerwallError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    cls=PeerwallGroup,
    name=PROG,
    help=HELP,
    epilog=EPILOG,  # escaped by PeerwallGroup.epilog
    no_args_is_help=True,
    # Typer's own --install-completion is a flag that installs for the shell it detects (the
    # parent process): `--install-completion zsh` from bash installed bash. Ours takes the shell.
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("peerwall")  # the distribution
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            version = "unknown"
        typer.echo(f"{PROG} {version}")
        raise typer.Exit()


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
DETECT = "current"
"""What a bare --install-completion / --show-completion means: the shell it runs under."""


def _shell(value: str) -> str | None:
    """The shell named (or, for an empty value, the current one), or a usage error."""
    if value == DETECT:
        from typer._completion_shared import _get_shell_name

        return _get_shell_name()
    if value not in SHELLS:
        raise typer.BadParameter(f"{value!r}: give one of {', '.join(SHELLS)}")
    return value


def _install_completion(ctx: typer.Context, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import install

    completion_init()
    shell, path = install(shell=_shell(value))
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell")
    raise typer.Exit()


def _show_completion(ctx: typer.Context, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    shell = _shell(value) or ""
    typer.echo(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell))
    raise typer.Exit()


COMPLETION_OPTIONS = ("--install-completion", "--show-completion")


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help=OPTIONS["--version"][1]),
    ] = False,
    install_completion: Annotated[
        str | None,
        typer.Option(
            "--install-completion",
            metavar=OPTIONS["--install-completion"][0],
            callback=_install_completion,
            expose_value=False,
            is_eager=True,
            help=OPTIONS["--install-completion"][1],
            show_default=False,
        ),
    ] = None,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            metavar=OPTIONS["--show-completion"][0],
            callback=_show_completion,
            expose_value=False,
            is_eager=True,
            help=OPTIONS["--show-completion"][1],
            show_default=False,
        ),
    ] = None,
    max_input_size: Annotated[
        int | None,
        typer.Option(
            "--max-input-size",
            min=1,
            metavar=OPTIONS["--max-input-size"][0],
            help=OPTIONS["--max-input-size"][1],
        ),
    ] = None,
) -> None:
    # The root's help is the table's HELP, given to typer.Typer above.
    settings.set_max_input_bytes(max_input_size)


def main() -> None:
    """The typer app as a program named ``peerwall`` (completion scripts and variables are named
    after it). The console script is ``entry.main``, which calls this for every command line it
    does not answer itself."""
    app(prog_name=PROG)
