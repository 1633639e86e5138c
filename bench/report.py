"""bench/results/*.json -> bench/RESULTS.md (``python bench/report.py`` re-renders it)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("PEERWALL_BENCH_RESULTS") or HERE / "results")
OUT = HERE / "RESULTS.md" if RESULTS == HERE / "results" else RESULTS / "RESULTS.md"
"""bench/RESULTS.md; with results elsewhere (a smoke run), next to them."""
MiB = 1 << 20


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def t(seconds: float | None) -> str:
    """A duration with a unit that fits."""
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 600:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def rng(
    s: dict[str, Any], fmt: Any = t, mid: str = "median", lo: str = "min", hi: str = "max"
) -> str:
    if s.get("n", 2) == 1:
        return f"{fmt(s[mid])} (1 run)"
    return f"{fmt(s[mid])} [{fmt(s[lo])} – {fmt(s[hi])}]"


def x(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.3g}×"


def mib(b: float) -> str:
    return f"{b / MiB:.0f} MiB"


BENCH_ORDER = (
    "event", "churn", "dataplane", "verify", "truthtable", "memory", "policy", "probe", "lab",
    "live", "watch", "repair", "endpoint", "flowlog", "supervised", "conntrack",
)  # fmt: skip
"""Every benchmark of ``run.BENCHES``: the load table lists each one that has a result."""


def under_load(name: str) -> str:
    """ " (figures under load)" after a target of a benchmark flagged under load."""
    d = load(name)
    return " (under load)" if d and d.get("loadavg", {}).get("under_load") else ""


def met(target: dict[str, Any]) -> str:
    return "**met**" if target["met"] else "**NOT met**"


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(HERE), *args], capture_output=True, text=True)
    return done.stdout.strip()


def commit_line() -> str:
    head = git("rev-parse", "HEAD")
    subject = git("log", "-1", "--format=%s")
    dirty = [
        line
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if "bench/results/" not in line and "bench/RESULTS.md" not in line
    ]
    note = f" (with uncommitted changes to {len(dirty)} file(s))" if dirty else ""
    return f"`{head[:12]}` ({subject}){note}"


def section_machine(out: list[str]) -> None:
    m = next((d["machine"] for d in map(load, ("event", "churn", "truthtable")) if d), None)
    run = load("run") or {}
    out.append("## Machine and run\n")
    if m:
        out.append(
            f"- {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
            f"Python {m['python']}\n"
            f"- {m['nft']}; {m['ipset']}; {m['iptables']} (Debian's default iptables: the nft "
            f"backend); {m['iperf3']}; {m['gcc']}\n"
            f"- load average when the first benchmark started: {m['loadavg_at_start']}"
        )
    out.append(f"- commit measured: {run.get('commit') or commit_line()}")
    if run:
        took = ", ".join(f"{k} {v:.0f} s" for k, v in run.get("timings", {}).items())
        out.append(
            f"- `make bench` took {run['seconds'] / 60:.1f} min ({took})"
            + (" — a **quick** run, not the full sizes" if run.get("quick") else "")
        )
    out.append(
        "- The machine is shared with other engineers' work: absolute figures move from run to "
        "run. Every ratio here is between contenders measured side by side, alternating, in this "
        "one run; compare ratios, not absolute figures across runs.\n"
    )
    rows = [(name, d["loadavg"]) for name in BENCH_ORDER if (d := load(name)) and "loadavg" in d]
    if rows:
        out.append(
            "Load average (1, 5, 15 min) during each benchmark, sampled every 2 s, and the CPU "
            "time other processes ran meanwhile (the whole machine's user-space time less "
            "the benchmark's own processes', in CPUs on average; not the kernel's threads, "
            "which work for the benchmark too); **under load** flags a "
            "benchmark during which other processes ran 0.2 CPUs' worth or more: its absolute "
            "figures, and its timing targets, are not the machine's. (A benchmark's own work, such "
            "as the event benchmark's CPU hog, stays in the 1-minute load average of the next "
            "ones for a minute or two: the load average alone would flag them.)\n"
        )
        out.append("| benchmark | at start | highest 1-min | at end | other processes | figures |")
        out.append("|---|---|---|---|---|---|")
        run_commit = (run.get("commit") or "").strip("`")[:12]
        for name, ld in rows:
            flag = "**under load**" if ld["under_load"] else "quiet"
            at = (load(name) or {}).get("commit")
            if at and run_commit and not at.startswith(run_commit):
                # Re-run alone after the whole run: say which code it measured.
                flag += f"; measured alone at `{at}`"
            others = ld.get("others_cpus")
            out.append(
                f"| {name} | {', '.join(map(str, ld['start']))} | {ld['max_1min']} | "
                f"{', '.join(map(str, ld['end']))} | "
                f"{'–' if others is None else f'{others:.2f} CPUs'} | {flag} |"
            )
        out.append("")


def section_targets(out: list[str], rows: list[tuple[str, str, str, str]]) -> None:
    out.append("## Targets\n")
    out.append("| target | measured | met? | margin |")
    out.append("|---|---|---|---|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")


def event_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    e = load("event")
    if not e:
        return
    out.append("## 1. One event: pod event to committed kernel change\n")
    out.append(
        "peerwall: `DesiredState.contribute` (a pod created) or `withdraw` (deleted), then "
        "`Enforcer.sync`, which returns once the kernel acknowledged the transaction (one "
        "nf_tables netlink batch, `dataplane.netlink`; libnftables only writes whole tables), "
        "on a table "
        "built by `compile.build` in a `pw-bench-` namespace. Liqo v0.10: `bench/liqo_v010.py`, "
        "its `EnsureRulesForClustersForwarding` with Debian's `ipset` and `iptables` (nft backend), "
        "one process per command, on every event. `ipset restore`: the changed set rebuilt and "
        "swapped in by one process. N addresses: N−12 in one peer's offloaded set, 4 in another "
        "peer's and 4 local backends reflected to each. Contenders alternate round by round.\n"
    )
    out.append(
        "| N | peerwall p50 | peerwall p99 | ipset restore p50 [min – max] | Liqo v0.10 median [min – max] | v0.10 ÷ peerwall | restore ÷ peerwall | v0.10 ÷ restore | v0.10 processes per event |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    sizes = sorted(e["sizes"].items(), key=lambda kv: int(kv[0]))
    for n, s in sizes:
        pw = s["peerwall"]
        r = e["ratios"].get(n, {})
        rst = s.get("ipset_restore")
        base = s.get("liqo_v010")
        procs = (
            ", ".join(f"{v} `{k}`" for k, v in base["processes_per_event"].items()) if base else "–"
        )
        out.append(
            f"| {int(n):,} | {t(pw['p50'])} | {t(pw['p99'])} (n={pw['n']}) | "
            + (
                f"{t(rst['p50'])} [{t(rst['min'])} – {t(rst['max'])}] (n={rst['n']})"
                if rst
                else "–"
            )
            + " | "
            + (
                f"{rng(base)}, {base['n']} event{'s' if base['n'] > 1 else ''}"
                if base
                else "not measured (peerwall alone)"
            )
            + f" | {x(r['liqo_v010_over_peerwall']) if 'liqo_v010_over_peerwall' in r else '–'}"
            + f" | {x(r['ipset_restore_over_peerwall']) if 'ipset_restore_over_peerwall' in r else '–'}"
            + f" | {x(r['liqo_v010_over_ipset_restore']) if 'liqo_v010_over_ipset_restore' in r else '–'}"
            + f" | {procs} |"
        )
    out.append("")
    fewer = [int(n) for n, s in sizes if "liqo_v010" in s and s["liqo_v010"]["n"] < 3]
    if fewer:
        out.append(
            f"The baseline at N = {', '.join(f'{n:,}' for n in fewer)} is measured on fewer "
            "repetitions (each event costs a minute or more); its column says how many.\n"
        )
    out.append(
        "Through the agent's loop (`Agent` with a hand-driven source; its own event-to-kernel "
        "latency metric), the same events one at a time:\n"
    )
    out.append(
        "| N | loop as it runs by default (no window) p50 / p99 | loop with a 2 ms coalescing window p50 / p99 |"
    )
    out.append("|---|---|---|")
    for n, s in sizes:
        a, b = s["peerwall_loop_coalesce_0ms"], s["peerwall_loop_coalesce_2ms"]
        out.append(
            f"| {int(n):,} | {t(a['p50'])} / {t(a['p99'])} | {t(b['p50'])} / {t(b['p99'])} |"
        )
    out.append("")
    n10 = e["sizes"].get("10000")
    if n10:
        pw = n10["peerwall"]
        key = "in_nft_call" if "in_nft_call_ms_per_event" in pw else "in_libnftables"
        out.append(
            f"Where peerwall's event time goes (N = 10,000): {t(pw[f'{key}_ms_per_event'] / 1e3)} "
            f"on average (the whole path's p50: {t(pw['p50'])}) "
            "is inside the `Nft` call (encoding the batch, `send`, the kernel's commit, the "
            "acknowledgement); the rest is Python (`contribute`, `take_changes`, the step). "
            "The profile:\n"
        )
        out.append("```\n" + _trim_profile(n10["profile"]) + "\n```\n")
    floor_rows = [(n, s) for n, s in sizes if "floor" in s]
    if floor_rows:
        out.append(
            "The floor, in the same run and the same table: a one-element batch built by hand "
            "(`struct` calls written for exactly that message), sent, its acknowledgement read; "
            "and the same bytes encoded before the clock starts (the kernel's commit and two "
            "system calls). Then peerwall's events again with the bench pinned to one CPU and a "
            "busy loop pinned to the other (`event_bench.cpu_hog`):\n"
        )
        out.append(
            "| N | peerwall p50 | hand-built batch p50 | pre-encoded p50 | peerwall ÷ hand-built | peerwall p99 under a CPU hog |"
        )
        out.append("|---|---|---|---|---|---|")
        for n, s in floor_rows:
            hog = s.get("peerwall_cpu_hog")
            out.append(
                f"| {int(n):,} | {t(s['peerwall']['p50'])} | {t(s['floor']['p50'])} | "
                f"{t(s['floor_pre_encoded']['p50'])} | {s['peerwall_over_floor']:.2f}× | "
                + (f"{t(hog['p99'])} (p50 {t(hog['p50'])})" if hog else "–")
                + " |"
            )
        out.append("")
    out.append("![one event: cost against N](results/event.png)\n")
    for key, tg in e["targets"].items():
        if key == "n10000_vs_baseline":
            targets.append(
                (
                    "One event, N = 10,000: ≥ 10,000× faster than Liqo v0.10",
                    x(tg["value"]),
                    met(tg),
                    f"{tg['value'] / tg['target']:.3g}× the target",
                )
            )
        elif key == "n10000_vs_ipset_restore":
            targets.append(
                (
                    "One event, N = 10,000: ≥ 100× faster than `ipset restore`",
                    x(tg["value"]),
                    met(tg),
                    f"{tg['value'] / tg['target']:.3g}× the target",
                )
            )
        elif key == "n50000_p99_ms":
            targets.append(
                (
                    "One event, N = 50,000: p99 < 2 ms (event → committed transaction)",
                    f"{tg['value']:.3f} ms",
                    met(tg),
                    f"{tg['target'] / tg['value']:.3g}× under",
                )
            )
        elif key.endswith("_p50_us"):
            n = int(key[1:].split("_")[0])
            targets.append((f"One event, N = {n:,}: p50 ≤ 50 µs", f"{tg['value']:.1f} µs", met(tg), f"{tg['target'] / tg['value']:.3g}× under"))  # fmt: skip
        elif key.endswith("_over_floor"):
            n = int(key[1:].split("_")[0])
            targets.append((f"One event, N = {n:,}: ≤ 3× a hand-built one-element batch", f"{tg['value']:.2f}×", met(tg), f"{tg['target'] / tg['value']:.3g}× the target"))  # fmt: skip
        elif key.endswith("_cpu_hog_p99_ms"):
            n = int(key[1:].split("_")[0])
            targets.append((f"One event, N = {n:,}: p99 ≤ 1 ms under a CPU hog on the other core", f"{tg['value']:.3f} ms", met(tg), f"{tg['target'] / tg['value']:.3g}× under"))  # fmt: skip
        elif key == "n50000_p99_ms_through_agent_loop":
            targets.append(("(informative) the same through the agent loop, as it runs by default", f"{tg['value']:.3f} ms", met(tg), f"{tg['target'] / tg['value']:.3g}× under"))  # fmt: skip


def _trim_profile(text: str, lines: int = 22) -> str:
    body = [line.rstrip() for line in text.strip().splitlines() if line.strip()]
    return "\n".join(body[:lines])


def churn_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    c = load("churn")
    if not c:
        return
    out.append(f"## 2. Churn: {c['events']:,} mixed events as fast as they come\n")
    mix = ", ".join(f"{v:,} {k}" for k, v in sorted(c["mix"].items()))
    out.append(
        f"{c['events']:,} events ({mix}; `pod+`/`pod-`: a pod offloaded here by one of 3 peers "
        f"created/deleted, `slice`: an EndpointSlice reflected to 1–2 peers gains or loses an "
        f"endpoint) on a gateway enforcing {c['base_addresses']:,} addresses. "
        + (
            f"The feed, the same for every contender: {c['per_read']} events per loop turn, as "
            "the agent's Kubernetes source takes a watch stream that runs ahead of it (a read of "
            "at most 64 KiB, ~4 KiB a pod event; the API server does not flush between queued "
            "events: `churn_bench.py`'s docstring cites the code). "
            if c.get("per_read", 1) > 1
            else "The feed: one loop turn per event. "
        )
        + "Convergence: from the "
        "first event to the commit after which the kernel holds the final state (checked). CPU: "
        "this process (libnftables runs in it) plus its children (`ipset`, `iptables`).\n"
    )
    out.append(
        "| contender | convergence | CPU seconds | transactions / processes | ÷ peerwall | kernel state checked |"
    )
    out.append("|---|---|---|---|---|---|")
    names = {
        "peerwall": "peerwall: the agent loop (`Agent` as it runs by default: no coalescing window, a burst waits 2 ms)",
        "peerwall_coalesce_2ms": "peerwall: the agent loop with a 2 ms coalescing window",
        "ipset_restore_coalesced": "`ipset restore`, coalesced the same way (the best the ipset approach could do)",
        "ipset_restore_per_event": "`ipset restore` once per event",
        "liqo_v010": "Liqo v0.10 (one full rewrite per event)",
        "peerwall_feed_only": "peerwall's feed alone: the same loop putting each event into peerwall's desired state, its changes taken once at the end, enforcing nothing (informative)",
        "feed_only": "the feed alone: the same loop taking the events in, enforcing nothing (the floor of every contender)",
    }
    for key, label in names.items():
        v = c["contenders"].get(key)
        if v is None:
            continue
        ratio = c["ratios"].get(f"{key}_over_peerwall")
        if v.get("extrapolated"):
            per = v["per_event_s"]
            conv = f"{t(v['seconds'])} (extrapolated: {per['n']} events measured, {rng(per)} each)"
            cpu = f"{v['cpu_s']:,.0f} (extrapolated)"
            tx = "one per event"
            ok = "–"
        else:
            conv, cpu = rng(v["seconds"]), rng(v["cpu_s"], fmt=lambda s: f"{s:.3g}")
            run0 = v["runs"][0]
            tx = (
                f"{sum(run0['transactions'].values())} transactions"
                if "transactions" in run0
                else f"{run0['restores']} restores"
                if "restores" in run0
                else "–"
            )
            ok = "yes" if v["kernel_state_ok"] else "**no**"
        out.append(f"| {label} | {conv} | {cpu} | {tx} | {x(ratio) if ratio else '1×'} | {ok} |")
    out.append("")
    rc = c["contenders"].get("ipset_restore_coalesced")
    if rc:
        ratio = c["ratios"]["ipset_restore_coalesced_over_peerwall"]
        restores = rc["runs"][0]["restores"]
        out.append(
            f"The coalesced `ipset restore` takes {ratio:.2g}× peerwall's time to converge: with "
            f"every event arriving within a fraction of a second it needs only {restores} "
            "whole-set restores. It trades per-event latency for batches — each restore costs "
            "O(set size), and a single event through it costs two orders of magnitude more than "
            "through peerwall (§1). peerwall batches a burst too (one netlink batch per "
            "transaction). Both are bounded below by the loop taking the events in (the feed "
            "alone, last row).\n"
        )
    bd = c.get("peerwall_breakdown")
    parts = ("feed_s", "desired_state_s", "enforcing_s")
    if bd and any(bd[k] < 0 for k in parts):
        out.append(
            "Where peerwall's time goes is not told here: in this run the differences of the "
            "medians above are within their noise (one of them is negative).\n"
        )
    elif bd:
        out.append(
            f"Where peerwall's time goes (medians): the feed {t(bd['feed_s'])}, peerwall's desired "
            f"state on top of it {t(bd['desired_state_s'])}, enforcing (its steps on the loop, "
            f"each diffing the EndpointSlices changed since the last, and the last step's answer) "
            f"{t(bd['enforcing_s'])}; its transactions, from handing "
            f"a batch over to judging the answer, {t(bd['in_transactions_s'])} in all: a burst's "
            f"run in the element writer process, beside the loop (the kernel's share: 0.7–1.2 µs "
            f"an element).\n"
        )
    tg = c["targets"]["peerwall_under_1s"]
    targets.append(
        (
            "Churn, 10,000 mixed events: peerwall under 1 s",
            t(tg["value"]),
            met(tg),
            f"{tg['target'] / tg['value']:.3g}× under",
        )
    )
    tg = c["targets"].get("peerwall_vs_coalesced_restore")
    if tg:
        targets.append(
            (
                "Churn: peerwall converges in ≤ 0.5× the coalesced `ipset restore` (same run)",
                f"{tg['value']:.2f}×",
                met(tg),
                f"{tg['target'] / tg['value']:.3g}× the target",
            )
        )


def dataplane_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    d = load("dataplane")
    if not d:
        return
    st = d["settings"]
    out.append("## 3. Data plane: connection rate and throughput through one gateway\n")
    out.append(
        "Client namespace → gateway namespace → server namespace; the client enters the gateway "
        "on a peerwall tunnel interface from the peer's pod CIDR. `in`: the server address is in "
        "the big set (for the one-rule-per-address design, a rule halfway down the chain); `out`: "
        "its lookup in the big set misses and a small set (one more rule) lets it through. "
        f"`bench/loadgen.c` (gcc -O2): {st['clients']} client processes, {st['concurrency']} "
        "connects in flight each, every connection closed by RST; "
        f"{st['reps']} repetitions of {st['seconds']} s per configuration, every configuration "
        "once per repetition in turn (each design's sizes in reverse order every other repetition, "
        "so that a drift within a repetition favours no size). Share: the rate over the same design's 0-address rate "
        "for the same destination case (in or out), per repetition (measured seconds apart), "
        "median [min – max].\n"
    )
    c = d["connections"]
    out.append(
        f"Load generator ceiling (client and server joined directly): {rng(c['ceiling']['in'], fmt=_k)} "
        f"connections/s; through a gateway without any rule: {rng(c['bare']['in'], fmt=_k)}.\n"
    )
    out.append(
        "| design | N | connections/s, destination in | share | connections/s, destination out | share |"
    )
    out.append("|---|---|---|---|---|---|")
    for design in ("peerwall", "ipset", "naive"):
        for n in d["sizes"]:
            key = f"{design}-{n}"
            p = d["paired_share_of_0_addresses"][key]
            out.append(
                f"| {design} | {n:,} | {rng(c[key]['in'], fmt=_k)} | {rng(p['in'], fmt=_pct)} | "
                f"{rng(c[key]['out'], fmt=_k)} | {rng(p['out'], fmt=_pct)} |"
            )
    out.append("")
    b = d["throughput_bps"]
    out.append("Bulk throughput, one iperf3 stream (destination in), Gbit/s:\n")
    out.append("| configuration | throughput |")
    out.append("|---|---|")
    for key, v in b.items():
        out.append(f"| {key} | {rng(v['in'], fmt=lambda bps: f'{bps / 1e9:.1f}')} |")
    out.append("")
    out.append(
        "Only a connection's first packet walks the filter chain (the rest match `ct state "
        "established`), so throughput does not depend on the design; the connection rate is "
        "where a per-address cost would show, and it shows for the one-rule-per-address design "
        "only.\n"
    )
    out.append("![data plane: connection rate against N](results/dataplane.png)\n")
    for tg in d["targets"].values():
        targets.append(
            (
                f"Data plane: with {max(d['sizes']):,} addresses ≥ 95% of the 0-address connection rate (worse of in/out, each against its own 0-address rate, paired median)",
                _pct(tg["value"]),
                met(tg),
                f"{(tg['value'] - tg['target']) * 100:+.1f} points",
            )
        )
    naive = d["paired_share_of_0_addresses"][f"naive-{max(d['sizes'])}"]
    targets.append(
        (
            "Data plane: the naive design's decay shown",
            f"{_pct(naive['in']['median'])} (in) / {_pct(naive['out']['median'])} (out) at {max(d['sizes']):,}",
            "**met**",
            "see §3",
        )
    )


def _k(rate: float) -> str:
    return f"{rate / 1e3:.1f}k"


def _pct(v: float) -> str:
    return f"{v * 100:.0f}%"


def verify_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    v = load("verify")
    if not v:
        return
    lab = v["lab"]
    best = str(v["best_concurrency"])
    default = str(v["default_concurrency"])
    run0 = v["prober"][best]["runs"][0]
    out.append("## 4. Verification speed: probes per second on a 200-pod lab\n")
    out.append(
        f"`peerwall.lab.build.up` (3 clusters, {lab['pods']} pods, {lab['services']} services, "
        f"{lab['namespaces']} namespaces; up in {t(lab['up_s'])}, down in {t(lab['down_s'])}); "
        f"every cell probed by `observe_lab` with real TCP ({run0['probes']:,} connections: "
        + ", ".join(f"{n:,} {k}" for k, n in run0["outcomes"].items())
        + "; 1 s timeout), every observed table checked against the computed one (all right: "
        f"{'yes' if v['targets']['every_cell_right']['met'] else '**no**'}). The prober runs at "
        f"its default concurrency ({int(default):,}) and at {int(best):,}, alternately. The "
        "per-process approach runs the very same probes (`Probe.reproducer`: `ip netns exec NS "
        "nc -zvw1 -p PORT ADDR PORT`), one process each.\n"
    )
    out.append(
        "| approach | probes/s | ÷ sequential, same probes | ÷ sequential, connect-only | ÷ 16 in parallel |"
    )
    out.append("|---|---|---|---|---|")
    for c, p in v["prober"].items():
        r = v["ratios"][c]
        label = f"peerwall prober, one process, concurrency {int(c):,}" + (
            " (the default)" if c == default else ""
        )
        out.append(
            f"| {label} | {rng(p['probes_per_s'], fmt=lambda q: f'{q:,.0f}')} | "
            f"{x(r['prober_over_sequential'])} | {x(r['prober_over_connect_only'])} | "
            f"{x(r['prober_over_parallel'])} |"
        )
    labels = {
        "sequential": "one process per probe, one after the other, same mix of probes",
        "connect_only": "one process per probe, one after the other, only probes that connect (its best case)",
        "parallel": "one process per probe, 16 at a time, same mix",
    }
    for key, label in labels.items():
        p = v["per_process"][key]
        out.append(f"| {label} ({p['probes']} probes) | {p['probes_per_s']:.3g} | | | |")
    out.append("")
    cpu = run0["cpu_user_s"] + run0["cpu_system_s"]
    out.append(
        f"At concurrency {int(best):,} a run used {cpu:.1f} CPU seconds ({run0['cpu_user_s']:.1f} "
        f"user, {run0['cpu_system_s']:.1f} system) over {t(run0['seconds'])}: "
        f"{cpu / run0['probes'] * 1e6:.0f} µs per probe, most of it in the kernel "
        "(`connect_ex` sends the SYN down the whole emulated path — veths, the gateways' "
        "conntrack, NAT and filter — inside the system call; `close` sends the RST; the "
        "listeners' `send`). At the default concurrency the probes that are dropped bound the "
        "run instead: each waits its full 1 s timeout holding one of the 2,000 slots. The lab's "
        "gateways' conntrack tables are flushed before each run: every probe dropped on the far "
        "side leaves a SYN_SENT entry for 120 s in the near gateway (~25,000 per full probe of "
        "this lab), and the kernel's one table (262,144 entries, shared with the whole machine) "
        "fills after a few back-to-back runs, after which new SYNs are dropped and cells come out "
        "wrong. Profile of one run (top by own time):\n"
    )
    out.append("```\n" + _trim_profile(v["profile"]) + "\n```\n")
    tg = v["targets"]
    a = tg["at_least_100x_per_process_same_probes"]
    b = v["informative"]["per_process_connect_only"]
    targets.append(
        (
            f"Probes: ≥ 100× the per-process approach (same probes, one after the other; prober at concurrency {int(best):,})",
            x(a["value"]),
            met(a),
            f"{a['value'] / 100:.3g}× the target",
        )
    )
    targets.append(
        (
            "(informative) the per-process approach at its best (only probes that connect, nothing waits) against the prober on the whole table",
            x(b["value"]),
            met(b),
            f"{b['value'] / 100:.3g}× the target",
        )
    )


def truthtable_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    tt = load("truthtable")
    if not tt:
        return
    out.append("## 5. Truth tables: 10,000 to 100,000 pods over 20 clusters\n")
    first = next(iter(tt["sizes"].values()))
    out.append(
        "Generated topologies (`policy_bench.generate`: a tenth as many services as pods), written "
        f"as JSON files. Load path: {first['load_path']}. Each repetition is a fresh interpreter "
        "(peak RSS is its own). Compute: `expect` (IntraClusterTrafficSegregation as the global "
        "default). Output: the compact form (`--output json-classes`, docs/json-classes.md) to a "
        "file; the dense contract (`--output json`) to /dev/null (the writer's own cost: every "
        "byte produced, none copied) and, at 10,000 pods, into a tmpfs file.\n"
    )
    out.append(
        "| pods | file | parse | validate + resolve | compute | classes (rows × columns) | compact: write, size | file → compact | dense → /dev/null | dense → tmpfs file | peak RSS to the compact output / with the dense writer too |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, s in sorted(tt["sizes"].items(), key=lambda kv: int(kv[0])):
        dense_file = (
            f"{rng(s['dense_file_s'])}, {s['dense_file_mb_per_s']:,.0f} MB/s"
            if "dense_file_s" in s
            else "–"
        )
        out.append(
            f"| {int(n):,} | {s['file_bytes'] / 1e6:.1f} MB | {rng(s['parse_s']) if 'parse_s' in s else '–'} | "
            f"{rng(s['validate_s']) if 'validate_s' in s else rng(s['load_s'])} | {rng(s['compute_s'])} | "
            f"{s['row_classes']} × {s['column_classes']} ({s['cells']:,} cells) | "
            f"{rng(s['compact_s'])}, {s['compact_bytes'] / 1e6:.2f} MB | {rng(s['to_compact_s'])} | "
            f"{rng(s['dense_null_s'])} ({s['dense_bytes'] / 1e9:.1f} GB, {s['dense_null_mb_per_s']:,.0f} MB/s) | "
            f"{dense_file} | {rng(s['rss_after_compact'], fmt=mib)} / {rng(s['rss_peak'], fmt=mib)} |"
        )
    out.append("")
    out.append(
        "`peerwall matrix` end to end, as a user runs it (a subprocess: interpreter start, imports, the file loader; peak RSS from wait4):\n"
    )
    out.append("| pods | `-o json-classes` | `-o json` > /dev/null |")
    out.append("|---|---|---|")
    for n, s in sorted(tt["sizes"].items(), key=lambda kv: int(kv[0])):
        cli = s["cli"]
        cells = [
            f"{rng(cli[k]['seconds'])}, {mib(cli[k]['maxrss']['max'])}" if k in cli else "–"
            for k in ("json-classes", "json_to_devnull")
        ]
        out.append(f"| {int(n):,} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("![truth tables: cost against pods](results/truthtable.png)\n")
    scale = tt.get("scale")
    if scale:
        out.append(
            "Growth from 10,000 to 1,000,000 pods, 1,000 pods per cluster (20 clusters at "
            "10,000 pods, 1,000 at 1,000,000), a tenth as many services, one fresh interpreter per "
            "point, JSON file → compact output (the dense form is not written: a trillion cells). "
            "Two generators: today's (`policy_bench.generate`: each service selects one deployment "
            "of 5 pods) and the adversarial one (`bench/adversarial.py`: services selecting whole "
            "tiers and whole namespaces, several services per pod, overlapping pod CIDRs, 6 of 8 "
            "namespaces offloaded to 2–6 providers). Classes: rows are (physical cluster, API "
            "verdicts), columns are signatures (the source clusters a destination answers, and "
            "how): policy/signatures.py.\n"
        )
        out.append(
            "| generator | pods | clusters | file | parse | validate + resolve | compute | "
            "classes (rows × columns) | write compact | file → compact | peak RSS |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for gen, g in scale.items():
            for n, r in sorted(g["sizes"].items(), key=lambda kv: int(kv[0])):
                out.append(
                    f"| {gen} | {int(n):,} | {r['clusters']:,} | {r['file_bytes'] / 1e6:.0f} MB | "
                    f"{t(r['parse_s'])} | {t(r['validate_s'])} | {t(r['compute_s'])} | "
                    f"{r['row_classes']:,} × {r['column_classes']:,} | {t(r['compact_s'])} | "
                    f"{t(r['to_compact_s'])} | {mib(r['rss_after_compact'])} |"
                )
        out.append("")
        for gen, g in scale.items():
            k, c = g.get("exponent_to_compact"), g.get("exponent_compute")
            if k is not None:
                out.append(
                    f"- {gen}: fitted exponent (least squares of log seconds on log pods) "
                    f"{k:.2f} from file to compact output, {c:.2f} for the compute alone."
                )
        out.append("")
        out.append(
            f"![truth tables: growth from 10,000 to 1,000,000 pods, log-log]({tt['scale_plot']})\n"
        )
    for key, prof in tt.get("profiles", {}).items():
        n, phase = key.split(":")
        out.append(
            f"Profile of the {phase} phase at {int(n):,} pods (a target is missed; cumulative):\n"
        )
        out.append("```\n" + _trim_profile(prof, 26) + "\n```\n")
    for key, tg in tt["targets"].items():
        label = {
            "compact_100000_under_10s": "Truth table, 100,000 pods, JSON file → compact output: < 10 s",
            "compact_100000_under_2GiB": "Truth table, 100,000 pods, JSON file → compact output: < 2 GiB",
            "compact_100000_under_10s_cli": "(informative) the same through `peerwall matrix` (a new process)",
            "dense_10000_under_1s": "Truth table, 10,000 pods → dense JSON: < 1 s (to /dev/null)",
            "dense_10000_under_1s_to_a_file": "(informative) the same into a tmpfs file (1.8 GB copied)",
            "scale_today_1000000_under_30s": "Truth table, 1,000,000 pods in 1,000 clusters (today's generator), JSON file → compact output: < 30 s",
            "scale_today_1000000_under_3GiB": "Truth table, 1,000,000 pods in 1,000 clusters (today's generator): < 3 GiB",
            "scale_adversarial_1000000_under_30s": "Truth table, 1,000,000 pods in 1,000 clusters (adversarial generator), JSON file → compact output: < 30 s",
            "scale_adversarial_1000000_under_3GiB": "Truth table, 1,000,000 pods in 1,000 clusters (adversarial generator): < 3 GiB",
        }[key]
        if "GiB" in key:
            targets.append(
                (label, mib(tg["value"]), met(tg), f"{tg['target'] / tg['value']:.3g}× under")
            )
        else:
            margin = (
                f"{tg['target'] / tg['value']:.3g}× under"
                if tg["met"]
                else f"{tg['value'] / tg['target']:.3g}× over"
            )
            targets.append((label, t(tg["value"]), met(tg), margin))


def watch_section(out: list[str]) -> None:
    w = load("watch")
    if not w:
        return
    out.append("## API watches and memory per gateway (informative)\n")
    out.append(
        "`watch_bench.py`: one cluster providing to N peers, every object it would hold served by "
        "the tests' fake API server; each peer's gateway runs its own agent, whose Kubernetes "
        "source watches in sidecar mode. Watch connections the API server holds once all are "
        "synced; RSS of one gateway's source in a fresh interpreter (the agent's loop and "
        "nftables add the same for any N, section 6).\n"
    )
    out.append(
        "| peers | objects in the cluster | watches per gateway | watches in all | "
        "RSS per gateway | above the imports | objects cached per gateway |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for r in w["rows"]:
        g = r["per_gateway"]
        out.append(
            f"| {r['peers']} | {r['objects_in_cluster']:,} | {g['watch_connections']} | "
            f"{r['total_watch_connections']:,} | {g['rss_mib']} MiB | {g['source_rss_mib']} MiB | "
            f"{g['objects_cached']:,} |"
        )
    out.append(
        "\nWatches grow as 15 per peer, each cluster-wide selection (Services, EndpointSlices, "
        "Nodes, Namespaces, ForeignClusters, PeeringSecurities) once per gateway: every change "
        "of those is sent N times. The fan-out design that removes this is in "
        "docs/kubernetes.md.\n"
    )


def memory_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    m = load("memory")
    tt = load("truthtable")
    if not m:
        return
    out.append("## 6. Memory\n")
    r = m["rss"]
    out.append(
        f"The agent (`Agent`, real loop and libnftables, in a `pw-bench-` namespace) with "
        f"{m['pods']:,} offloaded pods and {m['services']:,} services (4 backends each, reflected "
        f"to 1–2 of 3 peers): {m['elements']:,} set elements, one contribution per pod and per "
        f"EndpointSlice; first table written in {rng(m['first_table_s'])}; then 2,000 pod events. "
        "Peak RSS (`ru_maxrss`) at each step of a process that drives the agent's objects by "
        "hand (not the `peerwall agent` process, measured after its read-backs below):\n"
    )
    out.append("| step | peak RSS |")
    out.append("|---|---|")
    for k, label in (
        ("after_imports", "interpreter + the agent's imports"),
        ("after_desired_state", "+ the desired state"),
        ("after_table", "+ the whole table rendered and committed"),
        ("after_events", "+ 2,000 events"),
    ):
        out.append(f"| {label} | {rng(r[k], fmt=mib)} |")
    out.append("")
    if tt and "100000" in tt["sizes"]:
        s = tt["sizes"]["100000"]
        out.append(
            f"The truth table for 100,000 pods: peak RSS {rng(s['rss_after_compact'], fmt=mib)} from "
            f"the JSON file to the compact output; {rng(s['rss_peak'], fmt=mib)} once the dense "
            "writer (to /dev/null) has also run, its row texts held (§5).\n"
        )
    procs = m.get("processes") or []
    if procs:
        out.append(
            "The `peerwall agent` process itself, the running process after its read-backs (not "
            "a fresh object): with the file source (`bench/memory_bench.py agent_topology`: N pods "
            "of 3 peers offloaded here, N/10 local backends reflected to the 3 peers) and with the "
            "Kubernetes source (`--peer`, one gateway's agent as on Liqo v1: the same N pods "
            "offloaded here by that one peer, the same N/10 backends; the objects Liqo would hold, "
            "`liqo_objects.cluster_objects`, served by the fake API server, a process of its own "
            "in the agent's namespace, not measured). Read from /proc/<pid>/status of the agent "
            f"once it has read its table back {procs[0]['read_backs']} times: steady VmRSS "
            "against the budget of 100 MiB + 1 KiB per enforced address (distinct addresses in "
            "its sets, read from the kernel), and VmHWM, the peak since it started (loading the "
            "topology or listing the cluster included):\n"
        )
        out.append(
            "| source | pods | addresses | steady RSS | budget | per address | peak | peak ÷ steady |"
        )
        out.append("|---|---|---|---|---|---|---|---|")
        for p in procs:
            out.append(
                f"| {p.get('source', 'file')} | {p['pods']:,} | {p['addresses']:,} | "
                f"{mib(p['rss'])} | {mib(p['budget'])} | {p['per_address']:.0f} B | "
                f"{mib(p['peak'])} | {p['peak'] / p['rss']:.2f}× |"
            )
        out.append("")
        for p in procs:
            n, source = p["pods"], p.get("source", "file")
            key = f"process_{n}" if source == "file" else f"process_{n}_{source}"
            st, pk = m["targets"][f"{key}_steady"], m["targets"][f"{key}_peak"]
            over = st["target"] / st["value"]
            targets.append((f"`peerwall agent` ({source} source) at {n:,} pods after read-backs: ≤ 100 MiB + 1 KiB per address", mib(st["value"]), met(st), f"{over:.3g}× under" if st["met"] else f"{1 / over:.3g}× over"))  # fmt: skip
            targets.append((f"`peerwall agent` ({source} source) at {n:,} pods: peak ≤ 1.5× steady", f"{pk['value']:.2f}×", met(pk), f"{pk['target'] / pk['value']:.3g}× under" if pk["met"] else f"{pk['value'] / pk['target']:.3g}× over"))  # fmt: skip
    tg = m["targets"]["agent_rss_under_300MiB"]
    targets.append(
        (
            "Agent RSS, 50,000 offloaded pods and 5,000 services: < 300 MiB",
            mib(tg["value"]),
            met(tg),
            f"{tg['target'] / tg['value']:.3g}× under",
        )
    )


def live_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    lv = load("live")
    if not lv or "edits" not in lv:
        return
    out.append("## 7. Live edits in the lab: `lab apply` to every gateway enforcing it\n")
    n = len(lv["edits"])
    out.append(
        f"The three-cluster example with an agent per gateway (IntraClusterTrafficSegregation), "
        f"then {n} random edits of the 11 kinds of the agent issue, the schedule of "
        "tests/lab/test_live_edits.py (`tests/edits.py`). Each edit is timed whole through "
        "`lab.build.apply`: the lab rewired (namespaces, veths, routes, the emulated kube-proxy), "
        "then every agent has read its new input, committed its transaction and cleared the flows "
        "the new state forbids. After each edit every cell is probed (not timed into the edit) "
        f"and checked: {sum(e['wrong_cells'] for e in lv['edits'])} wrong cells in all. "
        f"Over all edits: {t(lv['edit_seconds']['median'])} median, {t(lv['p90_s'])} p90, "
        f"{t(lv['edit_seconds']['max'])} at most; the agents' share {t(lv['agents_seconds']['median'])} "
        "median.\n"
    )
    out.append("| kind of edit | edits | median [min – max] |")
    out.append("|---|---|---|")
    for kind, v in lv["by_kind"].items():
        out.append(f"| {kind.replace('_', ' ')} | {v['n']} | {rng(v)} |")
    out.append("")
    tx = ", ".join(
        f"{c}: " + " / ".join(f"{k} {m}" for k, m in d.items())
        for c, d in lv["transactions"].items()
    )
    out.append(
        "Adding a cluster is the slowest: its namespaces are built and its agent, a new process, "
        "starts and writes its first table. Transactions each agent made, at the end (`full` is "
        f"the one whole table every agent writes when it starts): {tx}.\n"
    )
    tg = lv["targets"]
    e = tg["every_edit_within_1s"]
    targets.append(
        (
            f"Live edits ({n}, every kind): each enforced by every gateway within 1 s",
            t(e["value"]) + " (slowest)",
            met(e),
            f"{e['target'] / e['value']:.3g}× under"
            if e["met"]
            else f"{e['value'] / e['target']:.3g}× over",
        )
    )
    w = tg["every_cell_right"]
    targets.append(
        (
            "Live edits: every cell right after each edit, no whole-table replace",
            f"{w['value']} wrong",
            "**met**" if w["met"] and tg["no_whole_table_replace"]["met"] else "**NOT met**",
            "–",
        )
    )


def repair_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    r = load("repair")
    if not r or "window" not in r:
        return
    w = r["window"]
    out.append("## 8. A deleted table's open window\n")
    out.append(
        "The seed in the lab with an agent per gateway that reads its table back only once an "
        f"hour; `inet peerwall` deleted {r['settings']['deletions']} times in C1's gateway by "
        "another process. The window runs from the deletion's nftables notification to the "
        "notification of the agent's repairing transaction (one listener thread stamps both): "
        f"p50 {t(w['p50'])}, p99 {t(w['p99'])}, at most {t(w['max'])}; from just before the delete "
        f"call (an upper bound) p50 {t(r['from_call']['p50'])}, p99 {t(r['from_call']['p99'])}; {r['missed']} not "
        "repaired. Before the agent listened to notifications the window was up to the resync "
        "interval (8.9 s and 10.0 s measured at the default 10 s).\n"
    )
    tg = r["targets"]["window_p99"]
    targets.append(
        (
            "A deleted table is back within 100 ms (p99, from the delete call)",
            t(tg["value"]),
            met(tg),
            f"{0.1 / tg['value']:.3g}× under" if tg["met"] else f"{tg['value'] / 0.1:.3g}× over",
        )
    )


def flowlog_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    fl = load("flowlog")
    if not fl or "ratios" not in fl:
        return
    out.append("## 9. Explained drops: what reporting every drop costs\n")
    c = fl["connections_per_second"]
    out.append(
        "A gateway run by the real agent loop, its drop rules reporting to NFLOG at the default "
        "rate limit (50/s per rule, bursts of 100) with the agent reading (`on`), or without log "
        "rules (`off`); new TCP connections per second to an allowed destination, quiet and under "
        "a UDP flood of forbidden traffic "
        f"({_k(fl['flood_datagrams_per_second']['on']['median'])} datagrams/s `on`, "
        f"{_k(fl['flood_datagrams_per_second']['off']['median'])}/s `off`). "
        f"{fl.get('note', '')}\n"
    )
    out.append("| | quiet | under the flood |")
    out.append("|---|---|---|")

    def rate(v: dict[str, Any]) -> str:
        return f"{_k(v['median'])}/s [{_k(v['min'])} – {_k(v['max'])}]"

    for k in ("on", "off"):
        out.append(f"| logging {k} | {rate(c[f'{k}-quiet'])} | {rate(c[f'{k}-flood'])} |")
    out.append("")
    pairs = fl.get("connections_on_over_off_under_flood_pairs")
    if pairs:
        q1, q3 = pairs["quartiles"]
        out.append(
            f"Under the flood, {pairs['n']} pairs of short runs, on and off back to back (the "
            "order alternating), the flood on one core and the measured clients and servers on "
            f"the other: on over off {pairs['median']:.3f} (median of the pairs' ratios; "
            f"quartiles {q1:.3f} – {q3:.3f}, range {pairs['min']:.2f} – {pairs['max']:.2f}); "
            "the ratio of the medians above "
            f"{fl['ratios']['connections_on_over_off_under_flood_medians']:.3f}.\n"
        )
    k, e = fl["cpu_kernel_path"], fl["cpu_explained"]
    m = fl["mode_switch_seconds"]
    out.append(
        f"Agent CPU per 1,000 events: {k['cpu_ms_per_1000_events']:.1f} ms from the kernel "
        f"({k['events']} events of a flood reported without a practical limit; the kernel "
        f"found the socket full {k['kernel_overflows']} time(s)), "
        f"{e['cpu_ms_per_1000_events']:.1f} ms naming and explaining alone (seed). A mode change "
        f"(one element): {t(m['quiet']['median'])} quiet, {t(m['flood']['median'])} under the "
        f"flood with logging on"
        + (
            f", {t(m['flood-off']['median'])} under the flood with logging off"
            if "flood-off" in m
            else ""
        )
        + f" (median of {m['quiet']['n']} each).\n"
    )
    sp = fl.get("mode_switch_pairs", {}).get("flood/quiet")
    if sp:
        q1, q3 = sp["quartiles"]
        out.append(
            f"The mode change in {sp['n']} pairs of blocks of switches, quiet and under the "
            "flood back to back (the order alternating): under the flood over quiet "
            f"{sp['median']:.3f} (median of the pairs' ratios; quartiles {q1:.3f} – {q3:.3f}, "
            f"range {sp['min']:.2f} – {sp['max']:.2f}); the ratio of the medians above "
            f"{fl['ratios']['mode_switch_flood_over_quiet_medians']:.3f}.\n"
        )
    for name, tg in fl["targets"].items():
        v = tg["value"]
        targets.append((f"Explained drops: {name}", f"{v:.3g}", met(tg), "–"))


def conntrack_section(out: list[str], targets: list[tuple[str, str, str, str]]) -> None:
    ct = load("conntrack")
    if not ct or not ct.get("mixes"):
        return
    out.append("## 10. Flow cleanup against a full conntrack table\n")
    mixes = ct["mixes"]
    entries = max(r["entries"] for r in mixes.values())
    out.append(
        "The cleanup of a narrowing change (`Enforcer.clear_flows`, C1 of the three-cluster "
        "example switched to IntraClusterTrafficSegregation, in a fresh process as the agent "
        f"runs it) over a conntrack table of up to {entries:,} entries filled through ctnetlink "
        "in a scratch namespace (`bench/conntrack_bench.py`: what each mix holds), against issue "
        "18 item 3: the narrowing step reported in under 2 s, under 128 MiB. Seconds from the "
        "start of the dump to the last deletion acknowledged; peak RSS (`ru_maxrss`) of that "
        "process; the 1-minute load average when the mix ended.\n"
    )
    out.append("| mix | entries | deleted | seconds | peak RSS | load |")
    out.append("|---|---|---|---|---|---|")
    for name, r in mixes.items():
        out.append(
            f"| {name} | {r['entries']:,} | {r['cleared']:,} | {t(r['seconds'])} | "
            f"{mib(r['maxrss'])} | {r.get('loadavg1', '–')} |"
        )
    out.append("")
    for name, tg in ct["targets"].items():
        under = min(2.0 / tg["seconds"], (128 * MiB) / tg["maxrss"])
        targets.append(
            (
                f"Conntrack cleanup, {name} ({mixes[name.split(':')[0]]['entries']:,} entries)",
                f"{t(tg['seconds'])}, {mib(tg['maxrss'])}",
                met(tg),
                f"{under:.3g}× under" if tg["met"] else f"{1 / under:.3g}× over",
            )
        )


def acceptance_section(out: list[str]) -> None:
    e, c, m = load("event"), load("churn"), load("memory")
    if not (e and c and m):
        return
    out.append("## The agent issue's benchmark acceptance\n")
    p99 = e["sizes"]["50000"]["peerwall"]["p99"] if "50000" in e["sizes"] else None
    loop = (
        e["sizes"]["50000"]["peerwall_loop_coalesce_0ms"]["p99"] if "50000" in e["sizes"] else None
    )
    conv = c["contenders"]["peerwall"]["seconds"]["median"]
    rss = m["rss"]["peak"]["max"]
    out.append(
        f'- "with 50,000 offloaded pods enforced, one pod event reaches the kernel in under 2 ms '
        f"at p99 (event → committed transaction)\": {t(p99)} at p99 on the agent's path — "
        f"**{'met' if p99 is not None and p99 < 2e-3 else 'NOT met'}**. Through the agent loop "
        f"as it runs by default the p99 is {t(loop)} (§1)."
    )
    out.append(
        f'- "10,000 mixed events converge in under 1 s": {t(conv)} — **{"met" if conv < 1 else "NOT met"}**.'
    )
    out.append(
        f'- "agent RSS under 300 MiB": {mib(rss)} — **{"met" if rss < 300 * MiB else "NOT met"}** '
        "(the hand-driven loop's peak; the `peerwall agent` process after its read-backs: §6)."
    )
    lv = load("live")
    if lv and "targets" in lv:
        tg = lv["targets"]
        ok = all(v["met"] for v in tg.values())
        out.append(
            f'- "a random sequence of at least 30 live edits covering every kind …; after each, '
            f'`lab probe` equals `matrix` … within 1 s, … not a whole-table replace": '
            f"{len(lv['edits'])} edits, the slowest enforced in {t(tg['every_edit_within_1s']['value'])}, "
            f"{tg['every_cell_right']['value']} wrong cells, one whole table per agent (its start) "
            f"— **{'met' if ok else 'NOT met'}** (§7)."
        )
    out.append("")


def other_section(out: list[str]) -> None:
    pol, probe, lab = load("policy"), load("probe"), load("lab")
    if not (pol or probe or lab):
        return
    out.append("## Other benchmarks (policy core, prober engine, lab)\n")
    if pol and "expect" in pol:
        out.append(
            f"- policy core (`policy_bench.py`, YAML topology of {pol['topology']['pods']:,} pods): "
            f"YAML parse {t(pol['load']['yaml_parse_s'])}, load + validate + resolve "
            f"{t(pol['load']['load_validate_resolve_s'])}, `expect` "
            + " / ".join(t(v) for v in pol["expect"]["seconds"].values())
            + f", `write_json` at {pol['json']['pods']:,} pods {t(pol['json']['write_json_s'])} "
            f"({pol['json']['bytes'] / 1e6:.0f} MB)"
        )
    if probe and "probes_per_s" in probe:
        out.append(
            f"- prober engine (`probe_throughput.py`, {probe['pods']} pods, {probe['probes']:,} "
            f"connecting probes): {probe['probes_per_s']:,.0f} probes/s"
        )
    if lab and "demo_seconds" in lab:
        out.append(
            f"- lab (`lab_bench.py`): `peerwall demo` {lab['demo_seconds']} s; `lab up` of "
            f"{lab['pods']} pods with agents {lab['lab_up_seconds']} s, down {lab['lab_down_seconds']} s; "
            f"full probe {lab['probes_per_second']:,}/s"
        )
    out.append("")


def findings_section(out: list[str]) -> None:
    v = load("verify")
    out.append("## Findings for other parts of peerwall\n")
    out.append(
        "Found by these benchmarks and fixed before this run: the agent loop's 2 ms coalescing "
        "wait before every sync (a lone event is now applied at once; what queues up during a "
        "transaction shares the next one); a snapshot of the whole desired state after every "
        "narrowing step (flows are now checked against live views of the peers a step narrowed); "
        "the memfd on one-command scripts (they now go through the buffer call); quadratic "
        "validation (pods are now indexed by namespace and label); SYN_SENT entries of dropped "
        "probes living 120 s in the lab's gateways (10 s there now). Still open:\n"
    )
    if v:
        out.append(
            f"- **Prober concurrency**: at the default {v['default_concurrency']:,} the dropped "
            "probes' 1 s timeouts bound a run of the 200-pod lab (about 3,200 probes/s); at 8,000 "
            "it runs at twice that with every cell right. At 16,000 (tried while developing) a "
            "few cells to one pod came out MISDIRECTED in some runs (a first SYN lost, its "
            "retransmission answered right at the 1 s deadline): not explained yet, so 8,000 is "
            "what is measured. Raising `ProbeSettings.concurrency` to 8,000 (`settings.py`) "
            "would about double `lab probe`'s rate."
        )
    out.append("")


def write_report() -> Path:
    out: list[str] = ["# peerwall benchmark results\n"]
    out.append(
        "Written by `make bench` (`bench/run.py`, then `bench/report.py`) from bench/results/*.json; "
        f"rendered {time.strftime('%Y-%m-%d %H:%M %Z')}. Figures are median [min – max] over the "
        "repetitions unless marked p50/p99 (over events). What each benchmark does and how to run "
        "one alone: bench/README.md.\n"
    )
    section_machine(out)
    targets: list[tuple[str, str, str, str]] = []
    body: list[str] = []
    body_only = {"watch": watch_section}
    for name, section in (
        ("event", event_section),
        ("churn", churn_section),
        ("dataplane", dataplane_section),
        ("verify", verify_section),
        ("truthtable", truthtable_section),
        ("memory", memory_section),
        ("watch", None),
        ("live", live_section),
        ("repair", repair_section),
        ("flowlog", flowlog_section),
        ("conntrack", conntrack_section),
    ):
        if section is None:
            body_only[name](body)
            continue
        first = len(targets)
        section(body, targets)
        # A target measured under load says so where it is read.
        targets[first:] = [(a, b + under_load(name), c, d) for a, b, c, d in targets[first:]]
    run = load("run") or {}
    if run and not run.get("quick"):
        s = run["seconds"]
        targets.append(
            (
                "`make bench` under 15 minutes on this 2-core machine",
                t(s),
                "**met**" if s < 900 else "**NOT met**",
                f"{900 / s:.3g}× under" if s < 900 else f"{s / 900:.3g}× over",
            )
        )
    section_targets(out, targets)
    acceptance_section(out)
    out += body
    other_section(out)
    findings_section(out)
    OUT.write_text("\n".join(out) + "\n")
    return OUT


if __name__ == "__main__":
    print(write_report())
