"""The semantics of DESIGN.md §1 as pure functions: truth tables and explanations."""

from peerwall.policy.expect import Expected, admitted_senders, expect
from peerwall.policy.explain import Explanation, explain_cell
from peerwall.policy.modes import DESCRIPTIONS, EffectiveMode, ModeOrigin, effective_mode
from peerwall.policy.truthtable import Mismatch, TruthTable
from peerwall.policy.verdict import Verdict

__all__ = [
    "DESCRIPTIONS",
    "EffectiveMode",
    "Expected",
    "Explanation",
    "Mismatch",
    "ModeOrigin",
    "TruthTable",
    "Verdict",
    "admitted_senders",
    "effective_mode",
    "expect",
    "explain_cell",
]
