"""The lab's explained drops: each gateway agent's ``/flows``, read from inside its namespace.

The agents listen on 127.0.0.1:9090 of their gateway namespace; a request's socket is created
inside that namespace (``nsenter.entered``) and stays there. Events are merged by time; a
follower asks each agent again for what came after the last ``seq`` it saw.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from peerwall.errors import LabError
from peerwall.lab.plan import LabPlan
from peerwall.nsenter import entered

AGENT_PORT = 9090
"""Where every lab agent serves its endpoints, inside its gateway namespace."""


def fetch(
    plan: LabPlan, cluster: str, since: int = 0, timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The events the agent of ``cluster`` holds after ``since``, oldest first."""
    with entered(plan.gateway_ns(cluster)):
        conn = http.client.HTTPConnection("127.0.0.1", AGENT_PORT, timeout=timeout)
        try:
            conn.connect()  # the socket is created here, inside the namespace
        except OSError as e:
            conn.close()
            raise LabError(
                f"lab {plan.name}: the agent of {cluster} does not answer ({e})"
            ) from None
    try:
        conn.request("GET", f"/flows?since={since}")
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise LabError(
                f"lab {plan.name}: the agent of {cluster} answered {response.status}: {body.strip()}"
            )
    except OSError as e:
        raise LabError(f"lab {plan.name}: reading the drops of {cluster}: {e}") from None
    finally:
        conn.close()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@dataclass
class Follower:
    """Reads every gateway's new events on each ``poll``, merged by time."""

    plan: LabPlan
    clusters: Iterable[str]
    seen: dict[str, int] = field(default_factory=dict)

    def poll(self) -> list[dict[str, Any]]:
        out = []
        for c in self.clusters:
            events = fetch(self.plan, c, self.seen.get(c, 0))
            if events:
                self.seen[c] = max(e["seq"] for e in events)
            out += events
        return sorted(out, key=lambda e: (e["time"], e["cluster"], e["seq"]))
