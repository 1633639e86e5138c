"""The path a user runs, end to end with real packets: Liqo objects -> Kubernetes source -> each
peer's gateway table -> packets, in Liqo v1's shape (issue 17, a first step towards the lab's).

The seed (both pod CIDRs 10.244.0.0/16) in network namespaces ``pw-t<hex>-…``: per cluster a node
(router; pods on /32 veths, proxy ARP), one gateway namespace per peer, joined to the peer's by a
veth named ``liqo-tunnel`` with Liqo's tunnel addresses (the provider serves: 169.254.18.1), and
CIDR remapping as Liqo's gateways do it (``remapping/cidr.go``): traffic towards the peer has its
destination rewritten from the peer's remapped CIDR to its own addresses at prerouting, traffic
from the peer its source rewritten into our remapped CIDR at postrouting, so the forward hook in
between sees the peer's own addresses. Each gateway's agent runs the chart's command line against an emulated API
server (TLS, RBAC as Liqo and the chart install it) bound in the gateway's namespace, in the pod's
shape (ServiceAccount volume, KUBERNETES_SERVICE_HOST/PORT). Every cross-cluster pod-to-pod cell
of the seed's table is probed with a TCP connection, under FullPodToPod, then after real
``kubectl`` edits: a PeeringSecurity applied in both clusters (segregation), a service's backends
scaled to none (its EndpointSlice emptied), a shadow pod deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_kube_equivalence import EXAMPLES, lowercase_ids
from test_kube_in_pod import POD_SHELL, SA_MOUNT, agent_args_for

from kubeapi import liqo_objects as L
from kubeapi.chart import chart_objects, liqo_objects, rbac_objects
from kubeapi.fake import FakeApiServer
from kubeapi.harness import TIMEOUT, run
from peerwall.model import Topology, load_topology
from peerwall.model.spec import SecurityMode
from peerwall.nsenter import entered
from peerwall.policy import Verdict, expect

HERE = Path(__file__).parent
PORT = 8080
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        shutil.which("kubectl") is None, reason="no kubectl (Debian: kubernetes-client)"
    ),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Shape:
    """A topology's clusters in Liqo's shape: one gateway namespace per (cluster, peer)."""

    def __init__(self, t: Topology) -> None:
        self.t = t
        self.prefix = f"pw-t{secrets.token_hex(3)}"
        self.made: list[str] = []

    def ns(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    def add(self, what: str) -> str:
        name = self.ns(what)
        ip("netns", "add", name)
        self.made.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def sysctl(self, ns: str, key: str, value: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
            check=True,
            capture_output=True,
        )

    def gateway(self, cluster: str, peer: str | None = None) -> str:
        if peer is None:
            (peer,) = self.t.peers[cluster]
        return self.ns(f"gw-{cluster}-{peer}")

    def build(self) -> None:
        t = self.t
        for c in t.clusters:
            node = self.add(f"node-{c.name}")
            self.sysctl(node, "net.ipv4.ip_forward", "1")
            for k, peer in enumerate(t.peers[c.name]):
                gw = self.add(f"gw-{c.name}-{peer}")
                self.sysctl(gw, "net.ipv4.ip_forward", "1")
                here, there = f"198.51.100.{4 * k + 1}", f"198.51.100.{4 * k + 2}"
                ip("-n", node, "link", "add", f"to-{peer}", "type", "veth", "peer", "eth0",
                   "netns", gw)  # fmt: skip
                ip("-n", node, "addr", "add", f"{here}/30", "dev", f"to-{peer}")
                ip("-n", gw, "addr", "add", f"{there}/30", "dev", "eth0")
                ip("-n", node, "link", "set", f"to-{peer}", "up")
                ip("-n", gw, "link", "set", "eth0", "up")
                # Our remapped of each peer's pods goes to its gateway; our pods are behind the node.
                remapped = t.addresses.remapped(c.name, peer)
                ip("-n", node, "route", "add", str(remapped), "via", there)
                ip("-n", gw, "route", "add", str(c.pod_cidr), "via", here)
        for i, p in enumerate(t.pods):
            node = self.ns(f"node-{p.physical}")
            pod = self.add(f"pod-{p.name.lower()}")
            ip("-n", node, "link", "add", f"p{i}", "type", "veth", "peer", "eth0", "netns", pod)
            ip("-n", pod, "addr", "add", f"{p.ip}/32", "dev", "eth0")
            ip("-n", pod, "link", "set", "eth0", "up")
            ip("-n", pod, "route", "add", "default", "dev", "eth0")
            ip("-n", node, "link", "set", f"p{i}", "up")
            ip("-n", node, "route", "add", f"{p.ip}/32", "dev", f"p{i}")
            self.sysctl(node, f"net.ipv4.conf.p{i}.proxy_arp", "1")
        # One tunnel per connection; the provider's gateway is the server.
        done: set[frozenset[str]] = set()
        for peering in t.peerings:
            pair = frozenset((peering.consumer, peering.provider))
            if pair in done:
                continue
            done.add(pair)
            server = self.gateway(peering.provider, peering.consumer)
            client = self.gateway(peering.consumer, peering.provider)
            ip("-n", server, "link", "add", "liqo-tunnel", "type", "veth", "peer", "liqo-tunnel",
               "netns", client)  # fmt: skip
            for gw, mine, theirs in ((server, "169.254.18.1", "169.254.18.2"),
                                     (client, "169.254.18.2", "169.254.18.1")):  # fmt: skip
                ip("-n", gw, "addr", "add", f"{mine}/30", "dev", "liqo-tunnel")
                ip("-n", gw, "link", "set", "liqo-tunnel", "up")
                # What comes from our side goes to the peer, whatever its original destination.
                ip("-n", gw, "rule", "add", "iif", "eth0", "lookup", "100")
                ip("-n", gw, "route", "add", "default", "via", theirs, "dev", "liqo-tunnel",
                   "table", "100")  # fmt: skip
        for c in t.clusters:
            for peer in t.peers[c.name]:
                remapped, original = (
                    t.addresses.remapped(c.name, peer),
                    t.cluster_by_name[peer].pod_cidr,
                )
                if remapped == original:
                    continue  # no overlap: Liqo remaps nothing
                script = f"""
