"""The semantics of DESIGN.md §1 as pure functions: decisions, truth tables and explanations."""

from peerwall.errors import TableIncomplete  # re-exported: the error of an incomplete table
from peerwall.policy.decide import Decider, Decision, DecisionRule, aggregate
from peerwall.policy.expect import Expected, expect
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.modes import DESCRIPTIONS, EffectiveMode, ModeOrigin, effective_mode
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
