"""The agent's Kubernetes source: a Liqo v1 cluster's objects -> the gateway's desired state.

See ``liqo`` for what is read and why, ``objects`` for what each object says, ``join`` for how
the objects join into addresses, ``watch`` for the list/watch protocol and ``docs/kubernetes.md``
for the whole picture.
"""

from peerwall.agent.kube.client import KubeApi
from peerwall.agent.kube.join import KubeSettings, LiqoJoin
from peerwall.agent.kube.objects import ReflectionPolicy
from peerwall.agent.kube.source import KubeSource
from peerwall.agent.kube.watch import Backoff

__all__ = ["Backoff", "KubeApi", "KubeSettings", "KubeSource", "LiqoJoin", "ReflectionPolicy"]