table ip liqo-remap {{
  chain pre {{ type nat hook prerouting priority dstnat; policy accept;
    iifname "eth0" ip daddr {remapped} dnat ip prefix to {original}
  }}
  chain post {{ type nat hook postrouting priority srcnat; policy accept;
    iifname "liqo-tunnel" ip saddr {original} snat ip prefix to {remapped}
  }}
}}
"""
                subprocess.run(
                    ["ip", "netns", "exec", self.gateway(c.name, peer), "nft", "-f", "-"],
                    input=script, text=True, check=True, capture_output=True,
                )  # fmt: skip

    def remove(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def built(path: Path) -> Iterator[Shape]:
    s = Shape(load_topology(path.read_text()))
    try:
        s.build()
        yield s
    finally:
        s.remove()


@pytest.fixture
def shape() -> Iterator[Shape]:
    with built(HERE / "seed-topology.yaml") as s:
        yield s


@contextlib.contextmanager
def listeners(s: Shape) -> Iterator[None]:
    """Every pod accepts (and closes) TCP connections on PORT."""
    socks = []
    for p in s.t.pods:
        with entered(s.ns(f"pod-{p.name.lower()}")):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(p.ip), PORT))
        sock.listen(64)
        socks.append(sock)

    def serve(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = sock.accept()
                conn.close()

    threads = [threading.Thread(target=serve, args=(x,), daemon=True) for x in socks]
    for th in threads:
        th.start()
    try:
        yield
    finally:
        for x in socks:
            with contextlib.suppress(OSError):
                x.shutdown(socket.SHUT_RDWR)
            x.close()


def connects(s: Shape, src: str, address: str) -> bool:
    with entered(s.ns(f"pod-{src.lower()}")):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(1.0)
        try:
            sock.connect((address, PORT))
            return True
        except OSError:
            return False


def cross_cells(t: Topology) -> list[tuple[str, str, str]]:
    """(source, destination, the address the source uses) for pods in peered clusters (pods of
    clusters that are not peered have no path to each other)."""
    out = []
    for a in t.pods:
        for b in t.pods:
            if a.physical != b.physical and t.peered(a.physical, b.physical):
                seen = t.addresses.pod_seen_from(b, a.physical)
                assert seen is not None
                out.append((a.name, b.name, str(seen)))
    return out


def observed(s: Shape) -> dict[tuple[str, str], Verdict]:
    """Every cross cell tried at once, a thread each: a denied cell waits out its connection
    timeout beside the others instead of after them (one after another, the three clusters'
    denied cells made each look at the table last tens of seconds)."""
    cells = cross_cells(s.t)
    with ThreadPoolExecutor(max_workers=len(cells)) as pool:
        reached = list(pool.map(lambda cell: connects(s, cell[0], cell[2]), cells))
    return {
        (a, b): Verdict.YES if ok else Verdict.NO
        for (a, b, _), ok in zip(cells, reached, strict=True)
    }


def expected(t: Topology, mode: SecurityMode) -> dict[tuple[str, str], Verdict]:
    table = expect(t, mode).table
    return {(a, b): table[a, b] for a, b, _ in cross_cells(t)}


def gateway_binding(peer: str) -> dict[str, object]:
    tenant = L.tenant(peer)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"peerwall-gateway-{tenant}-gw-{peer}"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "peerwall-gateway",
        },
        "subjects": [{"kind": "ServiceAccount", "name": f"gw-{peer}", "namespace": tenant}],
    }


@contextlib.asynccontextmanager
async def gateway_pod(
    s: Shape, cluster: str, peer: str, tmp_path: Path, mode: SecurityMode | None = None
) -> AsyncIterator[tuple[FakeApiServer, asyncio.subprocess.Process]]:
    """The gateway of ``cluster`` for ``peer``: its agent, and an API server holding the
    cluster's objects in the gateway's namespace (one per gateway: the fake's certificate names
    127.0.0.1 only, so each gateway reaches its own copy of the cluster's API)."""
    netns = s.gateway(cluster, peer)
    folder = tmp_path / f"{cluster}-{peer}"
    folder.mkdir()
    async with FakeApiServer(tls=True, netns=netns) as fake:
        for obj in rbac_objects(liqo_objects("master", "rbac")) + rbac_objects(chart_objects()):
            fake.create(obj)
        fake.create(gateway_binding(peer))
        for obj in L.cluster_objects(s.t, cluster, L.api_cluster_ip(s.t, cluster)):
            fake.create(obj)
        volume = fake.service_account_volume(folder / "sa", L.tenant(peer), f"gw-{peer}")
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(fake.port),
            "HOME": str(folder),
        }
        cmd = [
            "ip", "netns", "exec", netns,
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", POD_SHELL, SA_MOUNT, str(volume),
            str(Path(__import__("sys").executable).parent / "peerwall"), *installed(agent_args_for(peer), mode),
            "--status-file", str(folder / "status.json"),
        ]  # fmt: skip
        log = (folder / "agent.log").open("wb")
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=log, stderr=log)
        try:
            yield fake, proc
        finally:
            if proc.returncode is None:
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), TIMEOUT)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            log.close()


