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
from collections.abc import Callable, Iterator, Mapping
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
        self.flow_events = Counter(
            "peerwall_flow_events",
            "Explained drops reported by the kernel (NFLOG), by peer, verdict (dropped, "
            "would-drop) and reason (the deciding rule).",
            ["peer", "verdict", "reason"],
            registry=r,
        )
        self.flows_ring: Any = None
        """The ring of explained drops (``FlowRing``), whose losses are exported at scrape."""
        self.flow_lost: Callable[[], int] = lambda: 0
        """Reports the kernel could not deliver (``NflogReader.lost``)."""
        r.register(_RingCollector(self))

    def committed(self, kind: str, seconds: float) -> None:
        self.transactions.labels(kind).inc()
        self.reconcile.labels(kind).observe(seconds)
        self.last_sync.set(time.time())


AUDITED = "audited"


class _RingCollector(Collector):
    """Events the ring of explained drops pushed out before ``/flows`` was read, and reports the
    kernel could not deliver to the agent (its socket buffer full)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        ring = self.metrics.flows_ring
        dropped = CounterMetricFamily(
            "peerwall_flow_ring_dropped",
            "Explained drops pushed out of the /flows ring by newer ones.",
        )
        dropped.add_metric([], ring.dropped if ring is not None else 0)
        yield dropped
        lost = CounterMetricFamily(
            "peerwall_flow_lost",
            "Times the kernel found the agent's NFLOG socket full and dropped reports.",
        )
        lost.add_metric([], self.metrics.flow_lost())
        yield lost


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
        audited = CounterMetricFamily(
            "peerwall_audited_packets",
            "Packets from a peer that segregation would drop, let through by audit.",
            labels=["peer"],
        )
        published = self.sizes
        for (peer, kind), n in published.items():
            sizes.add_metric([peer, kind], n)
        counters = {p: self._counters(p) for p in {peer for peer, _ in published}}
        for peer, found in counters.items():
            for (hook, reason), (n, b) in found.items():
                if reason == AUDITED:
                    audited.add_metric([peer], n)
                    continue
                packets.add_metric([peer, hook, reason], n)
                octets.add_metric([peer, hook, reason], b)
        yield sizes
        yield packets
        yield octets
        yield audited

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
                        comment = str(rule.get("comment") or "")
                        reason = (
                            "spoofed"
                            if comment == "spoofed source"
                            else AUDITED
                            if comment.startswith("audit:")
                            else "denied"
                        )
                        n, b = out.get((hook, reason), (0, 0))
                        out[(hook, reason)] = (
                            n + int(c.get("packets", 0)),
                            b + int(c.get("bytes", 0)),
                        )
        return out


Route = Callable[[str], tuple[int, bytes, str]]
"""Another endpoint: the query string -> (status, body, content type)."""


def serve(
    address: str,
    metrics: Metrics,
    ready: Callable[[], bool],
    alive: Callable[[], bool],
    status: Callable[[], dict[str, Any]],
    routes: Mapping[str, Route] | None = None,
) -> ThreadingHTTPServer:
    """Start the HTTP endpoints on ``host:port`` in a daemon thread (and ``routes``, by path)."""
    host, _, port = address.rpartition(":")
    more = dict(routes or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path in more:
                self._send(*more[path](query))
            elif self.path == "/metrics":
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
        "last_sync": counts.last_sync,
    }
