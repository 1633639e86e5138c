"""Data plane: the cost per packet must not grow with the addresses a gateway enforces.

Usage: python bench/dataplane_bench.py [--sizes 0,10000,100000] [--reps 5] [--seconds 1]
                                       [--clients 2] [--concurrency 32] [--iperf-seconds 1]

Needs root, gcc and iperf3. One client namespace, one gateway namespace and one server namespace
per configuration (all ``pw-bench-…``, removed in ``finally``): the client reaches the server
*through* the gateway, entering it on an interface named like a peerwall tunnel, from an address
of the peer's pod CIDR. The server has two addresses: ``in`` is in the big set (or, for the naive
design, one of its rules, in the middle), ``out`` is not (its lookup in the big set misses, a
small set or one more rule lets it through). Configurations:

- ``ceiling``: client and server joined directly (the load generator's own ceiling);
- ``bare``: through a gateway without any rule (forwarding alone);
- ``peerwall``: the table ``compile.build`` makes, N addresses in the peer's ``offloaded`` set;
- ``naive``: the same addresses as one ``ip daddr X accept`` rule each (a design without sets);
- ``ipset``: Liqo v0.10's iptables chains (``iptables-nft``) with an ``-m set --match-set``
  rule on a ``hash:ip`` set of N addresses.

New TCP connections per second: ``loadgen.c`` (compiled here with gcc), ``--clients`` processes
keeping ``--concurrency`` connects in flight each, every connection closed with a RST at once.
Bulk throughput: one iperf3 stream. Every repetition runs every configuration once, in turn,
after a conntrack flush in the gateway; every other repetition runs each design's sizes in reverse.

Writes bench/results/dataplane.json and bench/results/dataplane.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from itertools import groupby
from pathlib import Path
from typing import Any

from common import (
    HERE,
    Namespaces,
    emit,
    ip_batch,
    machine,
    need_root,
    result_path,
    run,
    summary,
    sysctl,
)
from peerwall.compile import names
from peerwall.compile.build import build
from peerwall.compile.state import GatewayState, PeerState, SetKind
from peerwall.dataplane.nft import LibNft
from peerwall.model.spec import SecurityMode
from peerwall.nft.objects import render_replace

PORT = 8080
CLIENT_NET = "10.10.0"  # the peer's pods, as the gateway sees them
SERVER_NET = "10.65.0"  # a local pod subnet
SERVER_IN, SERVER_OUT = f"{SERVER_NET}.2", f"{SERVER_NET}.3"
FILLER = int(IPv4Address("10.80.0.0"))
TUNNEL = names.tunnel_ifname("A")
TARGET_SHARE = 0.95


@dataclass
class Config:
    name: str
    design: str
    n: int
    client: str
    server: str
    gateway: str | None
    targets: dict[str, str]
    """in/out -> server address (the ceiling has one)."""


def fillers(n: int) -> list[str]:
    return [str(IPv4Address(FILLER + i)) for i in range(n)]


# --- building --------------------------------------------------------------------------------


def build_ceiling(nss: Namespaces) -> Config:
    cli, srv = nss.add("ceil-c", "ceil-s")
    ip_batch(
        [
            f"link add name eth0 type veth peer name eth0 netns {srv}",
            "addr add 10.30.0.2/24 dev eth0",
            "link set eth0 up",
        ],
        cli,
    )
    ip_batch(["addr add 10.30.0.1/24 dev eth0", "link set eth0 up"], srv)
    sysctl(cli, "net.ipv4.ip_local_port_range", "1024 65535")
    return Config("ceiling", "ceiling", 0, cli, srv, None, {"in": "10.30.0.1"})


def build_gateway(nss: Namespaces, role: str) -> tuple[str, str, str]:
    cli, gw, srv = nss.add(f"{role}-c", f"{role}-g", f"{role}-s")
    ip_batch(
        [
            f"link add name {TUNNEL} type veth peer name eth0 netns {cli}",
            f"addr add {CLIENT_NET}.1/24 dev {TUNNEL}",
            f"link set {TUNNEL} up",
            f"link add name pod0 type veth peer name eth0 netns {srv}",
            f"addr add {SERVER_NET}.1/24 dev pod0",
            "link set pod0 up",
        ],
        gw,
    )
    ip_batch(
        [
            f"addr add {CLIENT_NET}.2/24 dev eth0",
            "link set eth0 up",
            f"route add default via {CLIENT_NET}.1",
        ],
        cli,
    )
    ip_batch(
        [
            f"addr add {SERVER_IN}/24 dev eth0",
            f"addr add {SERVER_OUT}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {SERVER_NET}.1",
        ],
        srv,
    )
    sysctl(gw, "net.ipv4.ip_forward", "1")
    sysctl(gw, "net.ipv4.conf.all.rp_filter", "0")
    sysctl(cli, "net.ipv4.ip_local_port_range", "1024 65535")
    return cli, gw, srv


def peerwall_table(gw: str, n: int) -> None:
    peer = PeerState(
        name="A",
        tunnel=TUNNEL,
        mode=SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION,
        sources=(IPv4Network(f"{CLIENT_NET}.0/24"),),
        full_access=(IPv4Network("10.64.0.0/10"),),
        members={
            SetKind.OFFLOADED: frozenset(IPv4Address(a) for a in [*fillers(n), SERVER_IN]),
            SetKind.BACKENDS: frozenset({IPv4Address(SERVER_OUT)}),
        },
    )
    state = GatewayState("here", {"A": peer}, names.LAB_TUNNEL_PATTERN)
    with LibNft(gw) as nft:
        nft.run(render_replace(build(state)))


def naive_table(gw: str, n: int) -> None:
    addrs = fillers(n)
    addrs.insert(n // 2, SERVER_IN)  # "in": halfway down the chain (a random pod, on average)
    rules = "".join(f"\t\tip daddr {a} accept\n" for a in addrs)
    script = (
        "table inet naive {\n"
        "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"
        "\t\tct state established,related accept\n"
        f'\t\tiifname "{TUNNEL}" jump peer\n\t}}\n'
        "\tchain peer {\n"
        f"{rules}\t\tip daddr {SERVER_OUT} accept\n\t\tcounter drop\n\t}}\n}}\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(script)
        f.flush()
        run(["nft", "-f", f.name], netns=gw)


def ipset_tables(gw: str, n: int) -> None:
    hashsize = 1024
    while hashsize < n:
        hashsize *= 2
    # v0.10 creates its sets with maxelem 65536: 100,000 addresses would not fit; raised here.
    lines = [
        f"create SET-CLS-a hash:ip family inet hashsize {hashsize} maxelem {max(65536, 2 * n)}"
    ]
    lines += [f"add SET-CLS-a {a}" for a in [*fillers(n), SERVER_IN]]
    lines += [
        "create WEB-a hash:ip family inet hashsize 1024 maxelem 65536",
        f"add WEB-a {SERVER_OUT}",
    ]
    run(["ipset", "restore"], input="\n".join(lines) + "\n", netns=gw)
    rules = "\n".join(
        [
            "*filter",
            ":LIQO-FORWARD - [0:0]",
            ":LIQO-FRWD-CLS-a - [0:0]",
            "-A FORWARD -j LIQO-FORWARD",
            "-A LIQO-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A LIQO-FORWARD -s {CLIENT_NET}.0/24 -j LIQO-FRWD-CLS-a",
            "-A LIQO-FRWD-CLS-a -m set --match-set SET-CLS-a dst -j ACCEPT",
            "-A LIQO-FRWD-CLS-a -m set --match-set WEB-a dst -j ACCEPT",
            "-A LIQO-FRWD-CLS-a -j DROP",
            "COMMIT",
        ]
    )
    run(["iptables-restore"], input=rules + "\n", netns=gw)


# --- measuring ---------------------------------------------------------------------------------


class Servers:
    """The processes this benchmark started (by PID), ended at exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, netns: str, argv: list[str], ready: str | None = None) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.procs.append(p)
        if ready is not None:
            assert p.stdout is not None
            line = p.stdout.readline()
            if ready not in line:
                raise RuntimeError(f"{argv[0]} in {netns} did not start: {line!r}")
        return p

    def stop(self, p: subprocess.Popen[str]) -> None:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def close(self) -> None:
        for p in list(self.procs):
            self.stop(p)


