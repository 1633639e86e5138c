"""The semantics of DESIGN.md §1 as pure functions: decisions, truth tables and explanations.

The names below are imported when first used (PEP 562), as in ``peerwall.model``: ``peerwall
modes`` reads ``model.modes`` without loading the decider and the topology's schema.
"""

import typing

from peerwall import lazy

_EXPORTS = {
    "Comparison": "peerwall.policy.truthtable",
    "DESCRIPTIONS": "peerwall.model.modes",
    "Decider": "peerwall.policy.decide",
    "Decision": "peerwall.policy.decide",
    "DecisionRule": "peerwall.policy.decide",
    "DiffBlock": "peerwall.policy.truthtable",
    "Differences": "peerwall.policy.truthtable",
    "EffectiveMode": "peerwall.policy.modes",
    "Expected": "peerwall.policy.expected",
    "Explanation": "peerwall.policy.explain",
    "Mismatch": "peerwall.policy.truthtable",
    "ModeOrigin": "peerwall.policy.modes",
    "TableIncomplete": "peerwall.errors",
    "TruthTable": "peerwall.policy.truthtable",
    "Verdict": "peerwall.policy.verdict",
    "aggregate": "peerwall.policy.decide",
    "effective_mode": "peerwall.policy.modes",
    "expect": "peerwall.policy.expected",
    "explain_cell": "peerwall.policy.explain",
}

if typing.TYPE_CHECKING:
    from peerwall.errors import TableIncomplete  # re-exported: the error of an incomplete table
    from peerwall.model.modes import DESCRIPTIONS
    from peerwall.policy.decide import Decider, Decision, DecisionRule, aggregate
    from peerwall.policy.expected import Expected, expect
    from peerwall.policy.explain import Explanation, explain_cell
    from peerwall.policy.modes import EffectiveMode, ModeOrigin, effective_mode
    from peerwall.policy.truthtable import (
        Comparison,
        DiffBlock,
        Differences,
        Mismatch,
        TruthTable,
    )
    from peerwall.policy.verdict import Verdict

__all__ = [
    "DESCRIPTIONS",
    "Comparison",
    "Decider",
    "Decision",
    "DecisionRule",
    "DiffBlock",
    "Differences",
    "EffectiveMode",
    "Expected",
    "Explanation",
    "Mismatch",
    "ModeOrigin",
    "TableIncomplete",
    "TruthTable",
    "Verdict",
    "aggregate",
    "effective_mode",
    "expect",
    "explain_cell",
]


_load = lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    return _load(name)
