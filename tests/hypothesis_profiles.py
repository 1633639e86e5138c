"""Hypothesis settings of the whole suite, in one place (loaded by ``tests/conftest.py``).

Profiles (``HYPOTHESIS_PROFILE``, default ``ci``) set what every property test shares: no
per-example deadline (a loaded CI machine is not a failing test), no ``too_slow`` health check
(strategies that build whole topologies are slow by nature), the failing example printed so
that it can be replayed. ``thorough`` multiplies every budget by 10, for a long run by hand.

A test names its budget, ``@budget("trace")``; every count is in ``BUDGETS`` below, the one
place to read or change what the suite spends on examples (the profile may multiply them).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = {"ci": 1, "thorough": 10}

for _name, _scale in SCALE.items():
    settings.register_profile(
        _name,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in SCALE:
    raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r}: use one of {', '.join(SCALE)}")
settings.load_profile(PROFILE)

BUDGETS = {
    # The fuzzing budgets of issue 14 (tests/fuzz): 10,250 cases per run in the pure core, 60
    # applied to a kernel. On a 2-core machine under load (load average 9), a text case costs
    # ~1.5 ms, a sequence of up to 12 Kubernetes objects ~14 ms, a mutated whole topology ~40 ms
    # (drawn, loaded, every gateway compiled), hence fewer of those.
    "fuzz-topology-text": 7500,
    "fuzz-topology-data": 250,
    "fuzz-kube-objects": 2500,
    "fuzz-kernel": 60,
    # Properties over generated topologies: each example loads a whole topology and computes its
    # truth table (and more), some milliseconds to some tens of milliseconds.
    "topology-load": 100,  # policy/test_properties.py: generated topologies load
    "small-topology-load": 50,  # policy/test_properties.py: small ones stay small
    "policy-property": 70,  # policy/test_properties.py: each property of the modes
    "strategy-coverage": 150,  # derandomized: the shapes the strategy is known to reach
    "views": 60,  # model/test_load.py: every peered pair's remapped view
    "table-compare": 60,  # policy/test_truthtable.py
    "table-restrict": 40,  # policy/test_truthtable.py
    "json-classes": 60,  # policy/test_json_classes.py
    "trace": 200,  # verify/test_trace.py: traced tables equal the expected ones
    "diff": 60,  # compile/test_diff.py: every transaction lands on the new table
    "flow-verdicts": 100,  # compile/test_flow_verdicts.py: Verdicts against stale, 10 to 40 entries each
    "figure-topology": 40,  # figures/test_topology_figure.py
    "figure-highlight": 40,  # figures/test_matrix_figures.py
    "figure-classes": 30,  # figures/test_matrix_figures.py
    "wiring-steps": 150,  # lab/test_wiring.py: the rewiring plan between two topologies
    "wiring-kernel": 5,  # lab/test_wiring.py: the same, applied to real namespaces (seconds each)
}
"""Examples per CI run, by name (``budget(name)``)."""


def budget(name: str | int, **overrides: object) -> settings:
    """Settings for a test whose example count is ``BUDGETS[name]`` (times the profile's scale).
    A bare count still works, for tests written before every budget had its name here."""
    n = name if isinstance(name, int) else BUDGETS[name]
    return settings(max_examples=n * SCALE[PROFILE], **overrides)  # type: ignore[arg-type]
