"""Explained drops: what reporting every drop costs the data plane, the agent, and enforcement.

Usage: python bench/flowlog_bench.py [--reps 12] [--seconds 0.5] [--quiet-reps 3] [--switches 10]
                                     [--switch-pairs 12] [--events 20000]

Needs root and gcc. Two gateways built as ``dataplane_bench`` builds them (a client namespace
behind a peerwall tunnel, a server behind the gateway; all ``pw-bench-fl-…``, removed in
``finally``), each enforcing the table ``compile.build`` makes for one peer, run by the real
agent loop (``peerwall.agent.run.Agent``, in a thread inside the gateway's namespace): ``on``
with the drop rules' log rules at their default rate limit and the agent reading NFLOG, ``off``
without log rules (``--flow-log-rate 0``). A second client floods a forbidden destination with
UDP (``loadgen flood``: one core's worth), which every gateway drops.

1. **Connection rate** (``loadgen connect``, as ``dataplane_bench``) to an allowed destination,
   logging on vs off, each with and without the flood; and the flood's own rate. Under the
   flood the rate moves a lot from one run to the next on 2 cores (where the scheduler puts the
   client, the server and the flood's softirq work): ``--reps`` short runs (``--seconds``) of
   each side, in pairs run back to back, the order alternating; the ratio is the median of the
   pairs' ratios (on over off), with its quartiles and range. Quiet (a steadier figure), only
   the first ``--quiet-reps`` pairs.
2. **Agent CPU per 1,000 events**: a gateway whose drop rule reports without a practical limit
   (100,000/s); the agent's recorder (``FlowRecorder.readable``: read NFLOG, parse, name,
   explain, ring, JSON line to /dev/null) on the flood, its thread's CPU time per event; and the
   naming and explaining alone on the seed's topology (packets as the reader yields them).
3. **A mode change under the flood**: the agent switches its peer between the two modes (one
   element each), event to committed transaction: quiet, under the flood with logging on, and
   under the flood with logging off (what the flood costs by itself, on a 2-core machine). It
   moves from one run to the next as the connection rate does (ratios of 0.98 to 1.58 between
   runs of 5 switches each): blocks of ``--switches`` switches of the three kinds run back to
   back, the order reversed every other time, ``--switch-pairs`` times, the agents off the
   flood's core (its sender is this machine's: a real gateway's is not); the ratios are the
   medians of the blocks' ratios (under the flood over quiet; logging on over off), with their
   quartiles and range.

Writes bench/results/flowlog.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from importlib import resources
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from agentkit import HandSource, Recorder
from common import Namespaces, finish, machine, need_root, summary
from dataplane_bench import (
    CLIENT_NET,
    PORT,
    SERVER_IN,
    TUNNEL,
    Config,
    Servers,
    build_gateway,
    compile_loadgen,
    connection_rate,
)
from peerwall.agent.desired import DesiredState
from peerwall.agent.flowevents import FlowNamer, FlowRecorder, FlowRing
from peerwall.agent.run import Agent, AgentSettings
from peerwall.compile import names
from peerwall.compile.desired import gateway_state
from peerwall.compile.state import FlowLog, PeerState, SetKind
from peerwall.dataplane.nflog import LoggedPacket, NflogReader
from peerwall.dataplane.nft import LibNft
from peerwall.model import load_topology
from peerwall.model.spec import SecurityMode
from peerwall.nsenter import entered

SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
FULL = SecurityMode.FULL_POD_TO_POD
FORBIDDEN = "10.200.0.9"
"""A destination routed through the gateway but outside its pod CIDR: in no set under either
mode, so every packet to it is dropped (and reported), whatever the mode."""
TARGET_RATE_SHARE = 0.9
ALL_CPUS = sorted(os.sched_getaffinity(0))
FLOOD_CPUS, WORK_CPUS = ALL_CPUS[-1:], ALL_CPUS[:-1] or ALL_CPUS
"""The flood on one core, the measured connections (client, server, their softirq work) on the
others: where the scheduler put them moved a run's rate 3x either way on 2 cores. The agents
run anywhere, except while their mode changes are measured (on the others too)."""
PIN = ["taskset", "-c", ",".join(map(str, FLOOD_CPUS))]
TARGET_SWITCH_RATIO = 1.5


def peer() -> PeerState:
    return PeerState(
        name="A",
        tunnel=TUNNEL,
        mode=SEG,
        sources=(IPv4Network(f"{CLIENT_NET}.0/24"),),
        full_access=(IPv4Network("10.64.0.0/10"),),
    )


class RunningAgent:
    """The agent loop of one gateway, in a thread that entered the gateway's namespace (its
    libnftables context and NFLOG socket are created there)."""

    def __init__(self, gw: str, flow_log: FlowLog | None) -> None:
        self.gw = gw
        self.desired = DesiredState("here", names.LAB_TUNNEL_PATTERN, None)
        self.desired.flow_log = flow_log
        self.desired.upsert_peer(peer())
        self.desired.contribute("pod/server", "A", SetKind.OFFLOADED, [IPv4Address(SERVER_IN)])
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.agent: Agent | None = None
        self.latencies = Recorder()
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError(f"the agent of {gw} did not start")

    def _run(self) -> None:
        os.sched_setaffinity(0, ALL_CPUS)  # this thread only: not the measured clients' cores
        with entered(self.gw):
            nft = LibNft()
            source = HandSource()
            settings = AgentSettings(resync_interval=3600.0, metrics_address=None, flow_lines=False)
            self.agent = Agent(source, self.desired, nft, None, settings)
            self.agent.metrics.event_latency = self.latencies  # type: ignore[assignment]
            self.source = source
            asyncio.set_event_loop(self.loop)
            self.task = self.loop.create_task(self.agent.run())
            self.loop.call_soon(self._wait_ready)
            with contextlib.suppress(asyncio.CancelledError):
                self.loop.run_until_complete(self.task)

    def _wait_ready(self) -> None:
        if self.agent is not None and self.agent.ready:
            self.ready.set()
        else:
            self.loop.call_later(0.01, self._wait_ready)

    def switch(self, mode: SecurityMode) -> float:
        """Change the peer's mode (one element) and wait until the agent committed it; returns
        the agent's own event-to-kernel latency."""
        done = threading.Event()
        before = len(self.latencies.values)

        def change() -> None:
            self.desired.upsert_peer(replace(peer(), mode=mode))
            self.source.changed.set()

        self.loop.call_soon_threadsafe(change)
        deadline = time.monotonic() + 30
        while len(self.latencies.values) == before:
            if time.monotonic() > deadline:
                raise RuntimeError("the mode change was never committed")
            done.wait(0.001)
        return self.latencies.values[-1]

    def events(self) -> int:
        return self.agent.flows.seq if self.agent is not None else 0

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(10)


