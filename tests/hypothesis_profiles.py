"""Hypothesis settings of the whole suite, in one place (loaded by ``tests/conftest.py``).

Profiles (``HYPOTHESIS_PROFILE``, default ``ci``) set what every property test shares: no
per-example deadline (a loaded CI machine is not a failing test), no ``too_slow`` health check
(strategies that build whole topologies are slow by nature), the failing example printed so
that it can be replayed. ``thorough`` multiplies every budget by 10, for a long run by hand.

A test says only how many examples it needs, through ``budget`` (the suite's count; the profile
may multiply it); the counts in ``BUDGETS`` are the fuzzing budgets of issue 14 (at least 10,000
cases per run, most of them in the pure core, where a case costs well under a millisecond).
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
    "fuzz-topology-text": 7500,
    "fuzz-topology-data": 250,
    "fuzz-kube-objects": 2500,
    "fuzz-kernel": 60,
}
"""Fuzzing budgets (examples per CI run): 10,250 in the pure core, 60 applied to a kernel. On a
2-core machine under load (load average 9), a text case costs ~1.5 ms, a sequence of up to 12
Kubernetes objects ~14 ms, a mutated whole topology ~40 ms (drawn, loaded, every gateway
compiled), hence fewer of those."""


def budget(examples: int | str, **overrides: object) -> settings:
    """Settings for a test that needs ``examples`` (a count, or a name in ``BUDGETS``)."""
    n = BUDGETS[examples] if isinstance(examples, str) else examples
    return settings(max_examples=n * SCALE[PROFILE], **overrides)  # type: ignore[arg-type]
