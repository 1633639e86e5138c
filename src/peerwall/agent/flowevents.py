"""Explained drops: each packet a drop rule hands over (NFLOG) becomes one event.

The kernel's part is a copy of the packet's headers and the log prefix of the rule that dropped
it (``peerwall:<verdict>:<hook>:<reason>:<peer>``, ``compile.names.flow_prefix``). The agent adds
what it knows: which pods, API server or gateway the two addresses are (from the topology it
enforces), and why the decision procedure says NO (``policy.decide``, put into words by
``policy.explain``: the sentence ``peerwall explain`` prints). Events go to the agent's log as
JSON lines and into a bounded ring that ``/flows`` serves (``agent.flowsapi``).

Verdicts: ``dropped``, or ``would-drop`` for what an audited peering lets through. Reasons (a
small fixed set, fit for a metric label): the deciding rule of ``policy.decide`` for a forward
drop between known endpoints (``segregation-denied``, ``api-segregated``...), ``not-admitted`` when
an end cannot be named, ``spoofed-source``, ``gateway-itself``; and the connection-state drops of
every tunnel chain, ``invalid``, ``other-tunnel`` and ``not-syn`` (hook ``egress`` for packets
leaving by the tunnel: their source is local, their destination the peer's).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, TextIO

from peerwall.compile import names
from peerwall.compile.state import RING_SIZE, GatewayState
from peerwall.dataplane.nflog import LoggedPacket
from peerwall.model.modes import SecurityMode
from peerwall.policy.decide import Decider

if TYPE_CHECKING:
    from peerwall.model.topology import Topology
    from peerwall.policy.explain import Explanation

# The explanations are imported by the first drop that needs one, not at the agent's start (the
# decider is loaded anyway: the gateway's state is computed with it, compile.desired).

__all__ = ["Endpoint", "FlowEvent", "FlowNamer", "FlowRecorder", "FlowRing", "event_of"]

log = logging.getLogger("peerwall.agent.flows")


@dataclass(frozen=True)
class Endpoint:
    address: str
    name: str | None = None
    """The pod, ``api-server``, or ``gateway`` the address is; None if not known."""
    kind: str = "unknown"
    """pod, api-server, gateway, unknown."""
    cluster: str | None = None
    """Where it runs."""


@dataclass(frozen=True)
class FlowEvent:
    time: str
    """ISO 8601, UTC, microseconds."""
    cluster: str
    """The gateway that dropped the packet."""
    peer: str
    """The peer whose tunnel the packet came from."""
    hook: str
    verdict: str
    """dropped or would-drop."""
    reason: str
    src: Endpoint
    dst: Endpoint
    protocol: str
    port: int | None
    """Destination port (TCP, UDP); ICMP type."""
    explanation: str
    mode: str | None = None
    """The mode the receiving gateway applies to the peer, and where it comes from."""
    seq: int = 0
    """Position in the agent's ring (``/flows?since=SEQ``)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowEvent:
        d = dict(data)
        d["src"], d["dst"] = Endpoint(**d["src"]), Endpoint(**d["dst"])
        return cls(**d)


