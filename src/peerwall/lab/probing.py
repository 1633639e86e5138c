"""A lab's table observed by real packets: the cells of ``verify``, probed through ``LabSite``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

from peerwall.lab.plan import LabPlan
from peerwall.lab.site import LabSite
from peerwall.lab.state import lab_folder
from peerwall.model.parse import gc_paused
from peerwall.probe.runner import NetnsRunner
from peerwall.settings import LabSettings, ProbeSettings
from peerwall.verify.cells import Endpoints, cell_specs
from peerwall.verify.observe import Observed, observe


def observe_lab(
    plan: LabPlan,
    mode: str,
    lab: LabSettings | None = None,
    probe: ProbeSettings = ProbeSettings(),
    progress: Callable[[int, int], None] | None = None,
    state_dir: str | None = None,
    *,
    only: tuple[Sequence[str], Sequence[str]] | None = None,
) -> Observed:
    """Probe every cell of ``plan``'s table, or with ``only=(sources, destinations)`` the cells of
    those (in table order). ``state_dir`` (default: the lab's own folder, if it has one) keeps the
    rotating source-port window between runs, so a run never reuses the 5-tuples of the last ones
    (stale conntrack entries would answer for them)."""
    # Every cell's spec, dials and results are made at once: no collection cycles meanwhile.
    with gc_paused():
        return _observe_lab(plan, mode, lab or LabSettings(), probe, progress, state_dir, only)


def _observe_lab(
    plan: LabPlan,
    mode: str,
    lab: LabSettings,
    probe: ProbeSettings,
    progress: Callable[[int, int], None] | None,
    state_dir: str | None,
    only: tuple[Sequence[str], Sequence[str]] | None,
) -> Observed:
    if state_dir is None and os.path.isdir(lab_folder(plan.name, lab)):
        state_dir = lab_folder(plan.name, lab)
    t = plan.topology
    how = Endpoints(plan.internet_ip, lab.pod_port, lab.api_port)
    cells = cell_specs(t, how)
    sources, destinations = t.sources, t.destinations
    if only is not None:
        keep_s, keep_d = set(only[0]), set(only[1])
        sources = tuple(s for s in sources if s in keep_s)
        destinations = tuple(d for d in destinations if d in keep_d)
        cells = [c for c in cells if c.source in keep_s and c.destination in keep_d]
    window = os.path.join(state_dir, "probe-ports") if state_dir else None
    runner = NetnsRunner(
        LabSite(plan, lab, window), {p.name: p.physical for p in t.pods}, probe, progress
    )
    started = time.perf_counter()
    observed = observe(runner, mode, sources, destinations, cells)
    return Observed(observed.table, observed.cells, time.perf_counter() - started, runner.attempts)
