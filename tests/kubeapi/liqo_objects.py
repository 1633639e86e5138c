"""Moved to the package, as the lab serves it too: this name is ``peerwall.lab.apiserver.liqo_objects``."""

import sys

from peerwall.lab.apiserver import liqo_objects

sys.modules[__name__] = liqo_objects
