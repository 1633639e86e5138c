"""Suite-wide rules for tests on the real kernel.

Tests marked ``lab`` need root, ``ip`` and ``nft``. Without them they are skipped, unless
``PEERWALL_REQUIRE_LAB=1`` (set by ``make test``, which CI runs as root): then a missing lab is a
failure, never a silent skip. At the end of the session, any ``pw-`` namespace, root-namespace
link or child process that the suite created and left behind fails the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hypothesis_profiles  # noqa: F401  (registers and loads the Hypothesis profile)
from labkit import LabUp
from peerwall.dataplane.nft import LibNft
from peerwall.lab import build as labs
from peerwall.lab.plan import LabPlan
from peerwall.model import SecurityMode
from peerwall.model.topology import Topology
from peerwall.settings import LabSettings
from support import REFERENCE, require_lab
from together import TogetherScheduling, module_of

NETNS_DIR = "/run/netns"


LONGEST_FIRST = (
    # The suite's longest units, longest first: a test, or a module of SHARED_MODULES as a whole
    # (`pytest --durations=0` of a whole `make test` run on 4 workers, the last time on 2026-12-07
    # 19:19 UTC, under the load of other runs). Under pytest-xdist they start
    # first, so that none of them is left to run alone at the end. Order only: a test missing
    # here (renamed, new) runs in collection order after them. A file's prefix orders its tests.
    "tests/verify/test_trace.py::test_traced_table_equals_expected_on_generated_topologies",
    "tests/figures/test_browser_figures.py::",
    "tests/lab/test_prober_exact.py::",
    "tests/lab/test_liqo_shape.py::",
    "tests/fuzz/test_fuzz_topology.py::test_mutated_topologies_load_or_are_refused_clearly",
    "tests/lab/test_live_edits.py::test_thirty_and_more_live_edits_of_every_kind",
    "tests/agent/test_endpoint.py::test_healthz_answers_under_2000_slow_senders",
    "tests/security/test_cut_stays_cut.py::",
    "tests/fuzz/test_fuzz_kernel.py::test_damaged_objects_reach_the_kernel_whole_or_not_at_all",
    "tests/faults/test_conntrack_memory.py::test_the_flow_cleanup_does_not_grow_with_the_table",
    "tests/lab/test_wiring.py::test_a_sequence_of_edits_rewires_to_what_a_fresh_build_gives",
    "tests/lab/test_wiring.py::test_any_topology_rewires_into_any_other",
    "tests/faults/test_conntrack_memory.py::",
    "tests/agent/kube/test_kube_emulate.py::test_kubectl_edits_of_the_emulated_clusters",
    "tests/lab/test_wiring.py::test_random_topologies_rewire_like_a_fresh_build",
    "tests/faults/test_held.py::",
    "tests/bench/test_bench_smoke.py::test_every_benchmark_runs_and_reports",
    "tests/agent/kube/test_kube_liqo_packets.py::test_three_clusters_two_way_peering",
    "tests/fuzz/test_fuzz_kube.py::test_any_sequence_of_objects_is_digested_and_compiles",
    "tests/dataplane/test_element_batches.py::test_a_batch_larger_than_a_message_and_the_socket",
    "tests/docs/test_docs.py::test_lab_commands_print_what_the_docs_show[docs/howto-lab.md]",
    "tests/cli/test_daily_use.py::test_completion_of_names_from_the_topology_file",
    "tests/agent/kube/test_kube_export.py::test_a_peeringsecurity_is_the_peerings_mode",
    "tests/cli/test_shared_host.py::test_lab_up_refuses_an_existing_lab_unless_replace",
    "tests/agent/kube/test_kube_export.py::test_a_peer_not_given_is_named_in_one_line",
    "tests/lab/test_liqo_tables.py::test_several_tunnels_in_liqos_shape",
    "tests/cli/test_shared_host.py::test_every_lab_command_without_root_says_so_in_one_line",
    "tests/agent/kube/test_kube_liqo_packets.py::",
    "tests/figures/test_matrix_figures.py::test_any_topology_highlight_is_exactly_differing",
    "tests/lab/test_liqo_tables.py::",
    "tests/lab/test_agents.py::test_sigkill_in_the_middle_of_work_never_opens_anything",
    "tests/cli/test_shared_host.py::",
    "tests/lab/test_live_tables.py::",
    "tests/agent/kube/test_kube_export.py::",
    "tests/faults/test_supervised.py::",
    "tests/dataplane/test_liqo_marks.py::",
    "tests/faults/test_side_files.py::",
    "tests/docs/test_docs.py::",
    "tests/fuzz/test_fuzz_topology.py::",
)


SHARED_MODULES = (
    "tests/lab/test_prober_exact.py::",
    "tests/lab/test_liqo_shape.py::",
    "tests/faults/test_held.py::",
    "tests/figures/test_browser_figures.py::",
    "tests/probe/test_netns_prober.py::",
    "tests/security/test_cut_stays_cut.py::",
    "tests/security/test_table_events.py::",
    "tests/lab/test_stateful.py::",
)
"""Modules whose tests share one module-scoped lab (or browser): under pytest-xdist all their tests
are sent to one worker together, one after the other (tests/together.py), so that it is built
once. Spread over the workers, or interleaved with other modules' tests on one, it is built again
each time. Such a module counts as one entry of LONGEST_FIRST's ordering, by its prefix there."""


