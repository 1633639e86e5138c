"""The command line: thin commands over the core. ``entry`` is the ``peerwall`` program; it
answers the listings itself from ``commands`` (the table of every command: name, one-line help,
implementing module) and hands the rest to the typer app, ``main``, which imports a command's
module only when it runs.

Shared pieces for every command module: ``options`` (topology file, ``--set``, ``--values``) and
``render`` (truth tables as rich tables, csv, markdown, json). This package imports nothing at
import time so that sibling modules can import ``peerwall.cli.options`` without cycles, and the
entry point starts without typer.
"""
