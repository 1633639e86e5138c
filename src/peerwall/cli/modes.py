"""``peerwall modes``: the security modes and what each allows (``modelist`` builds the listing;
the entry point prints it itself for a bare ``peerwall modes``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from peerwall.cli import render
from peerwall.cli.modelist import modes_document, modes_text
from peerwall.cli.options import TextOrJson


def modes(
    output: Annotated[
        TextOrJson, typer.Option("--output", "-o", help="text, json or yaml.")
    ] = TextOrJson.text,
) -> None:
    """The security modes, with what each allows; * marks the default.

    Example: peerwall modes --output json
    """
    if output is TextOrJson.text:
        sys.stdout.write(modes_text())
    else:
        render.write_document(modes_document(), sys.stdout, output.value)