def _units(items: list[pytest.Item]) -> list[list[pytest.Item]]:
    """The items in collection order, each alone, except a module of SHARED_MODULES: one unit."""
    units: list[list[pytest.Item]] = []
    shared: dict[str, list[pytest.Item]] = {}
    for item in items:
        module = module_of(item.nodeid, SHARED_MODULES)
        if module is None:
            units.append([item])
        elif module in shared:
            shared[module].append(item)
        else:
            shared[module] = [item]
            units.append(shared[module])
    return units


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``--dist load --maxschedchunk 1``, each worker is
    given two tests to start with, then one more each time it finishes one), the units (a test, or
    a module of SHARED_MODULES) of ``LONGEST_FIRST`` come first: the longest and the shortest of
    the first ``2 × workers`` paired on one worker (the first test of each, then the rest of the
    module: tests/together.py sends them along with its first), then the rest of the list, then
    every other test in collection order, the lab's (marked ``lab``) before the rest. Every worker
    computes the same order, as xdist requires."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if not workers:
        return
    units = _units(items)
    rank: dict[int, int] = {}
    for u, unit in enumerate(units):
        for i, prefix in enumerate(LONGEST_FIRST):
            if any(it.nodeid.startswith(prefix) for it in unit):
                rank[u] = i
                break
    longest = [units[u] for u in sorted(rank, key=lambda u: rank[u])]
    head, tail = longest[: 2 * workers], longest[2 * workers :]
    order: list[pytest.Item] = []
    for i in range(len(head) // 2):
        a, b = head[i], head[-1 - i]
        order += [a[0], b[0], *a[1:], *b[1:]]
    if len(head) % 2:
        order += head[len(head) // 2]
    order += [it for unit in tail for it in unit]
    # Then the lab's tests, and last the rest: a lab test waits on packets and agents as much as
    # it computes, and a run that ends with them leaves a core idle; the rest keep both busy to
    # the end.
    rest = [unit for u, unit in enumerate(units) if u not in rank]
    order += [it for unit in rest if _in_lab(unit) for it in unit]
    order += [it for unit in rest if not _in_lab(unit) for it in unit]
    assert sorted(it.nodeid for it in order) == sorted(it.nodeid for it in items)
    items[:] = order


def _in_lab(unit: list[pytest.Item]) -> bool:
    return any(it.get_closest_marker("lab") is not None for it in unit)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist load`` with the tests of each module of SHARED_MODULES sent to one worker at
    once (tests/together.py)."""
    if config.getvalue("dist") != "load":
        return None
    return TogetherScheduling(config, log, SHARED_MODULES)


@pytest.fixture(autouse=True)
def _lab_marker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab") is not None:
        require_lab()


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace ``pw-t-<random>``, deleted afterwards whatever happens."""
    require_lab()
    name = f"pw-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def nft(netns: str) -> Iterator[LibNft]:
    """A libnftables context bound to ``netns``."""
    with LibNft(netns) as ctx:
        yield ctx


@pytest.fixture
def seed_text() -> str:
    path = REFERENCE / "seed-topology.yaml"
    if not path.exists():
        pytest.fail(f"the seed reference is missing: {path}")
    return path.read_text()


@contextlib.contextmanager
def _labs_in(folder: Path) -> Iterator[LabUp]:
    """Bring up labs with unique names in state folder ``folder`` (``PEERWALL_STATE_DIR`` names
    it meanwhile, so lab functions called without settings find them); every one is removed on
    the way out, even after a failure."""
    names: list[tuple[str, LabSettings]] = []

    def up(topology: Topology, text: str, mode: SecurityMode, **overrides: Any) -> LabPlan:
        name = f"t{secrets.token_hex(3)}"
        settings = LabSettings(**overrides)
        names.append((name, settings))
        return labs.up(name, topology, text, "test", mode, settings)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PEERWALL_STATE_DIR", str(folder))
        try:
            yield up
        finally:
            for name, settings in names:
                labs.down(name, settings)


@pytest.fixture
def lab_up(tmp_path: Path) -> Iterator[LabUp]:
    """Bring up labs with unique names, in a state folder of the test's own; every one is removed
    at teardown, even after failure. ``up(..., agent_resync_interval=1)`` overrides a setting."""
    with _labs_in(tmp_path / "labs") as up:
        yield up


@pytest.fixture(scope="module")
def module_lab_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabUp]:
    """``lab_up`` for the labs that a module's tests share (through a module-scoped fixture of
    the module's own; the module belongs in SHARED_MODULES, so that one xdist worker runs its
    tests and builds each lab once), in a state folder of the module's; removed after its last
    test."""
    with _labs_in(tmp_path_factory.mktemp("shared-labs")) as up:
        yield up


def _pw_namespaces() -> set[str]:
    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith("pw-")}
    except FileNotFoundError:
        return set()


