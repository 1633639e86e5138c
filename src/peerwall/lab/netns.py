"""Network namespaces and links through ``ip -batch``: one process per namespace, not per step.

Measured on the project's machines: 50 pods and a router in 0.10 s with ``ip -batch``, 0.55 s
with one ``ip`` process per step.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable

from peerwall.errors import LabError
from peerwall.nsenter import NETNS_DIR


def ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    """Run ``ip`` commands as one batch, inside ``netns`` when given; fail on the first error."""
    script = "\n".join(lines) + "\n"
    if not script.strip():
        return
    cmd = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    try:
        done = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LabError("the 'ip' command is missing: apt-get install iproute2") from None
    if done.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise LabError(f"ip -batch failed{where}: {done.stderr.strip()}")


def list_namespaces(prefix: str) -> list[str]:
    try:
        entries = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e.startswith(prefix))


def delete_namespaces(names: Iterable[str]) -> None:
    """Delete namespaces; their veths go with them, and the peer ends in other namespaces too."""
    names = list(names)
    if not names:
        return
    script = "".join(f"netns del {n}\n" for n in names)
    # -force: keep deleting after a namespace that vanished meanwhile.
    subprocess.run(
        ["ip", "-force", "-batch", "-"], input=script, capture_output=True, text=True, check=False
    )
    left = [n for n in names if os.path.exists(os.path.join(NETNS_DIR, n))]
    if left:
        raise LabError(f"could not delete namespaces: {', '.join(left)}")


def write_sysctl(netns_sysctls: dict[str, str]) -> None:
    """Write ``/proc/sys/net/...`` values; call inside the target namespace (nsenter.entered)."""
    for key, value in netns_sysctls.items():
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)
