"""peerwall: Liqo's connectivity security modes for any multi-cluster setup.

Decide (``expect``), enforce (``gateway_state`` -> ``compile_ruleset`` -> the dataplane, or the
agent), explain and verify who may
connect to whom, under ``FullPodToPod`` or ``IntraClusterTrafficSegregation``.
"""

import typing as _typing

# The public names, each from the module that defines it. They are imported when first used
# (PEP 562), so that ``import peerwall.errors`` or the CLI's ``--help`` do not load the whole
# core: a command pays only for what it runs.
_EXPORTS = {
    "Decision": "peerwall.policy",
    "Expected": "peerwall.policy",
    "Explanation": "peerwall.policy",
    "GatewayState": "peerwall.compile.state",
    "LabError": "peerwall.errors",
    "ModeInvalid": "peerwall.errors",
    "NftError": "peerwall.errors",
    "PeerState": "peerwall.compile.state",
    "PeerwallError": "peerwall.errors",
    "Problem": "peerwall.errors",
    "SecurityMode": "peerwall.model",
    "RemapExhausted": "peerwall.errors",
    "TableIncomplete": "peerwall.errors",
    "Topology": "peerwall.model",
    "TopologyInvalid": "peerwall.errors",
    "TruthTable": "peerwall.policy",
    "UnknownName": "peerwall.errors",
    "Verdict": "peerwall.policy",
    "compile_ruleset": "peerwall.compile.build:build",
    "expect": "peerwall.policy",
    "gateway_state": "peerwall.compile.desired",
    "load_topology": "peerwall.model",
    "parse_mode": "peerwall.model",
}

if _typing.TYPE_CHECKING:
    from peerwall.compile.build import build as compile_ruleset
    from peerwall.compile.desired import gateway_state
    from peerwall.compile.state import GatewayState, PeerState
    from peerwall.errors import (
        LabError,
        ModeInvalid,
        NftError,
        PeerwallError,
        Problem,
        RemapExhausted,
        TableIncomplete,
        TopologyInvalid,
        UnknownName,
    )
    from peerwall.model import SecurityMode, Topology, load_topology, parse_mode
    from peerwall.policy import (
        Decision,
        Expected,
        Explanation,
        TruthTable,
        Verdict,
    )
    from peerwall.policy.expected import expect


def __getattr__(name: str) -> _typing.Any:
    # Imported here, so that ``import peerwall.errors`` loads nothing more of peerwall.
    from peerwall.lazy import exports

    return exports(__name__, _EXPORTS)(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


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
    "RemapExhausted",
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
