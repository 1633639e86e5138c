"""One peerwall agent per emulated gateway, inside its namespace, fed by files in the lab folder.

Each agent runs ``peerwall agent --source file:<folder>/inputs/topology.yaml`` under a supervisor
(``lab.supervise``: restarts with backoff, a liveness probe) under ``ip netns exec`` (which execs,
so the PID recorded is the supervisor's; the agent's own is in its status), logs to ``agents/<cluster>.log`` and reports in
``agents/<cluster>.status.json`` the digest of the inputs it has enforced. Its inputs (the
topology, the values, its peer gateways' addresses) are in ``inputs/``, a folder whose files all
change at once, as kubelet changes a ConfigMap's (``lab.atomic_folder``): an agent never sees a
new topology with the old mode. A change to the lab (``set-mode``, ``apply``) publishes a new
version of that folder and waits until every agent reports its new digest: the lab has then
converged. ``stop`` ends only processes this module started, checked by PID and command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerwall.agent import filewatch
from peerwall.agent.filesource import inputs_digest
from peerwall.errors import LabError
from peerwall.lab.atomic_folder import publish
from peerwall.lab.plan import LabPlan
from peerwall.lab.state import TOPOLOGY_FILE, lab_folder, make_folder, write_file
from peerwall.model import SecurityMode
from peerwall.settings import LabSettings

VALUES_FILE = "values.yaml"
CONVERGE_TIMEOUT = 30.0
"""Seconds ``wait`` gives the agents before it calls the lab broken."""


def _agents_dir(plan: LabPlan, settings: LabSettings) -> str:
    return os.path.join(lab_folder(plan.name, settings), "agents")


def _inputs_dir(plan: LabPlan, settings: LabSettings) -> str:
    return os.path.join(lab_folder(plan.name, settings), "inputs")


def _gateways_file(cluster: str) -> str:
    return f"{cluster}.gateways.json"


def _paths(plan: LabPlan, settings: LabSettings, cluster: str) -> dict[str, str]:
    inputs = _inputs_dir(plan, settings)
    agents = _agents_dir(plan, settings)
    return {
        "topology": os.path.join(inputs, TOPOLOGY_FILE),
        "values": os.path.join(inputs, VALUES_FILE),
        "gateways": os.path.join(inputs, _gateways_file(cluster)),
        "status": os.path.join(agents, f"{cluster}.status.json"),
        "log": os.path.join(agents, f"{cluster}.log"),
        "pid": os.path.join(agents, f"{cluster}.pid"),
    }


def values_text(mode: SecurityMode, audit: bool = False) -> str:
    text = f"networking:\n  securityMode: {mode.value}\n"
    return text + "  securityAudit: true\n" if audit else text


def gateways_text(plan: LabPlan, cluster: str) -> str:
    return json.dumps(
        {peer: str(plan.tunnel(cluster, peer)[2]) for peer in plan.topology.peers[cluster]},
        sort_keys=True,
    )


def write_inputs(
    plan: LabPlan,
    settings: LabSettings,
    mode: SecurityMode,
    topology_text: str,
    audit: bool = False,
) -> dict[str, str]:
    """Write every agent's inputs, all at once; returns the digest each agent must report.

    The lab's own copy of the topology (``state.topology_text``) is written too; agents do not
    read it: it changes apart from their other inputs (``save_state``)."""
    make_folder(_agents_dir(plan, settings))
    write_file(os.path.join(lab_folder(plan.name, settings), TOPOLOGY_FILE), topology_text)
    values = values_text(mode, audit)
    files = {TOPOLOGY_FILE: topology_text, VALUES_FILE: values}
    out = {}
    for c in plan.topology.clusters:
        gateways = files[_gateways_file(c.name)] = gateways_text(plan, c.name)
        out[c.name] = inputs_digest([topology_text, values, gateways])
    publish(_inputs_dir(plan, settings), files)
    return out


def agent_command(
    plan: LabPlan, settings: LabSettings, cluster: str, status_file: str | None = None
) -> list[str]:
    """The command line of ``cluster``'s agent, to run inside its gateway namespace."""
    p = _paths(plan, settings, cluster)
    return [
        sys.executable, "-m", "peerwall.cli", "agent",
        f"--source=file:{p['topology']}",
        f"--cluster={cluster}",
        f"--values={p['values']}",
        f"--gateways={p['gateways']}",
        "--tunnel-pattern=pwt-*",
        "--metrics-address=127.0.0.1:9090",
        f"--status-file={status_file or p['status']}",
        f"--resync-interval={settings.agent_resync_interval:g}",
    ]  # fmt: skip


