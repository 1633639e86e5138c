"""peerwall: Liqo's connectivity security modes for any multi-cluster setup.

Decide (``expect``), enforce (``gateway_state`` -> ``compile_ruleset`` -> the dataplane, or the
agent), explain and verify who may
connect to whom, under ``FullPodToPod`` or ``IntraClusterTrafficSegregation``.
"""

from peerwall.compile.build import build as compile_ruleset
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import GatewayState, PeerState
from peerwall.errors import (
    LabError,
    ModeInvalid,
    NftError,
    PeerwallError,
    Problem,
    TopologyInvalid,
    UnknownName,
)
from peerwall.model import SecurityMode, Topology, load_topology, parse_mode
from peerwall.policy import (
    Decision,
    Expected,
    Explanation,
    TableIncomplete,
    TruthTable,
    Verdict,
    expect,
)

__all__ = [
    "Decision",
    "Expected",
    "Explanation",
    "GatewayState",
    "LabError",
    "ModeInvalid",
    "NftError",
    "PeerState",
    "PeerwallError",
    "Problem",
    "SecurityMode",
    "TableIncomplete",
    "Topology",
    "TopologyInvalid",
    "TruthTable",
    "UnknownName",
    "Verdict",
    "compile_ruleset",
    "expect",
    "gateway_state",
    "load_topology",
    "parse_mode",
]
__version__ = "0.1.0"
