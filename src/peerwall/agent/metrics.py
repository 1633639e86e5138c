"""What the agent exposes: Prometheus metrics, health and readiness, over plain HTTP.

``/metrics`` (prometheus-client's text format): dropped packets and bytes per peer, read from
the nft counters at scrape time; set sizes; event-to-kernel latency and reconcile durations;
transactions by kind; the last successful sync; drift repairs; failed transactions; flows
cleared. ``/healthz``: the loop is alive. ``/readyz``: the desired state is known and enforced
(until then the gateway is fail-closed).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from peerwall.agent.desired import DesiredState
from peerwall.agent.enforcer import Counts
from peerwall.compile import names
from peerwall.compile.state import SetKind
from peerwall.dataplane.nft import Nft
from peerwall.errors import NftError

LATENCY_BUCKETS = (
    0.0001,
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.5,
    1.0,
    5.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.event_latency = Histogram(
            "peerwall_event_to_kernel_seconds",
            "From the first change of a batch to its committed transaction.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconcile = Histogram(
            "peerwall_reconcile_seconds",
            "Duration of one transaction (by kind: elements, mode, peers, full).",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.transactions = Counter(
            "peerwall_transactions", "Committed transactions, by kind.", ["kind"], registry=r
        )
        self.last_sync = Gauge(
            "peerwall_last_sync_timestamp_seconds",
            "When the kernel was last known equal to the desired state.",
            registry=r,
        )
        self.repairs = Counter("peerwall_drift_repairs", "Drift found and repaired.", registry=r)
        self.failures = Counter(
            "peerwall_apply_failures", "Transactions the kernel refused.", registry=r
        )
        self.flows = Counter(
            "peerwall_flows_cleared", "Tracked connections deleted after a change.", registry=r
        )
        self.side_file_failures = Counter(
            "peerwall_side_file_failures",
            "Writes of the status file that failed (retried; enforcement goes on).",
            registry=r,
        )

    def committed(self, kind: str, seconds: float) -> None:
        self.transactions.labels(kind).inc()
        self.reconcile.labels(kind).observe(seconds)
        self.last_sync.set(time.time())


class LiveCollector(Collector):
    """Per-peer set sizes and drop counters (read from the kernel at scrape time).

    Scrapes run in the HTTP thread while the loop changes the desired state, so the sizes are
    the ones the loop published after its last step (``publish``), never read mid-change.
    """

    def __init__(self, nft: Nft) -> None:
        self.nft = nft
        self.sizes: dict[tuple[str, str], int] = {}

    def publish(self, desired: DesiredState) -> None:
        self.sizes = {
            (peer, kind.value): desired.size(peer, kind)
            for peer in desired.peers
            for kind in SetKind
        }

    def collect(self) -> Iterator[Any]:
        sizes = GaugeMetricFamily(
            "peerwall_set_elements", "Elements of each per-peer set.", labels=["peer", "set"]
        )
        packets = CounterMetricFamily(
            "peerwall_dropped_packets",
            "Packets from a peer dropped by its chains.",
            labels=["peer", "hook", "reason"],
        )
        octets = CounterMetricFamily(
            "peerwall_dropped_bytes",
            "Bytes from a peer dropped by its chains.",
            labels=["peer", "hook", "reason"],
        )
        published = self.sizes
        for (peer, kind), n in published.items():
            sizes.add_metric([peer, kind], n)
        counters = {p: self._counters(p) for p in {peer for peer, _ in published}}
        for peer, found in counters.items():
            for (hook, reason), (n, b) in found.items():
                packets.add_metric([peer, hook, reason], n)
                octets.add_metric([peer, hook, reason], b)
        yield sizes
        yield packets
        yield octets

    def _counters(self, peer: str) -> dict[tuple[str, str], tuple[int, int]]:
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for hook, chain in (
            ("forward", names.peer_chain(peer)),
            ("input", names.peer_input_chain(peer)),
        ):
            try:
                doc = self.nft.list_json(f"list chain {names.FAMILY} {names.TABLE} {chain}")
            except NftError:
                continue
            for obj in doc.get("nftables", []):
                rule = obj.get("rule")
                if not rule:
                    continue
                for e in rule.get("expr", []):
                    c = e.get("counter") if isinstance(e, dict) else None
                    if isinstance(c, dict):
                        reason = "spoofed" if rule.get("comment") == "spoofed source" else "denied"
                        n, b = out.get((hook, reason), (0, 0))
                        out[(hook, reason)] = (
                            n + int(c.get("packets", 0)),
                            b + int(c.get("bytes", 0)),
                        )
        return out


class CountsCollector(Collector):
    """What the enforcer counts that is not a transaction: read-backs that failed, and whether
    the fail-closed guard is up (``inet peerwall`` cannot be taken back)."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "peerwall_readback_failures",
            "Read-backs of the live table that failed (counted as drift, and repaired).",
            value=self.counts.readback_failures,
        )
        yield GaugeMetricFamily(
            "peerwall_fail_closed_guard",
            "1 while the guard table fails the gateway closed because inet peerwall cannot be "
            "taken back (see the log and /status for why).",
            value=0 if self.counts.guard is None else 1,
        )


class SourceCollector(Collector):
    """How well the source sees the truth, when it can say (the Kubernetes source): how long it
    has been blind, and how many of the API server's answers it did not take."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        blind = getattr(self.source, "blind_seconds", None)
        if blind is not None:
            yield GaugeMetricFamily(
                "peerwall_source_blind_seconds",
                "Seconds since some watched selection was last followed (0: all are); the last "
                "good state is enforced meanwhile.",
                value=blind(),
            )
        malformed = getattr(self.source, "malformed", None)
        if malformed is not None:
            yield CounterMetricFamily(
                "peerwall_kube_malformed_answers",
                "API server answers not taken: malformed list pages and watch events.",
                value=malformed,
            )


def serve(
    address: str,
    metrics: Metrics,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    status: Callable[[], dict[str, Any]],
) -> ThreadingHTTPServer:
    """Start the HTTP endpoints on ``host:port`` in a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                ok = alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"loop stalled\n")
            elif self.path == "/readyz":
                ok = ready()
                self._send(200 if ok else 503, b"ready\n" if ok else b"not synced: fail-closed\n")
            elif self.path == "/status":
                self._send(200, json.dumps(status()).encode(), "application/json")
            else:
                self._send(404, b"not found\n")

        def _send(self, code: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # scrapes every few seconds would drown the log

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def counts_json(counts: Counts) -> dict[str, Any]:
    return {
        "transactions": dict(counts.transactions),
        "elements_added": counts.elements_added,
        "elements_deleted": counts.elements_deleted,
        "checks": counts.checks,
        "repairs": counts.repairs,
        "apply_failures": counts.apply_failures,
        "flows_cleared": counts.flows_cleared,
        "readback_failures": counts.readback_failures,
        "last_sync": counts.last_sync,
    }
