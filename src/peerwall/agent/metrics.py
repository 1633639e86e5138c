"""What the agent exposes: Prometheus metrics, health and readiness, over plain HTTP.

``/metrics`` (prometheus-client's text format): dropped packets and bytes per peer, read from
the nft counters (at most once a second, on an nft handle of the scrapes' own); set sizes; event-to-kernel latency and reconcile durations;
transactions by kind; the last successful sync; drift repairs; failed transactions; flows
cleared. ``/healthz``: the loop is alive. ``/readyz``: the desired state is known and enforced
(until then the gateway is fail-closed). ``/status``: what the agent did, in counts only
(``public_status``): no peer, address, name or process a peer could use. How the endpoint keeps
clients from stalling enforcement: ``endpoint``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from peerwall.agent.desired import DesiredState
from peerwall.agent.endpoint import Answer, Endpoint
from peerwall.compile import names
from peerwall.compile.build import INVALID, NOT_SYN, OTHER_TUNNEL, SPOOFED
from peerwall.compile.state import SetKind
from peerwall.dataplane.nft import LibNft, Nft
from peerwall.dataplane.table import Counts
from peerwall.errors import NftError
from peerwall.settings import EndpointSettings

TEXT = "text/plain"
PROMETHEUS = "text/plain; version=0.0.4"

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
        self.side_file_failures = Counter(
            "peerwall_side_file_failures",
            "Writes of the status file that failed (retried; enforcement goes on).",
            registry=r,
        )

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


DROP_REASON_LABELS = {
    SPOOFED: "spoofed",
    INVALID: "invalid",
    OTHER_TUNNEL: "other-tunnel",
    NOT_SYN: "not-syn",
}
"""The ``reason`` label of each named drop rule (by its comment); the chains' last rule, which
drops what the state does not admit, is ``denied``."""


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
        rules = self._rules()
        counters = {p: self._counters(p, rules) for p in {peer for peer, _ in published}}
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

    def _rules(self) -> dict[str, list[dict[str, Any]]] | None:
        """The table's rules by chain, from one listing without elements (libnftables' terse
        ``list ruleset``: ``list chain`` fetches every element of the table, ~140 MiB held at
        220,000, on every scrape); None if it failed: then each chain is listed."""
        try:
            doc = self.nft.list_json_terse(f"list ruleset {names.FAMILY}")
        except NftError:  # say, a table of the family with flags (``errors.FlaggedTable``)
            return None
        out: dict[str, list[dict[str, Any]]] = {}
        for obj in doc.get("nftables", []):
            rule = obj.get("rule")
            if rule and rule.get("family") == names.FAMILY and rule.get("table") == names.TABLE:
                out.setdefault(str(rule.get("chain")), []).append(rule)
        return out

    def _counters(
        self, peer: str, rules: dict[str, list[dict[str, Any]]] | None
    ) -> dict[tuple[str, str], tuple[int, int]]:
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for hook, chain in (
            ("forward", names.peer_chain(peer)),
            ("input", names.peer_input_chain(peer)),
        ):
            if rules is not None:
                found = rules.get(chain, [])
            else:
                try:
                    doc = self.nft.list_json(f"list chain {names.FAMILY} {names.TABLE} {chain}")
                except NftError:
                    continue
                found = [o["rule"] for o in doc.get("nftables", []) if o.get("rule")]
            for rule in found:
                for e in rule.get("expr", []):
                    c = e.get("counter") if isinstance(e, dict) else None
                    if isinstance(c, dict):
                        comment = str(rule.get("comment") or "")
                        reason = (
                            AUDITED
                            if comment.startswith("audit:")
                            else DROP_REASON_LABELS.get(comment, "denied")
                        )
                        n, b = out.get((hook, reason), (0, 0))
                        out[(hook, reason)] = (
                            n + int(c.get("packets", 0)),
                            b + int(c.get("bytes", 0)),
                        )
        return out


Route = Callable[[str], tuple[int, bytes, str]]
"""Another endpoint: the query string -> (status, body, content type)."""


class CountsCollector(Collector):
    """What the enforcer counts that is not a committed transaction: transactions the kernel
    refused, read-backs that failed, and whether the fail-closed guard is up (``inet peerwall``
    cannot be taken back). Read from the counts at scrape: the table's owner counts them where
    they happen, in whichever thread."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "peerwall_apply_failures",
            "Transactions the kernel refused (each followed by a whole-table replace).",
            value=self.counts.apply_failures,
        )
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
    settings: EndpointSettings = EndpointSettings(),
    routes: Mapping[str, Route] | None = None,
) -> Endpoint:
    """Start the HTTP endpoints on ``host:port`` (``endpoint.Endpoint``: a thread of its own,
    bounded connections, ``/metrics`` computed off the request path); ``routes``: more paths,
    answered on the endpoint's loop from the query string (they must only read)."""

    def healthz() -> Answer:
        ok = alive()
        return (200, b"ok\n", TEXT) if ok else (503, b"loop stalled\n", TEXT)

    def readyz() -> Answer:
        ok = ready()
        return (200, b"ready\n", TEXT) if ok else (503, b"not synced: fail-closed\n", TEXT)

    return Endpoint(
        address,
        fast={
            "/healthz": healthz,
            "/readyz": readyz,
            "/status": lambda: (200, json.dumps(status()).encode(), "application/json"),
        },
        slow={"/metrics": lambda: (200, generate_latest(metrics.registry), PROMETHEUS)},
        settings=settings,
        queried=routes or {},
    ).start()


def scrape_handle(nft: Nft) -> Nft:
    """The handle scrapes read counters on: a libnftables context of their own in the same
    namespace, so that a scrape never waits on the enforcer's context lock, nor the enforcer on
    a scrape (the kernel serves listings without the commit mutex). Other ``Nft``s (the
    in-memory fake) are shared."""
    if isinstance(nft, LibNft):
        return LibNft(nft.netns)
    return nft


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    """The part of the agent's status ``/status`` serves: readiness and counts. The cluster,
    the peers' names, the digest of the inputs and the PID stay in the lab's status file (root's
    only): the endpoint may be reached by more than the scraper if a NetworkPolicy is missing."""
    keep = (
        "ready",
        "last_sync",
        "transactions",
        "checks",
        "repairs",
        "apply_failures",
        "readback_failures",
        "source_blind_seconds",
    )
    return {k: status[k] for k in keep if k in status} | {
        "peers": len(status.get("peers", ())),
        # Whether the fail-closed guard is up; why (an nft error's text) stays in the log.
        "guard": status.get("guard") is not None,
    }


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
