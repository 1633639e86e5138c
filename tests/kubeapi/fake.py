"""Moved to the package, as the lab serves it too: this name is ``peerwall.lab.apiserver.server``."""

import sys

from peerwall.lab.apiserver import server

sys.modules[__name__] = server
