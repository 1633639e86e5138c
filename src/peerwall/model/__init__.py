"""The topology model: types, loading and validation. Pure: no I/O.

The names below are imported when first used (PEP 562): a module that needs one submodule
(``model.modes``, ``model.describe``) does not load pydantic and the whole schema with it.
"""

import typing

from peerwall import lazy

_EXPORTS = {
    "Cluster": "peerwall.model.topology",
    "Namespace": "peerwall.model.topology",
    "Peering": "peerwall.model.topology",
    "Pod": "peerwall.model.topology",
    "SecurityMode": "peerwall.model.modes",
    "Service": "peerwall.model.topology",
    "Topology": "peerwall.model.topology",
    "load_topology": "peerwall.model.load",
    "parse_mode": "peerwall.model.load",
    "topology_from_data": "peerwall.model.load",
}

if typing.TYPE_CHECKING:
    from peerwall.model.load import load_topology, parse_mode, topology_from_data
    from peerwall.model.modes import SecurityMode
    from peerwall.model.topology import Cluster, Namespace, Peering, Pod, Service, Topology

__all__ = [
    "Cluster",
    "Namespace",
    "Peering",
    "Pod",
    "SecurityMode",
    "Service",
    "Topology",
    "load_topology",
    "parse_mode",
    "topology_from_data",
]


_load = lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    return _load(name)
