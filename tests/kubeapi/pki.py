"""Moved to the package, as the lab serves it too: this name is ``peerwall.lab.apiserver.pki``."""

import sys

from peerwall.lab.apiserver import pki

sys.modules[__name__] = pki
