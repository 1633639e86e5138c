"""Moved to the package, as the lab serves it too: this name is ``peerwall.lab.apiserver.rbac``."""

import sys

from peerwall.lab.apiserver import rbac

sys.modules[__name__] = rbac
