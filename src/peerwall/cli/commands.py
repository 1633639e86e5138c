"""The command line's table of contents: the one home of each command's name, its one-line help
and the function (or sub-app) that implements it, and of the program's own help and options.

Two readers, so that the cheap answers stay cheap: the typer app (``main``) imports a command's
module only when that command runs, and the entry point (``entry``) prints ``peerwall``,
``peerwall --help`` and ``peerwall modes`` from this table without loading typer, rich or
pydantic. This module therefore imports nothing.
"""

from __future__ import annotations

PROG = "peerwall"

COMPLETE_VAR = "_PEERWALL_COMPLETE"
"""The variable a completion script sets when the shell asks for completions."""

HELP = "Liqo's connectivity security modes: decide, enforce with nftables, explain, verify."

EPILOG = (
    "Exit status, for every command: 0 ok; 1 a check failed (wrong cells, drift, a broken "
    "lab, a diff that loses access, a table too large to print); 2 bad input or an error. "
    "Shell completion: peerwall --install-completion [bash|zsh|fish|powershell]."
)

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (one-line help, "module:attribute"), in the order the help lists them. The help is
    # the first paragraph of the function's docstring (a test holds them equal); an attribute
    # that is a typer app is a group of subcommands, and this help is its help.
    "matrix": (
        "The expected connectivity matrix: rows are source pods, columns destinations.",
        "peerwall.cli.matrix:matrix",
    ),
    "topology": (
        "The virtual cluster as a figure on standard output: clusters, namespaces, pods, "
        "services, and the mode each side of each peering enforces.",
        "peerwall.cli.matrix:topology_cmd",
    ),
    "explain": (
        "Why SRC can or cannot connect to DST: the rule, the receiver, the peering and the mode.",
        "peerwall.cli.explain:explain",
    ),
    "trace": (
        "Walk a packet from SRC to DST through the compiled gateway rulesets, hook by hook.",
        "peerwall.cli.explain:trace_cmd",
    ),
    "modes": (
        "The security modes, with what each allows; * marks the default.",
        "peerwall.cli.modes:modes",
    ),
    "export": (
        "The topology of live Liqo clusters, as a topology file (docs/topology-format.md).",
        "peerwall.cli.export:export_cmd",
    ),
    "rules": (
        "The nftables table (inet peerwall) of one cluster's gateway, as an nft script.",
        "peerwall.cli.rules:rules",
    ),
    "demo": (
        "Bring the seed topology up, probe it under each mode, show the observed tables, "
        "tear down.",
        "peerwall.cli.lab:demo",
    ),
    "agent": (
        "Keep this gateway's nftables table equal to the desired state, continuously.",
        "peerwall.cli.agent:agent",
    ),
    "diff": (
        "The cells a change would alter, each explained before and after; exits 1 if access "
        "is lost.",
        "peerwall.cli.diff:diff",
    ),
    "lab": ("Build, probe, inspect and remove the emulated lab.", "peerwall.cli.lab:app"),
    "liqo": ("What peerwall derives from a Liqo installation.", "peerwall.cli.liqo:app"),
}

OPTIONS: dict[str, tuple[str, str]] = {
    # The root's options: name: (metavar, help); the typer app's root callback takes its help
    # from here. "--help" is click's own.
    "--version": ("", "Print the version."),
    "--install-completion": (
        "[SHELL]",
        "Install completion for SHELL: bash, zsh, fish or powershell (default: the current shell).",
    ),
    "--show-completion": (
        "[SHELL]",
        "Print the completion script for SHELL (default: the current shell).",
    ),
    "--max-input-size": (
        "BYTES",
        "The largest input read (topology, values, standard input, the agent's file); default "
        "$PEERWALL_MAX_INPUT_BYTES, else 128 MiB.",
    ),
    "--help": ("", "Show this message and exit."),
}