class FlowNamer:
    """Addresses -> names and explanations, for one gateway; caches per topology.

    ``cluster`` and ``state`` read the agent's current cluster and enforced state; ``use`` hands
    it the topology when the source has one (the file source; without it, fewer names)."""

    def __init__(self, cluster: Callable[[], str], state: Callable[[], GatewayState]) -> None:
        self.cluster = cluster
        self.state = state
        self.topology: Topology | None = None
        self.default_mode: SecurityMode = SecurityMode.FULL_POD_TO_POD
        self._key: tuple[int, SecurityMode] | None = None
        self._pods: dict[str, dict[str, tuple[str, str]]] = {}
        self._explained: dict[tuple[str, str], Explanation] = {}
        self._modes: dict[str, str] = {}

    def use(self, topology: Topology | None, default_mode: SecurityMode) -> None:
        self.topology, self.default_mode = topology, default_mode

    def _index(self) -> None:
        """Per viewer cluster: address as seen there -> (pod, its physical cluster)."""
        t = self.topology
        key = (id(t), self.default_mode)
        if key == self._key:
            return
        self._key, self._pods, self._explained, self._modes = key, {}, {}, {}
        if t is None:
            return
        me = self.cluster()
        seen: dict[str, tuple[str, str]] = {}
        for pod in t.pods:
            a = t.addresses.pod_seen_from(pod, me)
            if a is not None:
                seen[str(a)] = (pod.name, pod.physical)
        self._pods[me] = seen

    def endpoint(self, address: IPv4Address | IPv6Address | None, local: bool) -> Endpoint:
        if address is None:
            return Endpoint("?")
        self._index()
        me = self.cluster()
        text = str(address)
        t = self.topology
        if t is not None:
            hit = self._pods.get(me, {}).get(text)
            if hit is not None and (not local or hit[1] == me):
                return Endpoint(text, hit[0], "pod", hit[1])
            cluster = t.cluster_by_name.get(me)
            if (
                local
                and cluster is not None
                and cluster.api_server
                and isinstance(address, IPv4Address)
                and address == t.addresses.api_ip(me)
            ):
                return Endpoint(text, cluster.api_server, "api-server", me)
        return Endpoint(text)

    def mode(self, peer: str) -> str | None:
        """The mode this gateway applies to ``peer`` and where it comes from (the topology's
        words), or just the mode the state says; "audited" when it audits segregation."""
        self._index()
        declared = self.state().peers.get(peer)
        t, me = self.topology, self.cluster()
        if t is not None and peer in t.peers.get(me, ()):
            if peer not in self._modes:
                decider = Decider(t, self.default_mode)
                self._modes[peer] = decider.mode(me, peer).describe(me, peer)
            text: str | None = self._modes[peer]
        else:
            text = declared.mode.value if declared is not None else None
        if text is not None and declared is not None and declared.audit:
            text += "; audited: what segregation would drop is let through and reported"
        return text

    def explain(self, src: str, dst: str) -> Explanation | None:
        t = self.topology
        if t is None:
            return None
        self._index()
        key = (src, dst)
        if key not in self._explained:
            from peerwall.policy.explain import explain_cell

            try:
                self._explained[key] = explain_cell(t, src, dst, self.default_mode)
            except Exception:  # a name the topology no longer has: no explanation, not a crash
                return None
        return self._explained[key]


def parse_prefix(prefix: str) -> tuple[str, str, str, str] | None:
    """(verdict, hook, reason, peer) of a peerwall log prefix; None if it is not one."""
    parts = prefix.split(":", 4)
    if len(parts) != 5 or parts[0] != names.FLOW_PREFIX:
        return None
    _, verdict, hook, reason, peer = parts
    return verdict, hook, reason, peer


def _time(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="microseconds")


STATE_DROPS = {
    "invalid": "conntrack cannot place this packet in any connection (invalid)",
    "other-tunnel": (
        "its connection did not cross {peer}'s tunnel (another peer's, one peerwall never saw, "
        "or one a change cut): only a tunnel's own connections pass on their state"
    ),
    "not-syn": (
        "a new TCP connection must start with a SYN: a mid-stream segment (of a connection a "
        "change cut) never reopens it"
    ),
}
"""The reasons of the state drops every tunnel chain reports, each with its sentence."""