def in_reverse_per_design(configs: list[Config]) -> list[Config]:
    """The configurations with each design's sizes in reverse order, designs in place."""
    return [c for _, run in groupby(configs, key=lambda c: c.design) for c in reversed(list(run))]


def flush_conntrack(cfg: Config) -> None:
    if cfg.gateway is not None:
        subprocess.run(
            ["ip", "netns", "exec", cfg.gateway, "conntrack", "-F"],
            capture_output=True,
            check=False,
        )


def connection_rate(
    loadgen: str, cfg: Config, target: str, seconds: float, clients: int, concurrency: int
) -> dict[str, Any]:
    flush_conntrack(cfg)
    argv = [loadgen, "connect", cfg.targets[target], str(PORT), str(seconds), str(concurrency)]
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", cfg.client, *argv], stdout=subprocess.PIPE, text=True
        )
        for _ in range(clients)
    ]
    outs = [json.loads(p.communicate(timeout=seconds + 30)[0]) for p in procs]
    return {
        "rate": sum(o["rate"] for o in outs),
        "failed": sum(o["failed"] + o["open_failed"] for o in outs),
    }


def throughput(servers: Servers, cfg: Config, target: str, seconds: float) -> float:
    flush_conntrack(cfg)
    srv = servers.start(cfg.server, ["iperf3", "-s", "-1", "-p", "5201"])
    try:
        for _ in range(50):  # until the server listens
            done = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    cfg.client,
                    "iperf3",
                    "-c",
                    cfg.targets[target],
                    "-p",
                    "5201",
                    "-t",
                    str(seconds),
                    "-J",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            doc = json.loads(done.stdout or "{}")
            received = doc.get("end", {}).get("sum_received")
            if done.returncode == 0 and received and not doc.get("error"):
                return float(received["bits_per_second"])
            time.sleep(0.05)
        raise RuntimeError(f"iperf3 to {cfg.targets[target]} failed: {done.stdout[-300:]}")
    finally:
        servers.stop(srv)


