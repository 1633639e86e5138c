"""The lab as the prober sees it (``probe.runner.Site``): namespaces, listeners, addresses."""

from __future__ import annotations

import fcntl
import os
from ipaddress import IPv4Address

from peerwall.lab.kube import next_power_of_two
from peerwall.lab.plan import LabPlan
from peerwall.probe.netns_prober import Listener
from peerwall.probe.runner import PORT_HIGH, PORT_LOW
from peerwall.settings import LabSettings


class LabSite:
    """``plan``'s namespaces; the source-port window rotates through a file in ``window_file``
    (so consecutive runs, even from different processes, never start on the same ports)."""

    def __init__(self, plan: LabPlan, settings: LabSettings, window_file: str | None) -> None:
        self.plan = plan
        self.settings = settings
        self.window_file = window_file
        self._next = PORT_LOW

    def netns(self, pod: str) -> str:
        return self.plan.pod_ns(pod)

    def listeners(self) -> list[Listener]:
        plan, t = self.plan, self.plan.topology
        port = self.settings.pod_port
        out = [Listener(plan.pod_ns(p.name), port, p.name) for p in t.pods]
        out += [Listener(plan.internet_ns(c.name), port, c.internet) for c in t.clusters]
        out += [
            Listener(plan.api_ns(c.name), self.settings.api_port, c.api_server)
            for c in t.clusters
            if c.api_server
        ]
        return out

    def service_address(self, service: str, cluster: str) -> tuple[IPv4Address, int]:
        return self.plan.topology.addresses.service_ips[
            (service, cluster)
        ], self.settings.service_port

    def internet_address(self, cluster: str) -> IPv4Address | None:
        return self.plan.internet_ip(cluster)

    def backend_span(self, backends: int) -> int:
        return next_power_of_two(backends)

    def port_window(self, size: int) -> int:
        if self.window_file is None:
            if self._next + size > PORT_HIGH:
                self._next = PORT_LOW  # wrap once, then rotate again from the bottom
            base, self._next = self._next, self._next + size
            return base
        fd = os.open(self.window_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            text = os.read(fd, 32).decode().strip()
            base = int(text) if text.isdigit() else PORT_LOW
            if not base >= PORT_LOW or base + size > PORT_HIGH:
                base = PORT_LOW
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(base + size).encode())
            return base
        finally:
            os.close(fd)
