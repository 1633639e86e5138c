"""``python -m peerwall.cli``: the same as the ``peerwall`` command."""

from peerwall.cli.entry import main

main()
