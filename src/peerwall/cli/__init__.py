"""The command line: thin commands over the core (``peerwall.cli.main``).

Shared pieces for every command module: ``options`` (topology file, ``--set``, ``--values``) and
``render`` (truth tables as rich tables, csv, markdown, json). This package imports nothing at
import time so that sibling modules can import ``peerwall.cli.options`` without cycles.
"""