def compile_loadgen(out_dir: Path) -> str:
    if shutil.which("gcc") is None:
        raise SystemExit("gcc is missing: apt-get install gcc")
    exe = out_dir / "loadgen"
    run(["gcc", "-O2", "-Wall", "-o", str(exe), str(HERE / "loadgen.c")])
    return str(exe)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rates = result["connections"]
    sizes = result["sizes"]
    xs = [max(n, 1) for n in sizes]
    styles = {"peerwall": "o-", "ipset": "^-", "naive": "s-"}
    for design in ("peerwall", "ipset", "naive"):
        for target, dash in (("in", ""), ("out", "--")):
            ys = [rates[f"{design}-{n}"][target]["median"] / 1e3 for n in sizes]
            lo = [
                y - rates[f"{design}-{n}"][target]["min"] / 1e3
                for n, y in zip(sizes, ys, strict=True)
            ]
            hi = [
                rates[f"{design}-{n}"][target]["max"] / 1e3 - y
                for n, y in zip(sizes, ys, strict=True)
            ]
            style = styles[design] + ("-" if dash else "")
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt=style,
                capsize=3,
                label=f"{design}, destination {target} the set",
            )
    for ref, style in (("ceiling", ":"), ("bare", "-.")):
        y = rates[ref]["in"]["median"] / 1e3
        ax.axhline(y, linestyle=style, color="grey", label=f"{ref} ({y:.1f}k/s)")
    ax.set_xscale("log")
    ax.set_xlabel("addresses enforced (N; 0 drawn at 1)")
    ax.set_ylabel("new TCP connections per second (thousands)")
    ax.set_title("Data plane: connection rate through the gateway against N")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="0,10000,100000")
    ap.add_argument("--reps", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=0.4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--iperf-seconds", type=float, default=1.0)
    ap.add_argument("--iperf-reps", type=int, default=3)
    args = ap.parse_args()
    if not need_root("dataplane"):
        return 0
    for tool in ("iperf3", "conntrack", "ipset", "iptables-restore"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: make bench installs it (apt-get install)")
    sizes = [int(x) for x in args.sizes.split(",")]

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    servers = Servers()
    conns: dict[str, dict[str, list[float]]] = {}
    bulk: dict[str, dict[str, list[float]]] = {}
    setup: dict[str, float] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="pw-bench-") as tmp, Namespaces("dp") as nss:
        try:
            loadgen = compile_loadgen(Path(tmp))
            configs = [build_ceiling(nss)]
            cli, gw, srv = build_gateway(nss, "bare")
            configs.append(
                Config("bare", "bare", 0, cli, srv, gw, {"in": SERVER_IN, "out": SERVER_OUT})
            )
            # Ordered by design, then N: the configurations a ratio compares run seconds apart.
            for design, install in (
                ("peerwall", peerwall_table),
                ("ipset", ipset_tables),
                ("naive", naive_table),
            ):
                for n in sizes:
                    cli, gw, srv = build_gateway(nss, f"{design[:2]}{n}")
                    t = time.perf_counter()
                    install(gw, n)
                    setup[f"{design}-{n}"] = time.perf_counter() - t
                    configs.append(
                        Config(
                            f"{design}-{n}",
                            design,
                            n,
                            cli,
                            srv,
                            gw,
                            {"in": SERVER_IN, "out": SERVER_OUT},
                        )
                    )
            log(
                f"built {len(configs)} configurations: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in setup.items())
            )
            for cfg in configs:
                servers.start(cfg.server, [loadgen, "serve", str(PORT)], ready="listening")
            for r in range(args.reps):
                # A design's sizes in turn, the other way round every other repetition (ABBA):
                # a drift of the machine within a repetition then biases no size against another.
                for cfg in configs if r % 2 == 0 else in_reverse_per_design(configs):
                    for target in cfg.targets:
                        m = connection_rate(
                            loadgen, cfg, target, args.seconds, args.clients, args.concurrency
                        )
                        conns.setdefault(cfg.name, {}).setdefault(target, []).append(m["rate"])
                        failed += m["failed"]
                log(
                    f"rep {r + 1}/{args.reps}: "
                    + ", ".join(f"{k} {v['in'][-1] / 1e3:.1f}k" for k, v in conns.items())
                )
            bulk_configs = [c for c in configs if c.n in (0, max(sizes))]
            for _ in range(args.iperf_reps):
                for cfg in bulk_configs:
                    bps = throughput(servers, cfg, "in", args.iperf_seconds)
                    bulk.setdefault(cfg.name, {}).setdefault("in", []).append(bps)
            log(
                "throughput: "
                + ", ".join(f"{k} {v['in'][-1] / 1e9:.1f} Gbit/s" for k, v in bulk.items())
            )
        finally:
            servers.close()
    result: dict[str, Any] = {
        "machine": machine(),
        "sizes": sizes,
        "settings": vars(args),
        "setup_s": setup,
        "failed_connects": failed,
        "connections": {k: {t: summary(v) for t, v in d.items()} for k, d in conns.items()},
        "throughput_bps": {k: {t: summary(v) for t, v in d.items()} for k, d in bulk.items()},
    }
    zero = {
        d: result["connections"][f"{d}-0"]["in"]["median"] for d in ("peerwall", "ipset", "naive")
    }
    share: dict[str, dict[str, float]] = {}
    paired: dict[str, dict[str, Any]] = {}
    for key, d in result["connections"].items():
        design = key.split("-")[0]
        if design in zero:
            share[key] = {t: v["median"] / zero[design] for t, v in d.items()}
            # Each repetition's rate over the same repetition's 0-address rate for the same
            # destination case ("out" passes one more small-set rule at every size; what must not
            # grow is the cost of the big set), measured seconds apart: the machine's drift
            # between repetitions cancels out.
            paired[key] = {
                t: summary([a / b for a, b in zip(v, conns[f"{design}-0"][t], strict=True)])
                for t, v in conns[key].items()
            }
    result["share_of_0_addresses"] = share
    result["paired_share_of_0_addresses"] = paired
    result["ceiling_over_bare"] = (
        result["connections"]["ceiling"]["in"]["median"]
        / result["connections"]["bare"]["in"]["median"]
    )
    big = max(sizes)
    worst = min(v["median"] for v in paired[f"peerwall-{big}"].values())
    result["targets"] = {
        f"peerwall_{big}_at_least_95pct": {
            "target": TARGET_SHARE,
            "value": worst,
            "met": worst >= TARGET_SHARE,
        },
    }
    result["seconds"] = time.perf_counter() - started
    result["ok"] = all(t["met"] for t in result["targets"].values())
    plot(result, result_path("dataplane.png"))
    result["plot"] = "results/dataplane.png"
    emit("dataplane", result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
