"""A Liqo-shaped lab (``peerwall lab up --shape liqo``) driven as a user drives it: the peerwall
command, the real ``kubectl`` against the lab's API servers, and packets.

Each lab gets a random name (``t<hex>``) and a state folder of its own; ``liqo_lab`` always
takes it down.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from peerwall.model import SecurityMode, Topology, load_topology
from peerwall.nsenter import entered
from peerwall.policy import expect

if TYPE_CHECKING:
    from typer.testing import Result

KUBECTL = shutil.which("kubectl")
PROBE_ATTEMPTS = 60
"""How many times ``until_probed`` probes before it gives up (agents converge within a second or
two of an edit; each probe run takes about a second)."""
POD_PORT = 8080


def kubectl_binary() -> str:
    """The real kubectl (the machine image's; ``make test`` installs Debian's
    ``kubernetes-client`` where it is missing): no kubectl is a failure, not a skip."""
    assert KUBECTL is not None, "no kubectl on PATH: run `make test-system` (kubernetes-client)"
    return KUBECTL


@dataclass
class LiqoLab:
    name: str
    state_dir: Path
    text: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PEERWALL_STATE_DIR": str(self.state_dir)}

    @property
    def topology(self) -> Topology:
        return load_topology(self.text)

    def peerwall(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The ``peerwall`` command as a new process, as a user runs it: for what a test checks
        of the command itself (its exit status, its one-line refusals)."""
        done = subprocess.run(
            [sys.executable, "-m", "peerwall.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check:
            assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    def cli(self, *args: str, check: bool = True) -> Result:
        """The ``peerwall`` command through the CLI's own entry in this process (as
        test_prober_exact and the docs tests run it), for the kit's own steps (``lab up``,
        ``lab down``, ``lab kubeconfig``, ``lab probe``, status polls): each as a new interpreter
        cost ~0.5-0.8 s of CPU in start-up and imports. An unexpected exception is raised."""
        from typer.testing import CliRunner

        from peerwall.cli.main import app

        env = {"NO_COLOR": "1", "PEERWALL_STATE_DIR": str(self.state_dir)}
        done = CliRunner().invoke(app, list(args), env=env)
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise done.exception
        if check:
            assert done.exit_code == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    def kubeconfig(self, cluster: str) -> Path:
        """``lab kubeconfig CLUSTER``'s output, in a file; written once per lab (the lab's
        certificates and addresses do not change while it is up), not once per kubectl run."""
        path = self.state_dir / f"{self.name}-{cluster}.kubeconfig"
        if not path.exists():
            path.write_text(self.cli("lab", "kubeconfig", cluster, "--name", self.name).stdout)
        return path

    def kubectl(self, cluster: str, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(self.kubeconfig(cluster)), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    def probe(self) -> tuple[int, dict[str, Any]]:
        """``lab probe -o json`` (in this process: ``until_probed`` polls with it)."""
        done = self.cli("lab", "probe", "--name", self.name, "-o", "json", check=False)
        return done.exit_code, json.loads(done.stdout) if done.stdout.strip() else {}

    def until_probed(self, topology: Topology, mode: SecurityMode, what: str) -> dict[str, Any]:
        """Until ``lab probe`` passes (exit 0) and observes exactly ``topology``'s table."""
        want = expect(topology, mode).table.to_dict()["matrix"]
        code, seen = 1, {}
        for _ in range(PROBE_ATTEMPTS):
            code, seen = self.probe()
            if code == 0 and seen.get("matrix") == want:
                return seen
            time.sleep(0.2)
        got = seen.get("matrix", {})
        diff = {
            (s, d): (v, got.get(s, {}).get(d))
            for s, row in want.items()
            for d, v in row.items()
            if got.get(s, {}).get(d) != v
        }
        raise AssertionError(f"{what}: lab probe exit {code}; cells (want, seen): {diff}")

    def netns(self, what: str) -> str:
        return f"pw-{self.name}-{what}"


@contextlib.contextmanager
def liqo_lab(text: str, state_dir: Path, *extra: str) -> Iterator[LiqoLab]:
    lab = LiqoLab(f"t{secrets.token_hex(3)}", state_dir, text)
    path = state_dir / "topology.yaml"
    path.write_text(text)
    try:
        lab.cli("lab", "up", "-f", str(path), "--shape", "liqo", "--name", lab.name, *extra)
        yield lab
    finally:
        lab.cli("lab", "down", "--name", lab.name, check=False)


def dropped(netns: str, address: str, port: int = POD_PORT) -> bool:
    """A TCP connection from ``netns`` to ``address`` outside a probe run, where nothing listens:
    refused means the SYN got through (True: not dropped), a timeout that it was dropped."""
    with entered(netns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(1.0)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return False
        except TimeoutError:
            return True
        return False


def until_dropped(netns: str, address: str, want: bool, what: str, port: int = POD_PORT) -> None:
    for _ in range(PROBE_ATTEMPTS):
        if dropped(netns, address, port) is want:
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: {address} from {netns} {'not ' if want else ''}dropped")


def edited(text: str, **changes: Any) -> str:
    """The topology text with top-level lists replaced or transformed (``pods=fn``)."""
    data = yaml.safe_load(text)
    for key, change in changes.items():
        data[key] = change(data[key]) if callable(change) else change
    return yaml.safe_dump(data, sort_keys=False)