def event_of(packet: LoggedPacket, namer: FlowNamer) -> FlowEvent | None:
    """The event for one logged packet; None if no peerwall rule logged it."""
    parsed = parse_prefix(packet.prefix)
    if parsed is None:
        return None
    verdict, hook, kind, peer = parsed
    me = namer.cluster()
    state = namer.state()
    declared = state.peers.get(peer)
    outgoing = hook == "egress"
    src = namer.endpoint(packet.src, local=outgoing)
    dst = namer.endpoint(packet.dst, local=not outgoing)
    mode = namer.mode(peer)
    if kind in STATE_DROPS:
        reason = kind
        text = STATE_DROPS[kind].format(peer=peer)
    elif kind == "spoofed":
        sources = ", ".join(str(s) for s in declared.sources) if declared else "its pod CIDR"
        what = f" (the address of {src.name} of {src.cluster})" if src.name else ""
        reason = "spoofed-source"
        text = (
            f"source {src.address}{what} is not an address of {peer}'s pods as {me} sees them "
            f"({sources}): a peer cannot send for another, whatever the destination"
        )
        src = Endpoint(src.address)  # never credit a forged source to the pod it names
    elif kind == "gateway":
        dst = Endpoint(dst.address, "gateway", "gateway", me)
        reason = "gateway-itself"
        port = state.conncheck_port
        check = f" and UDP {port} (the connection check)" if port is not None else ""
        text = (
            f"to {me}'s gateway itself, {peer} may send only what the link needs: ping{check} "
            "from its gateway"
        )
    else:
        explained = (
            namer.explain(src.name, dst.name)
            if src.name is not None and dst.name is not None
            else None
        )
        if explained is not None:
            reason, text = explained.rule, explained.reason
        else:
            reason = "not-admitted"
            who = src.name or f"source {src.address}"
            text = (
                f"{dst.name or dst.address} is not among what {me} admits from {peer} "
                f"(sent by {who})"
            )
    return FlowEvent(
        _time(packet.time),
        me,
        peer,
        packet.hook,
        verdict,
        reason,
        src,
        dst,
        packet.protocol,
        packet.port,
        text,
        mode,
    )


class FlowRing:
    """The newest ``size`` events, numbered; thread-safe (the HTTP thread reads it)."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.size = size
        self._events: deque[FlowEvent] = deque(maxlen=size)
        self._lock = threading.Lock()
        self.seq = 0
        self.dropped = 0
        """Events pushed out of the ring by newer ones."""

    def add(self, event: FlowEvent) -> FlowEvent:
        with self._lock:
            self.seq += 1
            numbered = replace(event, seq=self.seq)
            if len(self._events) == self.size:
                self.dropped += 1
            self._events.append(numbered)
            return numbered

    def since(self, seq: int = 0, limit: int | None = None) -> list[FlowEvent]:
        """Events after ``seq``, oldest first (the newest ``limit`` of them if given)."""
        with self._lock:
            out = [e for e in self._events if e.seq > seq]
        return out[-limit:] if limit else out


def write_line(stream: TextIO, event: FlowEvent) -> None:
    """One JSON line per event, ``{"flow": {...}}``, so a log reader can tell events from
    the agent's other lines."""
    stream.write(json.dumps({"flow": event.to_json()}, separators=(",", ":")) + "\n")
    stream.flush()


class FlowRecorder:
    """Reads the NFLOG socket in the agent's event loop and records each event: the ring, the
    log (JSON lines), the metrics. Reading costs the loop what the kernel's rate limit lets
    through; enforcement runs in worker threads and never waits on it."""

    def __init__(
        self,
        reader: Any,
        namer: FlowNamer,
        ring: FlowRing,
        stream: TextIO | None,
        counted: Callable[[FlowEvent], None] | None = None,
    ) -> None:
        self.reader = reader
        self.namer = namer
        self.ring = ring
        self.stream = stream
        self.counted = counted
        self.events = 0

    def readable(self) -> None:
        """Everything waiting on the socket, now (``loop.add_reader``'s callback)."""
        try:
            packets = self.reader.read()
        except OSError as e:
            log.error("reading NFLOG: %s", e)
            return
        for packet in packets:
            self.record(packet)

    def record(self, packet: LoggedPacket) -> FlowEvent | None:
        event = event_of(packet, self.namer)
        if event is None:
            return None
        event = self.ring.add(event)
        self.events += 1
        if self.stream is not None:
            write_line(self.stream, event)
        if self.counted is not None:
            self.counted(event)
        return event
