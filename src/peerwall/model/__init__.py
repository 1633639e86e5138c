"""The topology model: types, loading and validation. Pure: no I/O."""

from peerwall.model.load import load_topology, parse_mode, topology_from_data
from peerwall.model.topology import (
    Cluster,
    Namespace,
    Peering,
    Pod,
    SecurityMode,
    Service,
    Topology,
)

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