def installed(args: list[str], mode: SecurityMode | None) -> list[str]:
    """The chart's arguments with ``--set networking.securityMode`` as the cluster installed it."""
    if mode is None:
        return args
    flag = "--set=networking.securityMode="
    assert any(a.startswith(flag) for a in args), args
    return [f"{flag}{mode.value}" if a.startswith(flag) else a for a in args]


async def kubectl(
    s: Shape, fake: FakeApiServer, cluster: str, tmp_path: Path, *args: str, stdin: str = ""
) -> str:
    """``/usr/bin/kubectl`` as an admin of ``cluster``, from its gateway's namespace."""
    (peer,) = s.t.peers[cluster]
    config = fake.kubeconfig(tmp_path / f"{cluster}-{peer}" / "kubeconfig")
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", s.gateway(cluster), KUBECTL, "--kubeconfig", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    return out.decode()


SELECTION = "peeringsecurities"
"""How the agent's status names its selection of PeeringSecurities (``WatchSpec``)."""


@dataclass(frozen=True)
class Enforced:
    """What one gateway's agent must report before its table is looked at: ready (its API
    listed and its table written), from a state in which ``selection`` (as the status names it)
    has seen ``version``, a resourceVersion of the agent's API server (none: ready is enough)."""

    folder: Path
    """The gateway's folder (``gateway_pod``): its agent's ``status.json`` and ``agent.log``."""
    agent: asyncio.subprocess.Process
    selection: str = ""
    version: int = 0


