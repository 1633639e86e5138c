"""The open window of a deleted table: from `nft delete table` to the agent's repaired table.

Usage: python bench/repair_bench.py [--deletions 50]

Needs root. The seed topology comes up in the lab with an agent per gateway that reads its table
back only once an hour (``agent_resync_interval=3600``), so the only thing that can repair a
deletion is nftables' notification (``peerwall.dataplane.nftevents``). This process listens to
the same notifications in C1's gateway and times, for each of ``--deletions`` deletions of
``inet peerwall`` (by this process, through libnftables: a transaction the agent did not make),
the window from the deletion's notification to the notification of the agent's transaction
that brings the table back: both are stamped on arrival by one thread that only waits on that
socket, so the figure is the kernel-to-kernel window, what a peer could use. Before notifications the window was up to the
resync interval (issue 14: 8.9 s and 10.0 s measured at the default 10 s).

The same repair is also timed from just before the delete call (an upper bound: a listener
thread woken late stamps both notifications at once); the target holds on that one.

Writes bench/results/repair.json; target: p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
import tempfile
import threading
import time
from typing import Any

from common import finish, latency_summary, machine, need_root, quantile
from peerwall.dataplane.nft import LibNft
from peerwall.lab import build as labs
from peerwall.model import SecurityMode, load_topology
from peerwall.nsenter import entered
from peerwall.settings import LabSettings

NETLINK_NETFILTER, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES = 12, 270, 1, 7
NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE = 0, 2
NFNL_SUBSYS_NFTABLES = 10
TARGET_P99 = 0.100

SEED = """\
clusters:
  - {name: C1, podCIDR: 10.244.0.0/16}
  - {name: C2, podCIDR: 10.244.0.0/16}
peerings:
  - {consumer: C1, provider: C2}
namespaces:
  - {name: offloaded, cluster: C1, offloadedTo: [C2]}
pods:
  - {name: P1, cluster: C1}
  - {name: P2, cluster: C1, namespace: offloaded}
  - {name: P4, cluster: C1, namespace: offloaded, runsOn: C2}
  - {name: P5, cluster: C2}
"""


class Listener(threading.Thread):
    """Stamps every table notification on arrival, in a thread of its own that does nothing but
    wait in ``recv`` (a late reader would stamp a whole queue at once)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.seen: list[tuple[float, int, bytes]] = []
        self.changed = threading.Condition()

    def run(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            now = time.perf_counter()
            pos = 0
            while pos + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, pos)
                body = data[pos + 16 : pos + length]
                pos += (length + 3) & ~3
                msg = kind & 0xFF
                if kind >> 8 != NFNL_SUBSYS_NFTABLES or msg not in (
                    NFT_MSG_NEWTABLE,
                    NFT_MSG_DELTABLE,
                ):
                    continue
                alen = struct.unpack_from("=H", body, 4)[0] if len(body) > 8 else 4
                with self.changed:
                    self.seen.append((now, msg, body[8 : 4 + alen].rstrip(b"\0")))
                    self.changed.notify_all()

    def window(self, since: int, patience: float) -> tuple[float, float] | None:
        """(deletion stamp, return stamp) of the table after index ``since``."""

        def both() -> tuple[float, float] | None:
            gone = next(
                (t for t, m, n in self.seen[since:] if m == NFT_MSG_DELTABLE and n == b"peerwall"),
                None,
            )
            back = next(
                (t for t, m, n in self.seen[since:] if m == NFT_MSG_NEWTABLE and n == b"peerwall"),
                None,
            )
            return (gone, back) if gone is not None and back is not None else None

        with self.changed:
            found = self.changed.wait_for(both, patience)
        return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--deletions", type=int, default=50)
    args = ap.parse_args()
    if not need_root("repair"):
        return 0
    started = time.perf_counter()
    name = f"br{random.randrange(10**5)}"
    windows: list[float] = []
    from_call: list[float] = []
    """From just before this process's delete call to the repair's notification: an upper bound
    (a listener woken late stamps both notifications at once, shrinking ``windows``)."""
    missed = 0
    with tempfile.TemporaryDirectory(prefix="pw-bench-repair-") as state:
        settings = LabSettings(state_dir=state, agent_resync_interval=3600)
        topology = load_topology(SEED, "seed")
        plan = labs.up(name, topology, SEED, "seed", SecurityMode.FULL_POD_TO_POD, settings)
        gw = plan.gateway_ns("C1")
        try:
            with entered(gw):
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
            listener = Listener(sock)
            listener.start()
            with LibNft(gw) as nft:
                for i in range(args.deletions):
                    since = len(listener.seen)
                    called = time.perf_counter()
                    nft.run("delete table inet peerwall\n")
                    stamps = listener.window(since, 30)
                    if stamps is None:
                        missed += 1
                        print(f"deletion {i}: not repaired within 30 s", file=sys.stderr)
                        continue
                    windows.append(stamps[1] - stamps[0])
                    from_call.append(stamps[1] - called)
                    print(
                        f"deletion {i}: open {1000 * windows[-1]:.2f} ms "
                        f"({1000 * from_call[-1]:.2f} ms from the delete call)",
                        file=sys.stderr,
                    )
                    time.sleep(0.05)  # let the agent finish clearing flows before the next one
            sock.close()
        finally:
            labs.down(name, settings)
    lat = latency_summary(windows) if windows else {"p50": None, "p99": None, "n": 0}
    p99 = lat["p99"]
    up99 = quantile(from_call, 0.99) if from_call else None
    result: dict[str, Any] = {
        "machine": machine(),
        "settings": vars(args),
        "windows": windows,
        "window": lat,
        "from_call": latency_summary(from_call) if from_call else None,
        "missed": missed,
        "targets": {
            "window_p99": {
                "what": f"a deleted table is back within {TARGET_P99 * 1000:.0f} ms (p99 over {args.deletions} deletions)",
                "value": up99,
                "met": up99 is not None and up99 < TARGET_P99 and missed == 0,
            }
        },
    }
    print(
        f"window p50 {1000 * (lat['p50'] or 0):.2f} ms, p99 {1000 * (p99 or 0):.2f} ms over "
        f"{len(windows)} deletions ({missed} not repaired); from the delete call p99 "
        f"{1000 * (up99 or 0):.2f} ms",
        file=sys.stderr,
    )
    return finish("repair", result, started)


if __name__ == "__main__":
    sys.exit(main())