def start(plan: LabPlan, settings: LabSettings, clusters: Iterable[str] | None = None) -> None:
    """Start the agents of ``clusters`` (default: every cluster) that are not running."""
    for cluster in clusters if clusters is not None else [c.name for c in plan.topology.clusters]:
        p = _paths(plan, settings, cluster)
        if running(plan, settings, cluster):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p["status"])
        # The recorded process is the agent's supervisor (``lab.supervise``): it restarts an
        # agent that dies or hangs, as the kubelet would, and takes the agent down with it.
        supervisor = [sys.executable, "-m", "peerwall.lab.supervise", "--"]
        agent = agent_command(plan, settings, cluster)
        cmd = ["ip", "netns", "exec", plan.gateway_ns(cluster), *supervisor, *agent]
        with open(p["log"], "ab") as log:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        write_file(p["pid"], str(proc.pid))


def _pid(plan: LabPlan, settings: LabSettings, cluster: str) -> int | None:
    """The running supervisor of ``cluster``'s agent: the recorded one, else one found among the
    machine's processes (a deleted or stale PID file must not make a running agent look down, nor
    have a second one started), which is then recorded again."""
    path = _paths(plan, settings, cluster)["pid"]
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        if _is_our_agent(pid, plan, settings):
            return pid
    except (FileNotFoundError, ValueError):
        pass
    found = scan(lab_folder(plan.name, settings), cluster)
    if not found:
        return None
    with contextlib.suppress(OSError):
        write_file(path, str(found[0]))
    return found[0]


SUPERVISOR = b"peerwall.lab.supervise"


def live_processes() -> Iterator[tuple[int, list[bytes]]]:
    """(PID, command line) of every live process (zombies and processes gone while read are
    left out): how the lab finds the agents and servers it started, whoever's child they are now
    (a supervisor, a previous ``peerwall`` run)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            yield int(entry), argv


def scan(folder: str, cluster: str | None = None, *, supervisors: bool = True) -> list[int]:
    """PIDs of the live processes that are agents of the lab in ``folder`` (of ``cluster`` only,
    if given): their supervisors, or every agent process if not ``supervisors``."""
    mine = (folder.rstrip("/") + "/").encode()
    who = f"--cluster={cluster}".encode() if cluster is not None else None
    out = []
    for pid, argv in live_processes():
        if b"agent" not in argv or not any(mine in a for a in argv):
            continue
        if (who is None or who in argv) and (not supervisors or SUPERVISOR in argv):
            out.append(pid)
    return sorted(out)


def _is_our_agent(pid: int, plan: LabPlan, settings: LabSettings) -> bool:
    """The PID is alive and is an agent of this lab (PIDs are reused: check the command line)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    folder = (lab_folder(plan.name, settings) + "/").encode()
    return state != "Z" and b"agent" in argv and any(folder in a for a in argv)


def _alive(plan: LabPlan, settings: LabSettings, cluster: str) -> bool:
    """The recorded process exists and is not a zombie (between fork and exec its command
    line is still its parent's, so ``running`` would not recognise it yet)."""
    try:
        with open(_paths(plan, settings, cluster)["pid"]) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError):
        return _pid(plan, settings, cluster) is not None


def running_pid(plan: LabPlan, settings: LabSettings, cluster: str) -> int | None:
    """The pid of ``cluster``'s agent, if it runs."""
    return _pid(plan, settings, cluster)


def running(plan: LabPlan, settings: LabSettings, cluster: str) -> bool:
    return _pid(plan, settings, cluster) is not None


def stop(
    plan: LabPlan,
    settings: LabSettings,
    clusters: Iterable[str] | None = None,
    *,
    kill: bool = False,
) -> None:
    """Stop agents by their recorded PID (SIGTERM, then SIGKILL after 5 s; at once if ``kill``)."""
    names = clusters if clusters is not None else [c.name for c in plan.topology.clusters]
    for cluster in names:
        recorded = _pid(plan, settings, cluster)
        # Every supervisor of this agent, recorded or not: none may be left behind.
        pids = sorted(
            {*scan(lab_folder(plan.name, settings), cluster), *([recorded] if recorded else [])}
        )
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + 5
        for pid in pids:
            while _is_our_agent(pid, plan, settings) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.02)
            if _is_our_agent(pid, plan, settings):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _reap(pid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_paths(plan, settings, cluster)["pid"])


