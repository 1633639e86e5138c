"""peerwall: Liqo's connectivity security modes for any multi-cluster setup.

Decide (``expect``), enforce (``compile_ruleset`` + the dataplane), explain and verify who may
connect to whom, under ``FullPodToPod`` or ``IntraClusterTrafficSegregation``.
"""

from peerwall.compile.build import build as compile_ruleset
from peerwall.errors import (
    LabError,
    ModeInvalid,
    NftError,
    PeerwallError,
    Problem,
    RetryLater,
    SyncError,
    TopologyInvalid,
    UnknownName,
    Unrecoverable,
)
from peerwall.model import SecurityMode, Topology, load_topology, parse_mode
from peerwall.policy import Expected, Explanation, TruthTable, Verdict, expect

__all__ = [
    "Expected",
    "Explanation",
    "LabError",
    "ModeInvalid",
    "NftError",
    "PeerwallError",
    "Problem",
    "RetryLater",
    "SecurityMode",
    "SyncError",
    "Topology",
    "TopologyInvalid",
    "TruthTable",
    "UnknownName",
    "Unrecoverable",
    "Verdict",
    "compile_ruleset",
    "expect",
    "load_topology",
    "parse_mode",
]
__version__ = "0.1.0"