def _root_pw_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}
    return {n for n in names if n.startswith(("pw", "pv"))}


def _children() -> set[int]:
    me = str(os.getpid())
    kids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            kids.add(int(pid))
    return kids


_before: dict[str, set[str] | set[int]] = {}
_workers_problems: list[str] = []
"""Under pytest-xdist (``make test`` runs the suite on several workers): what each worker found
left behind by its own tests (``pytest_testnodedown`` gathers it in the controller)."""


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.has_plugin("dsession")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Namespaces and links are machine-wide: the process that runs before and after every test
    # (the controller under xdist, before its workers start) compares them. Child processes are
    # per process: each worker compares its own.
    if not _is_worker(session.config):
        _before["netns"] = _pw_namespaces()
        _before["links"] = _root_pw_links() if shutil.which("ip") else set()
    if not _is_controller(session.config):
        _before["children"] = _children()


def _left_behind(config: pytest.Config) -> list[str]:
    problems = []
    if not _is_worker(config):
        left = _pw_namespaces() - _before["netns"]
        if left:
            problems.append(f"network namespaces left behind: {', '.join(sorted(left))}")
        links = (_root_pw_links() if shutil.which("ip") else set()) - _before["links"]
        if links:
            problems.append(f"links added to the root namespace: {', '.join(sorted(links))}")
    if not _is_controller(config):
        kids = _children() - _before["children"]
        if kids:
            problems.append(f"child processes still running: {', '.join(map(str, sorted(kids)))}")
    return problems


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _workers_problems.extend(getattr(node, "workeroutput", {}).get("left_behind", []))


@pytest.hookimpl(trylast=True)  # under xdist, after the workers are shut down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    problems = _left_behind(session.config)
    if _is_worker(session.config):
        session.config.workeroutput["left_behind"] = problems  # type: ignore[attr-defined]
        return
    problems += _workers_problems
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        for p in problems:
            if reporter:
                reporter.write_line(f"CLEANUP FAILURE: {p}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