def stop_all_in(folder: str) -> None:
    """Stop every agent recorded in a lab folder, without its plan (``lab down`` of a lab whose
    topology no longer loads)."""
    # Found by their command lines, not by PID files (which may be gone): supervisors and agents.
    # Supervisors first, so that none restarts an agent killed before it.
    for pid in [*scan(folder), *scan(folder, supervisors=False)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def check_now(
    plan: LabPlan, settings: LabSettings, timeout: float = CONVERGE_TIMEOUT
) -> dict[str, int]:
    """Have every agent read its table back and repair it now (SIGUSR1); returns, once each has
    done so, how many repairs each made meanwhile. An agent restarted meanwhile (its supervisor
    drops a signal that comes between two agents) is asked again once the new one reports: its
    own start read the table back, but it is its check that is waited for."""
    with _status_changes(plan, settings, [c.name for c in plan.topology.clusters]) as pause:
        return _check_now(plan, settings, timeout, pause)


def _check_now(
    plan: LabPlan, settings: LabSettings, timeout: float, pause: Callable[[], None]
) -> dict[str, int]:
    before: dict[str, dict[str, Any]] = {}
    for cluster in plan.topology.clusters:
        before[cluster.name] = status(plan, settings, cluster.name) or {}
        _ask(plan, settings, cluster.name)
    started = time.monotonic()
    while True:
        now = {c: status(plan, settings, c) or {} for c in before}
        for c in before:
            if now[c].get("pid") not in (None, before[c].get("pid")):
                before[c] = now[c]
                _ask(plan, settings, c)
        late = [c for c in before if now[c].get("checks", 0) <= before[c].get("checks", 0)]
        if not late:
            return {c: now[c].get("repairs", 0) - before[c].get("repairs", 0) for c in before}
        if time.monotonic() - started > timeout:
            raise LabError(
                f"lab {plan.name}: the agent of {', '.join(late)} did not check its table within "
                f"{timeout:g} s; the end of its log:\n"
                + "\n".join(log_tail(_paths(plan, settings, c)["log"], 20) for c in late)
            )
        pause()


LOOK_EVERY = 0.25
"""Between two looks at the agents' status files, at most this long when inotify reports their
replacements (a look also finds an agent that died, which writes nothing), else 20 ms."""


@contextlib.contextmanager
def _status_changes(
    plan: LabPlan, settings: LabSettings, clusters: Iterable[str]
) -> Iterator[Callable[[], None]]:
    """A pause between two looks at the agents' status files: until one of them is replaced
    (agents write them by rename), ``LOOK_EVERY`` at most. Watched from before the first look, so
    a status written between a look and the pause ends the pause at once. Waiting for a lab to
    converge is most of many tests, and each wake-up costs CPU (several ms on a virtual
    machine): a fixed 20 ms poll was 50 of them a second."""
    statuses = [Path(_paths(plan, settings, c)["status"]) for c in clusters]
    watch = filewatch.watch(statuses)
    if watch is None:
        yield lambda: time.sleep(0.02)
        return

    def pause() -> None:
        ready, _, _ = select.select([watch], [], [], LOOK_EVERY)
        if ready:
            watch.drain()

    try:
        yield pause
    finally:
        watch.close()


def _ask(plan: LabPlan, settings: LabSettings, cluster: str) -> None:
    """SIGUSR1 to ``cluster``'s supervisor, which passes it on to the agent."""
    pid = _pid(plan, settings, cluster)
    if pid is None:
        raise LabError(f"lab {plan.name}: the agent of {cluster} is not running")
    os.kill(pid, signal.SIGUSR1)


def log_tail(path: str | os.PathLike[str], lines: int = 15) -> str:
    """The last ``lines`` lines of a log, for an error that says why; why not, if it cannot be
    read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(deque(f, lines))
    except OSError as e:
        return f"(no log: {e})"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def status(plan: LabPlan, settings: LabSettings, cluster: str) -> dict[str, Any] | None:
    try:
        with open(_paths(plan, settings, cluster)["status"]) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass(frozen=True)
class Converged:
    seconds: float
    statuses: dict[str, dict[str, Any]]


def wait(
    plan: LabPlan, settings: LabSettings, digests: dict[str, str], timeout: float = CONVERGE_TIMEOUT
) -> Converged:
    """Until every agent reports ``digests[cluster]`` (its inputs enforced, flows cleared)."""
    with _status_changes(plan, settings, digests) as pause:
        return _wait(plan, settings, digests, timeout, pause)


def _wait(
    plan: LabPlan,
    settings: LabSettings,
    digests: dict[str, str],
    timeout: float,
    pause: Callable[[], None],
) -> Converged:
    started = time.monotonic()
    while True:
        statuses = {c: status(plan, settings, c) for c in digests}
        if all(
            s is not None and s.get("digest") == digests[c] and s.get("ready")
            for c, s in statuses.items()
        ):
            return Converged(time.monotonic() - started, {c: s for c, s in statuses.items() if s})
        dead = [c for c in digests if not _alive(plan, settings, c)]
        if dead or time.monotonic() - started > timeout:
            what = (
                f"agent of {', '.join(dead)} is not running"
                if dead
                else f"agents did not converge within {timeout:g} s"
            )
            tails = []
            for c in dead or [
                c for c, s in statuses.items() if not s or s.get("digest") != digests[c]
            ]:
                log = _paths(plan, settings, c)["log"]
                tails.append(f"--- {c} ({log}):\n{log_tail(log)}")
            raise LabError(f"lab {plan.name}: {what}\n" + "\n".join(tails))
        pause()
