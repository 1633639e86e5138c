"""A new gateway never forwards before its table (issue 14.6).

``lab apply`` adding a cluster creates its gateway, then its tunnels, then starts its agent; the
agent's first table came 1.31 s after the tunnel was up, and meanwhile anything reached the new
cluster's pods. Now the lab loads a fail-closed table into a new gateway right after creating its
namespace, before any of its links exists. A watcher sees the new tunnel the moment it appears in
the new gateway and checks the table is there; from then until the agents converge, a pod of the
existing cluster sends datagrams that segregation forbids to a pod of the new one: none arrives.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from labkit import LabUp, topology_of
from peerwall.compile import names
from peerwall.compile.build import fail_closed
from peerwall.dataplane.drift import drift
from peerwall.dataplane.nft import LibNft
from peerwall.dataplane.readback import read_table
from peerwall.errors import LabError
from peerwall.lab import build as labs
from peerwall.model import SecurityMode
from peerwall.nsenter import entered, exists

pytestmark = pytest.mark.lab
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION
PORT = 9500
PEERWALL = str(Path(sys.executable).with_name("peerwall"))
"""The console script beside the test's Python (the venv's)."""

TWO: dict[str, Any] = {
    "clusters": [
        {"name": "C1", "podCIDR": "10.244.0.0/16"},
        {"name": "C2", "podCIDR": "10.245.0.0/16"},
    ],
    "peerings": [{"consumer": "C1", "provider": "C2"}],
    "pods": [{"name": "a1", "cluster": "C1"}, {"name": "b2", "cluster": "C2"}],
}


def with_c3(data: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    out["clusters"].append({"name": "C3", "podCIDR": "10.246.0.0/16"})
    out["peerings"].append({"consumer": "C1", "provider": "C3"})
    out["pods"].append({"name": "n3", "cluster": "C3"})
    return out


def test_a_new_gateway_has_a_fail_closed_table_before_its_tunnel_exists(lab_up: LabUp) -> None:
    topology, text = topology_of(TWO)
    plan = lab_up(topology, text, SEG)
    bigger, bigger_text = topology_of(with_c3(TWO))
    gw3, n3_ns, a1_ns = plan.gateway_ns("C3"), plan.pod_ns("n3"), plan.pod_ns("a1")
    tunnel = names.tunnel_ifname("C1")  # C3's end of its tunnel to C1
    n3 = bigger.pod_by_name["n3"]
    n3_at_c1 = str(bigger.addresses.pod_seen_from(n3, "C1"))
    done = threading.Event()
    seen: dict[str, object] = {}
    arrived: list[bytes] = []

    def tunnel_exists() -> bool:
        if not exists(gw3):
            return False
        try:
            with entered(gw3):
                socket.if_nametoindex(tunnel)
        except (OSError, LabError):  # no such link yet, or the namespace not yet mounted
            return False
        return True

    def watch() -> None:
        while not tunnel_exists():
            if done.is_set():
                return
            time.sleep(0.0005)
        listed = subprocess.run(
            ["ip", "netns", "exec", gw3, "nft", "list", "table", "inet", "peerwall"],
            capture_output=True,
            text=True,
            check=False,
        )
        seen["table"] = listed.returncode == 0 and "fail closed" in listed.stdout
        rx = None
        while rx is None:
            try:
                with entered(n3_ns):
                    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            except LabError:
                time.sleep(0.0005)
        with entered(a1_ns):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind(("0.0.0.0", PORT))
            rx.setblocking(False)
            sent = 0
            while not done.is_set() or sent < 20:
                try:
                    tx.sendto(b"early", (n3_at_c1, PORT))
                    sent += 1
                except OSError:
                    pass
                with contextlib.suppress(OSError):
                    arrived.append(rx.recv(100))
                time.sleep(0.002)
            seen["sent"] = sent

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        labs.apply(plan.name, bigger, bigger_text, "test")
    finally:
        done.set()
        watcher.join()
    assert seen.get("table") is True, "the new tunnel existed before a fail-closed table"
    assert isinstance(seen.get("sent"), int) and seen["sent"] >= 20  # type: ignore[operator]
    assert arrived == []


def test_the_init_containers_command_installs_the_fail_closed_table() -> None:
    """What the chart's init container runs (``peerwall agent --fail-closed-only``), in a fresh
    network namespace as a new gateway pod's: the fail-closed table, read back from the kernel."""
    ns = f"pw-f{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        command = [PEERWALL, "agent", "--source=kubernetes"]
        for _ in range(2):  # a second run (the pod's init container restarted) keeps the table
            subprocess.run(
                ["ip", "netns", "exec", ns, *command, "--fail-closed-only"],
                check=True,
                capture_output=True,
            )
            with LibNft(ns) as nft:
                live = read_table(nft, names.FAMILY, names.TABLE)
            assert drift(live, fail_closed("gateway", "liqo-tunnel*")) == []
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