async def until_enforced(gateways: list[Enforced]) -> None:
    """Until every agent reports that it enforces its API server's objects up to the version
    asked (``Agent.status``: ``ready``, ``source_versions``). No deadline of its own: the
    condition is the agent's own word, and an agent that dies fails the wait at once."""
    while True:
        waiting = []
        for g in gateways:
            if g.agent.returncode is not None:
                log = (g.folder / "agent.log").read_text(errors="replace")
                raise AssertionError(f"the agent of {g.folder.name} ended: {log[-2000:]}")
            try:
                status = json.loads((g.folder / "status.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                status = {}
            seen = int(status.get("source_versions", {}).get(g.selection, 0))
            if not status.get("ready") or (g.selection and seen < g.version):
                waiting.append(g)
        if not waiting:
            return
        await asyncio.sleep(0.05)


async def table_is(s: Shape, want: dict[tuple[str, str], Verdict], what: str) -> None:
    """Every cross cell, tried once, is as ``want``: asked only once the agents report the
    state enforced (``until_enforced``), so a wrong cell is a wrong table, not a slow one."""
    seen = await asyncio.to_thread(observed, s)
    assert seen == want, (what, {k: v for k, v in seen.items() if want[k] != v})


def test_the_seeds_cells_across_liqo_shaped_gateways_follow_the_kubernetes_objects(
    shape: Shape, tmp_path: Path
) -> None:
    t = shape.t
    full, seg = expected(t, FULL), expected(t, SEG)
    assert full != seg and set(full.values()) == {Verdict.YES}

    async def main() -> None:
        with listeners(shape):
            async with contextlib.AsyncExitStack() as stack:
                fakes, gateways = {}, {}
                for c in t.clusters:
                    (peer,) = t.peers[c.name]
                    fakes[c.name], agent = await stack.enter_async_context(
                        gateway_pod(shape, c.name, peer, tmp_path)
                    )
                    gateways[c.name] = Enforced(tmp_path / f"{c.name}-{peer}", agent)

                async def enforced(cluster: str, selection: str) -> None:
                    """``cluster``'s last change (its API server's version now) is enforced."""
                    change = Enforced(gateways[cluster].folder, gateways[cluster].agent,
                                      selection, fakes[cluster].rv)  # fmt: skip
                    await until_enforced([change])

                await until_enforced(list(gateways.values()))
                await table_is(shape, full, "FullPodToPod from the chart's default")
                # Real kubectl, from the gateway's namespace where its cluster's API server is.
                for c in t.clusters:
                    (peer,) = t.peers[c.name]
                    ps = yaml.safe_dump(L.peering_security(peer, SEG.value))
                    out = await kubectl(shape, fakes[c.name], c.name, tmp_path, "apply",
                                        "--validate=false", "-f", "-", stdin=ps)  # fmt: skip
                    assert out == f"peeringsecurity.peerwall.io/{peer} created\n"
                    await enforced(c.name, SELECTION)
                await table_is(shape, seg, "segregation from the PeeringSecurities")

                # s2 scaled to no backend (its slice emptied, as the endpoint controller does):
                # c1 no longer admits c2's pods to P2.
                now = dict(seg)
                assert now["P5", "P2"] is Verdict.YES
                await kubectl(shape, fakes["c1"], "c1", tmp_path, "patch", "endpointslice",
                              "s2-abcde", "-n", "offloaded", "--type=merge",
                              "-p", '{"endpoints": []}')  # fmt: skip
                await enforced("c1", "endpointslices")
                now["P5", "P2"] = now["P4", "P2"] = Verdict.NO
                await table_is(shape, now, "s2 without backends")

                # P4's shadow pod deleted in c2: c2 no longer admits c1's pods to it.
                assert now["P1", "P4"] is Verdict.YES
                await kubectl(shape, fakes["c2"], "c2", tmp_path, "delete", "pod", "p4",
                              "-n", "offloaded-c1")  # fmt: skip
                await enforced(
                    "c2", "pods [liqo.io/managed-by=shadowpod,offloading.liqo.io/origin=c1]"
                )
                for src in ("P1", "P2", "P3"):
                    now[src, "P4"] = Verdict.NO
                await table_is(shape, now, "P4's shadow pod deleted")
                for c in t.clusters:
                    assert fakes[c.name].denied == []

    run(main(), timeout=600)


def test_three_clusters_two_way_peering_and_modes_from_the_install_and_the_api(
    tmp_path: Path,
) -> None:
    """The package's three-clusters example: c1 has a gateway for c2 and one for c3, each with
    its own liqo-tunnel and agent; c1 and c2 peer both ways and overlap (remapped), c3 does not;
    c2's agents run with c2's install-time mode (the chart's --set), the c1-c3 peering's mode is
    a PeeringSecurity. Then segregation set on every peering by PeeringSecurities."""
    text = lowercase_ids((EXAMPLES / "three-clusters.yaml").read_text())
    path = tmp_path / "three-clusters.yaml"
    path.write_text(text)
    with built(path) as s:
        t = s.t
        assert sorted(t.peers["c1"]) == ["c2", "c3"]
        as_installed, seg = expected(t, FULL), expected(t, SEG)
        assert as_installed != seg and len(set(as_installed.values())) == 2

        async def main() -> None:
            with listeners(s):
                async with contextlib.AsyncExitStack() as stack:
                    fakes = []
                    for c in t.clusters:
                        for peer in t.peers[c.name]:
                            fake, agent = await stack.enter_async_context(
                                gateway_pod(s, c.name, peer, tmp_path, c.security_mode)
                            )
                            fakes.append(
                                (fake, peer, Enforced(tmp_path / f"{c.name}-{peer}", agent))
                            )
                    await until_enforced([g for _, _, g in fakes])
                    await table_is(s, as_installed, "the modes as installed")
                    changed = []
                    for fake, peer, g in fakes:
                        written = fake.apply(L.peering_security(peer, SEG.value))
                        version = int(written["metadata"]["resourceVersion"])
                        changed.append(dataclasses.replace(g, selection=SELECTION, version=version))
                    await until_enforced(changed)
                    await table_is(s, seg, "segregation from the PeeringSecurities")
                    assert all(fake.denied == [] for fake, _, _ in fakes)

        run(main(), timeout=600)
