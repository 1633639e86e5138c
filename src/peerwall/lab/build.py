"""Topology -> a running emulated virtual cluster in network namespaces, and back to nothing.

``up`` is idempotent: it first removes whatever a lab of the same name left behind (a crashed run
included), then builds everything, and on any failure removes what it built before re-raising.
Nothing is ever added to the root namespace: every link is created from inside a ``pw-`` namespace
with its peer end moved straight into another one.

Building and changing a lab are one code path: ``up`` is ``rewire(None, plan)`` (``lab.wiring``
says what to create, ``lab.rewire`` does it), and ``rewire_lab`` is the same from the plan a
running lab was built for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from peerwall.compile.build import build
from peerwall.compile.desired import gateway_state
from peerwall.compile.flows import Verdicts
from peerwall.compile.names import FAMILY, GUARD_TABLE, TABLE, clashes, tunnel_ifname
from peerwall.compile.state import GatewayState
from peerwall.dataplane.apply import SyncResult, sync
from peerwall.dataplane.conntrack import Conntrack
from peerwall.dataplane.drift import GUARD_UP, Drift, read_drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import table_exists
from peerwall.errors import LabError, PeerwallError
from peerwall.lab import agents, liqo
from peerwall.lab.netns import delete_namespaces, list_namespaces
from peerwall.lab.plan import LabPlan, check_lab_name
from peerwall.lab.rewire import rewire
from peerwall.lab.state import (
    LabState,
    lab_folder,
    load_state,
    locked,
    owner,
    remove_state,
    save_state,
)
from peerwall.lab.wiring import Changes
from peerwall.model.spec import SecurityMode
from peerwall.model.topology import Topology
from peerwall.settings import LabSettings

Progress = Callable[[str], None]


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces and nftables rules: run it as root")


def desired_state(
    plan: LabPlan, cluster: str, mode: SecurityMode, audit: bool = False
) -> GatewayState:
    """What ``cluster``'s gateway enforces in the lab: its tunnels are ``pwt-<hash8(peer)>``, the
    peer gateways are known by their tunnel addresses, and the gateways do the remapping."""
    gateways = {peer: plan.tunnel(cluster, peer)[2] for peer in plan.topology.peers[cluster]}
    return gateway_state(plan.topology, cluster, mode, gateways=gateways, audit=audit)


def clear_stale_flows(netns: str, state: GatewayState) -> int:
    """Delete the tracked connections ``state`` would not have let through (``compile.flows``)."""
    with Conntrack(netns) as ct:
        about = {net for peer in state.peers.values() for net in peer.sources}
        return ct.delete_where(Verdicts(state), about).count


def apply_modes(
    plan: LabPlan, mode: SecurityMode, progress: Progress | None = None, audit: bool = False
) -> dict[str, SyncResult]:
    """Bring every gateway's ``inet peerwall`` table to the desired state for ``mode``, and clear
    the tracked connections that state forbids."""
    out = {}
    for c in plan.topology.clusters:
        state = desired_state(plan, c.name, mode, audit)
        with LibNft(plan.gateway_ns(c.name)) as nft:
            out[c.name] = sync(nft, build(state))
        if out[c.name].changed:
            clear_stale_flows(plan.gateway_ns(c.name), state)
        if progress:
            o = out[c.name]
            kind = "full replace" if o.full else f"+{o.added}/-{o.removed} elements"
            progress(
                f"{c.name}: peerwall table synced ({kind})" if o.changed else f"{c.name}: in sync"
            )
    return out


def up(
    name: str,
    topology: Topology,
    topology_text: str,
    source: str,
    mode: SecurityMode,
    settings: LabSettings | None = None,
    progress: Progress | None = None,
    *,
    replace: bool = True,
    audit: bool = False,
    shape: str = "simple",
) -> LabPlan:
    """Build the lab and start its agents; on any failure, remove what was built.

    ``shape``: ``simple`` (one gateway per cluster, agents on the file source) or ``liqo``
    (``lab.liqo``: Liqo v1's gateway per peer, API servers, agents on the Kubernetes source).

    A lab of the same name (or what a crashed one left behind) is replaced, or with
    ``replace=False`` refused: on a shared machine, a name in use is someone else's lab."""
    settings = settings or LabSettings()
    _require_root()
    say = progress or (lambda _msg: None)
    plan = LabPlan(name, topology)
    with locked(name, settings), _sigterm_interrupts():
        if not replace and (found := existing(name, settings)):
            raise LabError(
                f"lab {name} already exists ({found}): give --replace to rebuild it, or pick "
                "another --name"
            )
        _down(name, settings)
        if shape == liqo.SHAPE:
            return _up_liqo(plan, topology_text, source, mode, settings, say, audit)
        if shape != "simple":
            raise LabError(f"--shape {shape}: the lab's shapes are simple and liqo")
        refuse_shared_gateway_clashes(topology)
        try:
            _build(plan, settings, mode, say)
            save_state(LabState(name, source, mode.value, audit=audit), settings, topology_text)
            if settings.agents:
                started = time.perf_counter()
                digests = agents.write_inputs(plan, settings, mode, topology_text, audit)
                agents.start(plan, settings)
                agents.wait(plan, settings, digests)
                say(
                    f"{len(digests)} agents enforcing {mode.value} in {time.perf_counter() - started:.1f} s"
                )
            else:
                apply_modes(plan, mode, audit=audit)
        except BaseException:
            _down(name, settings)
            raise
    return plan


def _up_liqo(
    plan: LabPlan,
    topology_text: str,
    source: str,
    mode: SecurityMode,
    settings: LabSettings,
    say: Progress,
    audit: bool,
) -> LabPlan:
    from peerwall.lab.apiserver.liqo_objects import check_cluster_ids

    if audit:
        raise LabError("--shape liqo: audit is set per peering there (a PeeringSecurity), not here")
    check_cluster_ids(plan.topology, source)
    try:
        started = time.perf_counter()
        count = liqo.build(plan, settings)
        say(f"{count} namespaces wired in Liqo's shape in {time.perf_counter() - started:.1f} s")
        save_state(
            LabState(plan.name, source, mode.value, shape=liqo.SHAPE), settings, topology_text
        )
        started = time.perf_counter()
        liqo.start_servers(plan, settings)
        say(
            f"{len(plan.topology.clusters)} API servers up in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        liqo.start_agents(plan, settings, mode)
        liqo.wait_agents(plan, settings)
        say(
            f"{len(liqo.gateways(plan))} agents (--source kubernetes) ready in "
            f"{time.perf_counter() - started:.1f} s"
        )
    except BaseException:
        _down(plan.name, settings)
        raise
    return plan


def refuse_liqo_shape(state: LabState, command: str) -> None:
    """A Liqo-shaped lab's agents read its API servers, not the lab's files: ``command``, which
    rewrites those files, would change nothing there."""
    if state.shape == liqo.SHAPE:
        raise LabError(
            f"lab {state.name} has Liqo's shape: {command} does not apply to it; change it through "
            f"its API servers (kubectl --kubeconfig FILE, FILE from: peerwall lab kubeconfig "
            f"CLUSTER --name {state.name}), or rebuild it with lab up"
        )


def existing(name: str, settings: LabSettings) -> str | None:
    """What shows that lab ``name`` exists, in any state folder, or None."""
    if os.path.isdir(lab_folder(name, settings)):
        return f"its state is in {settings.state_dir}"
    if (folder := owner(name)) is not None:
        return f"its state is in {folder}"
    if found := list_namespaces(f"pw-{name}-"):
        return f"{len(found)} namespaces pw-{name}-…"
    return None


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (kill, a service manager, a CI timeout) interrupts like Ctrl-C: what was built is
    removed, instead of the process dying with namespaces and no state. Exits 143, as SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the rollback
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _build(plan: LabPlan, settings: LabSettings, mode: SecurityMode, say: Progress) -> None:
    started = time.perf_counter()
    changes = rewire(None, plan, settings)
    say(
        f"{changes.namespaces_added} namespaces, {changes.veths_created} veths "
        f"({len(plan.tunnels)} tunnels), {changes.routes_added} routes"
    )
    say(f"wired in {time.perf_counter() - started:.1f} s")


def rewire_lab(old_plan: LabPlan, new_plan: LabPlan, settings: LabSettings) -> Changes:
    """Rewire the running lab built for ``old_plan`` into one for ``new_plan``, live: only what
    differs is touched, so unchanged pods, tunnels and their connections carry on.

    The caller holds the lab's lock (``state.locked``) around this and the state it records
    afterwards, and brings the peerwall tables along (``apply_modes`` or the agents): a new
    gateway has none until then. A failure part-way leaves the lab part-rewired; ``up`` rebuilds
    it whole.
    """
    _require_root()
    if old_plan.name != new_plan.name:
        raise LabError(f"cannot rewire lab {old_plan.name} into lab {new_plan.name}")
    # The steps are computed from the old plan, not read from the kernel: check that the lab is
    # the one the old plan describes, or the batches would fail half-way.
    live = list_namespaces(old_plan.prefix)
    if live != sorted(old_plan.namespaces()):
        raise LabError(
            f"lab {old_plan.name}: its namespaces are not those of its recorded topology "
            "(run: peerwall lab up)"
        )
    try:
        return rewire(old_plan, new_plan, settings)
    except (PeerwallError, OSError) as e:
        raise LabError(
            f"lab {new_plan.name} is only partly rewired ({e}); rebuild it with lab up"
        ) from e


def apply(
    name: str,
    topology: Topology,
    topology_text: str,
    source: str,
    settings: LabSettings | None = None,
) -> tuple[Changes, agents.Converged]:
    """Swap a running lab's topology live: rewire what changed, then let the agents converge
    (agents of new clusters start, those of removed clusters stop). Returns the wiring changes
    and how long the agents took."""
    settings = settings or LabSettings()
    _require_root()
    with locked(name, settings):
        state = load_state(name, settings)
        refuse_liqo_shape(state, "lab apply")
        refuse_shared_gateway_clashes(topology)
        old, new = state.plan(settings), LabPlan(name, topology)
        mode = SecurityMode(state.mode)
        gone = [c.name for c in old.topology.clusters if c.name not in new.topology.cluster_by_name]
        if settings.agents:
            agents.stop(old, settings, gone)  # before their namespaces go
        changes = rewire_lab(old, new, settings)
        save_state(
            LabState(name, source, state.mode, state.generation + 1, state.audit),
            settings,
            topology_text,
        )
        if not settings.agents:
            started = time.perf_counter()
            apply_modes(new, mode, audit=state.audit)
            return changes, agents.Converged(time.perf_counter() - started, {})
        digests = agents.write_inputs(new, settings, mode, topology_text, state.audit)
        agents.start(new, settings)
        return changes, agents.wait(new, settings, digests)


def set_mode(
    name: str,
    mode: SecurityMode,
    settings: LabSettings | None = None,
    progress: Progress | None = None,
    audit: bool | None = None,
) -> agents.Converged:
    """Change a running lab's global default mode (and audit, unless None: kept) at run time
    (through its agents: element transactions, and the flows the new mode forbids are cleared);
    returns when enforced."""
    settings = settings or LabSettings()
    with locked(name, settings):
        state = load_state(name, settings)
        refuse_liqo_shape(state, "lab set-mode")
        plan = state.plan(settings)
        audit = state.audit if audit is None else audit
        save_state(
            LabState(state.name, state.source, mode.value, state.generation + 1, audit), settings
        )
        if not settings.agents:
            started = time.perf_counter()
            apply_modes(plan, mode, progress, audit)
            return agents.Converged(time.perf_counter() - started, {})
        digests = agents.write_inputs(plan, settings, mode, state.topology_text(settings), audit)
        return agents.wait(plan, settings, digests)


def repair(name: str, settings: LabSettings | None = None) -> dict[str, int]:
    """Have the lab's agents read their tables back and repair any drift now (as they do every
    ``agent_resync_interval`` seconds); without agents, sync every gateway directly. Returns the
    repairs each agent made now (empty without agents)."""
    settings = settings or LabSettings()
    state = load_state(name, settings)
    refuse_liqo_shape(state, "lab repair")
    plan = state.plan(settings)
    if not settings.agents:
        apply_modes(plan, SecurityMode(state.mode), audit=state.audit)
        return {}
    return agents.check_now(plan, settings)


def down(name: str, settings: LabSettings | None = None) -> list[str]:
    """Stop the lab's agents, remove every namespace of the lab and its state; returns the
    namespaces removed."""
    settings = settings or LabSettings()
    _require_root()
    check_lab_name(name)
    with locked(name, settings):
        return _down(name, settings)


def _down(name: str, settings: LabSettings) -> list[str]:
    agents.stop_all_in(lab_folder(name, settings))
    liqo.stop_all_in(lab_folder(name, settings))
    gone = list_namespaces(f"pw-{name}-")
    delete_namespaces(gone)
    remove_state(name, settings)
    return gone


def gateway_drift(plan: LabPlan, mode: SecurityMode, audit: bool = False) -> dict[str, list[Drift]]:
    """For each gateway, how its live ``inet peerwall`` table differs from the desired one."""
    out = {}
    for c in plan.topology.clusters:
        with LibNft(plan.gateway_ns(c.name)) as nft:
            _, found = read_drift(nft, build(desired_state(plan, c.name, mode, audit)))
            if table_exists(nft, FAMILY, GUARD_TABLE):
                found.append(
                    Drift(
                        GUARD_UP,
                        f"table {FAMILY} {GUARD_TABLE}",
                        f"the gateway is failed closed: {FAMILY} {TABLE} cannot be taken back "
                        "(see the agent's log)",
                    )
                )
        out[c.name] = found
    return out


def refuse_shared_gateway_clashes(topology: Topology) -> None:
    """The simple shape holds every peer of a cluster in one gateway, whose chains and
    connection marks tell the peers apart by short hashes of their names
    (``compile.names.clashes``); two peers it could not tell apart are refused here, before
    anything is built, rather than failed closed by the agent. On Liqo (and ``--shape liqo``) each
    peer has a gateway of its own, so the topology itself is valid."""
    found = []
    for c in topology.clusters:
        peers = topology.peers[c.name]
        for why in sorted(set(clashes((p, tunnel_ifname(p)) for p in peers).values())):
            found.append(f"{c.name}'s gateway: {why}")
    if found:
        raise LabError(
            "the simple shape puts every peer of a cluster in one gateway, which could not tell "
            f"these apart: {'; '.join(found)}. Rename one of each pair, or use --shape liqo "
            "(a gateway per peer, as Liqo)"
        )
