"""The agent's Kubernetes source: a Liqo v1 cluster's objects -> the gateway's desired state.

See ``peerwall.liqo`` for what is read and why, ``objects`` for what each object says, ``join``
for how the objects join into addresses, ``watch`` for the list/watch protocol and
``docs/kubernetes.md`` for the whole picture; the source's settings are
``peerwall.settings.KubeSettings``. The names below are imported when first used (PEP 562):
``peerwall liqo`` and the CLI's ``--help`` read ``gateway_templates`` without loading the HTTP
client.
"""

import typing

from peerwall import lazy

_EXPORTS = {
    "Backoff": "peerwall.agent.kube.watch",
    "KubeApi": "peerwall.agent.kube.client",
    "KubeSource": "peerwall.agent.kube.source",
    "LiqoJoin": "peerwall.agent.kube.join",
}

if typing.TYPE_CHECKING:
    from peerwall.agent.kube.client import KubeApi
    from peerwall.agent.kube.join import LiqoJoin
    from peerwall.agent.kube.source import KubeSource
    from peerwall.agent.kube.watch import Backoff

__all__ = ["Backoff", "KubeApi", "KubeSource", "LiqoJoin"]


_load = lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    return _load(name)