@contextlib.contextmanager
def all_threads_on(cpus: list[int]) -> Iterator[None]:
    """Every thread of this process (the agents' included) on ``cpus`` meanwhile, as it was
    after."""
    before: dict[int, set[int]] = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        with contextlib.suppress(ProcessLookupError):
            before[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    try:
        yield
    finally:
        for tid, mask in before.items():
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, mask)


def switch_block(agent: RunningAgent, flood: tuple[str, str] | None, count: int) -> list[float]:
    """``count`` mode changes of ``agent``'s peer, between the two modes, under a flood from
    ``flood`` (loadgen, flooder namespace) or quiet; each one's event-to-kernel latency. The peer
    ends on segregation, so that the flood is dropped again."""
    flooding = None if flood is None else Flood(*flood, 60)
    try:
        if flooding is not None:
            time.sleep(0.2)  # the flood is on
        took = [agent.switch((FULL, SEG)[k % 2]) for k in range(count)]
    finally:
        if flooding is not None:
            flooding.proc.terminate()
            flooding.proc.wait()
    if count % 2:
        agent.switch(SEG)
    return took


class Flood:
    """``loadgen flood`` to the forbidden destination, from a client of its own, in the
    background (ended by PID)."""

    def __init__(self, loadgen: str, client: str, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [
                *PIN,
                "ip",
                "netns",
                "exec",
                client,
                loadgen,
                "flood",
                FORBIDDEN,
                str(PORT),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )

    def result(self) -> dict[str, Any]:
        import json

        out, _ = self.proc.communicate(timeout=120)
        return dict(json.loads(out))


def add_flooder(nss: Namespaces, gw: str, role: str) -> str:
    """A second client of the same peer, on a veth of its own into the gateway (named like a
    tunnel, dispatched to the same peer chain by ``dispatch_flooder``), with an address of the
    peer's range: its flood is the peer's forbidden traffic, apart from the measured client's."""
    (flooder,) = nss.add(f"{role}-f")
    ifname = f"pwt-{role[:4]}f"
    subprocess.run(
        [
            "ip",
            "-n",
            gw,
            "link",
            "add",
            ifname,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            flooder,
        ],
        check=True,
    )
    subprocess.run(
        ["ip", "-n", gw, "addr", "add", f"{CLIENT_NET}.129/32", "dev", ifname], check=True
    )
    subprocess.run(["ip", "-n", gw, "link", "set", ifname, "up"], check=True)
    subprocess.run(
        ["ip", "-n", gw, "route", "add", f"{CLIENT_NET}.130/32", "dev", ifname], check=True
    )
    subprocess.run(["ip", "-n", gw, "route", "add", f"{FORBIDDEN}/32", "dev", "pod0"], check=True)
    for cmd in (
        ["addr", "add", f"{CLIENT_NET}.130/32", "dev", "eth0"],
        ["link", "set", "eth0", "up"],
        ["route", "add", f"{CLIENT_NET}.129/32", "dev", "eth0"],
        ["route", "add", "default", "via", f"{CLIENT_NET}.129", "dev", "eth0", "onlink"],
    ):
        subprocess.run(["ip", "-n", flooder, *cmd], check=True)
    return flooder


def dispatch_flooder(gw: str, role: str) -> None:
    """The flooder's interface goes to the peer's chain too (as a second tunnel of the same
    peer would): one element of the agent's verdict map."""
    ifname = f"pwt-{role[:4]}f"
    with LibNft(gw) as nft:
        nft.run(
            f'add element inet peerwall {names.MAP_FORWARD} {{ "{ifname}" : jump {names.peer_chain("A")} }}\n'
        )


def cpu_per_event(loadgen: str, nss: Namespaces, seconds: float) -> dict[str, Any]:
    """The recorder's CPU per event on a flood whose every packet is reported."""
    _cli, gw, _srv = build_gateway(nss, "cpu")
    flooder = add_flooder(nss, gw, "cpu")
    state = replace(gateway_state_for_bench(), flow_log=FlowLog(rate=100_000, burst=100_000))
    from peerwall.compile.build import build
    from peerwall.nft.objects import render_replace

    with LibNft(gw) as nft:
        nft.run(render_replace(build(state)))
    dispatch_flooder(gw, "cpu")
    with entered(gw):
        reader = NflogReader(state.flow_log.group if state.flow_log else 19, buffer=8 << 20)
    namer = FlowNamer(lambda: "here", lambda: state)
    with open(os.devnull, "w") as devnull, reader:
        recorder = FlowRecorder(reader, namer, FlowRing(), devnull)
        flood = Flood(loadgen, flooder, seconds)
        cpu = 0.0
        import select

        while flood.proc.poll() is None:
            ready, _, _ = select.select([reader], [], [], 0.1)
            if ready:
                t = time.thread_time()
                recorder.readable()
                cpu += time.thread_time() - t
        t = time.thread_time()
        recorder.readable()
        cpu += time.thread_time() - t
        sent = flood.result()
    events = recorder.events
    return {
        "events": events,
        "flood_sent": sent["sent"],
        "kernel_overflows": reader.lost,
        "cpu_seconds": cpu,
        "cpu_ms_per_1000_events": 1000 * 1000 * cpu / max(events, 1),
    }


def gateway_state_for_bench() -> Any:
    from peerwall.compile.state import GatewayState

    return GatewayState("here", {"A": peer()}, names.LAB_TUNNEL_PATTERN, None)


def cpu_explained(n: int) -> dict[str, Any]:
    """Naming and explaining alone, on the seed: each packet as the reader yields it, for a
    denied cell, through the recorder (ring, JSON line to /dev/null)."""
    text = resources.files("peerwall.examples").joinpath("seed.yaml").read_text()
    t = load_topology(text, "seed.yaml")
    state = gateway_state(t, "C2", SEG)
    namer = FlowNamer(lambda: "C2", lambda: state)
    namer.use(t, SEG)
    src = t.addresses.pod_seen_from(t.pod_by_name["P1"], "C2")
    packet = LoggedPacket(
        time.time(),
        names.flow_prefix("dropped", "forward", "denied", "C1"),
        "forward",
        3,
        4,
        src,
        t.pod_by_name["P5"].ip,
        "tcp",
        8080,
    )
    with open(os.devnull, "w") as devnull:
        recorder = FlowRecorder(None, namer, FlowRing(), devnull)
        recorder.record(packet)  # the explanation is cached per cell: as in a running agent
        t0 = time.process_time()
        for _ in range(n):
            recorder.record(packet)
        cpu = time.process_time() - t0
    return {"events": n, "cpu_seconds": cpu, "cpu_ms_per_1000_events": 1000 * 1000 * cpu / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=12)
    ap.add_argument("--quiet-reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--switches", type=int, default=10, help="mode changes per block")
    ap.add_argument("--switch-pairs", type=int, default=12)
    ap.add_argument("--events", type=int, default=20000)
    args = ap.parse_args()
    if not need_root("flowlog"):
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    servers = Servers()
    rates: dict[str, list[float]] = {}
    pairs: list[float] = []
    """Each pair's connection rate under the flood, logging on over off."""
    floods: dict[str, list[float]] = {}
    switch: dict[str, list[float]] = {"quiet": [], "flood": [], "flood-off": []}
    switch_pairs: dict[str, list[float]] = {"flood/quiet": [], "flood/flood-off": []}
    """Each pair's mode change under the flood over quiet, and logging on over off (the
    medians of blocks run back to back)."""
    agents: list[RunningAgent] = []
    load = os.getloadavg()[0]
    result: dict[str, Any] = {
        "machine": machine(),
        "note": f"Measured on a shared machine (load average {load:.1f} at the start): the "
        "spread between repetitions is the noise of the other work.",
    }
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp, Namespaces("fl") as nss:
        try:
            loadgen = compile_loadgen(Path(tmp))
            configs: dict[str, tuple[Config, str, RunningAgent]] = {}
            # The clients and servers this thread starts inherit its cores.
            os.sched_setaffinity(0, WORK_CPUS)
            for name, flow_log in (("on", FlowLog()), ("off", None)):
                cli, gw, srv = build_gateway(nss, name)
                flooder = add_flooder(nss, gw, name)
                agent = RunningAgent(gw, flow_log)
                agents.append(agent)
                dispatch_flooder(gw, name)
                servers.start(srv, [loadgen, "serve", str(PORT)], ready="listening")
                configs[name] = (
                    Config(name, name, 0, cli, srv, gw, {"in": SERVER_IN}),
                    flooder,
                    agent,
                )
            for rep in range(args.reps):
                pair: dict[str, float] = {}
                for name in ("on", "off") if rep % 2 == 0 else ("off", "on"):
                    cfg, flooder, _ = configs[name]
                    quiet = ""
                    if rep < args.quiet_reps:
                        q = connection_rate(
                            loadgen, cfg, "in", args.seconds, args.clients, args.concurrency
                        )
                        rates.setdefault(f"{name}-quiet", []).append(q["rate"])
                        quiet = f"{q['rate']:.0f}/s quiet, "
                    flooding = Flood(loadgen, flooder, args.seconds + 0.3)
                    time.sleep(0.15)  # the flood is on
                    loud = connection_rate(
                        loadgen, cfg, "in", args.seconds, args.clients, args.concurrency
                    )
                    floods.setdefault(name, []).append(flooding.result()["rate"])
                    rates.setdefault(f"{name}-flood", []).append(loud["rate"])
                    pair[name] = loud["rate"]
                    log(f"rep {rep} {name}: {quiet}{loud['rate']:.0f}/s under the flood")
                pairs.append(pair["on"] / pair["off"])
            os.sched_setaffinity(0, ALL_CPUS)
            on_agent = configs["on"][2]
            events_before = on_agent.events()
            # Like the connection rate, the mode change under the flood moves with where the
            # scheduler puts the agent and the flood's work: blocks of ``--switches`` switches,
            # quiet, under the flood with logging on, and with logging off (the flood's own cost,
            # without the drop stream), back to back, the order reversed every other time; each
            # figure a ratio of two blocks' medians next to each other, ``--switch-pairs`` times.
            # The agents (what is measured here) off the flood's core, as the clients were: the
            # flood's sender is this machine's, a real gateway's is not.
            with all_threads_on(WORK_CPUS):
                for rep in range(args.switch_pairs):
                    block: dict[str, float] = {}
                    kinds = ("quiet", "flood", "flood-off")
                    for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                        _cfg, flooder, agent = configs["off" if kind == "flood-off" else "on"]
                        took = switch_block(
                            agent, None if kind == "quiet" else (loadgen, flooder), args.switches
                        )
                        switch[kind] += took
                        block[kind] = statistics.median(took)
                    switch_pairs["flood/quiet"].append(block["flood"] / block["quiet"])
                    switch_pairs["flood/flood-off"].append(block["flood"] / block["flood-off"])
                    log(
                        f"switch pair {rep}: quiet {block['quiet'] * 1e3:.2f} ms, flood "
                        f"{block['flood'] * 1e3:.2f} ms, flood-off {block['flood-off'] * 1e3:.2f} ms"
                    )
            result["switch_events_reported"] = on_agent.events() - events_before
            log("cpu per event")
            result["cpu_kernel_path"] = cpu_per_event(loadgen, nss, args.seconds)
            result["cpu_explained"] = cpu_explained(args.events)
        finally:
            for a in agents:
                a.stop()
            servers.close()
    med = {k: summary(v)["median"] for k, v in rates.items()}
    result["connections_per_second"] = {k: summary(v) for k, v in rates.items()}
    result["flood_datagrams_per_second"] = {k: summary(v) for k, v in floods.items()}
    result["mode_switch_seconds"] = {k: summary(v) for k, v in switch.items()}
    share = statistics.median(pairs)
    result["connections_on_over_off_under_flood_pairs"] = {
        **summary(pairs),
        "quartiles": statistics.quantiles(pairs, n=4)[::2] if len(pairs) > 1 else pairs * 2,
    }
    sw = {k: summary(v)["median"] for k, v in switch.items()}
    ratio = statistics.median(switch_pairs["flood/quiet"])
    result["mode_switch_pairs"] = {
        k: {
            **summary(v),
            "quartiles": statistics.quantiles(v, n=4)[::2] if len(v) > 1 else v * 2,
        }
        for k, v in switch_pairs.items()
    }
    result["ratios"] = {
        "connections_on_over_off_under_flood": share,
        "connections_on_over_off_under_flood_medians": med["on-flood"] / med["off-flood"],
        "connections_on_over_off_quiet": med["on-quiet"] / med["off-quiet"],
        "mode_switch_flood_over_quiet": ratio,
        "mode_switch_flood_over_quiet_medians": sw["flood"] / sw["quiet"],
        "mode_switch_flood_logging_on_over_off": statistics.median(switch_pairs["flood/flood-off"]),
    }
    result["targets"] = {
        "connection rate with logging >= 90% of without, under a flood (median of pairs)": {
            "value": share,
            "target": TARGET_RATE_SHARE,
            "met": share >= TARGET_RATE_SHARE,
        },
        "mode change under a flood <= 1.5x without (median of pairs)": {
            "value": ratio,
            "target": TARGET_SWITCH_RATIO,
            "met": ratio <= TARGET_SWITCH_RATIO,
        },
    }
    for k, v in result["ratios"].items():
        log(f"{k}: {v:.3f}")
    log(
        f"agent CPU per 1,000 events: kernel path {result['cpu_kernel_path']['cpu_ms_per_1000_events']:.1f} ms, named and explained {result['cpu_explained']['cpu_ms_per_1000_events']:.1f} ms"
    )
    return finish("flowlog", result, started)


if __name__ == "__main__":
    sys.exit(main())
