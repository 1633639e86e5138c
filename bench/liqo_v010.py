"""The reference: how Liqo v0.10's gateway enforced IntraClusterTrafficSegregation, step by step.

Reproduced from Liqo v0.10.3 (github.com/liqotech/liqo, tag v0.10.3), with Debian's real
``ipset`` and ``iptables`` run as one process per command inside the gateway's network namespace
(Liqo enters the gateway namespace, ``gatewayNetns.Do``, and execs the tools there: the same
``setns`` + fork/exec is done here):

- ``internal/liqonet/tunnel-operator/offloaded_pod_controller.go`` ``Reconcile``: a pod event
  stores (or soft-deletes) the pod's ``PodInfo`` and calls ``EnsureRulesForClustersForwarding``;
  so does ``reflected_endpointslice_controller.go`` for an EndpointSlice event (``pod_event``,
  ``slice_event`` below). Reconciles run one at a time (controller-runtime's default).
- ``pkg/liqonet/iptables/iptables.go`` ``EnsureRulesForClustersForwarding`` (``ensure``):
  1. ``ipsetsGarbageCollector``: ``ipset list -n``, then ``ipset list <set>`` for every set (its
     whole member list, parsed), ``ipset destroy`` of the empty ones;
  2. ``buildRulesPerClusterForOffloadedPods``: recompute every remote cluster's live pod IPs; for
     each cluster ``ipset create SET-CLS-<id> hash:ip family inet hashsize 1024 maxelem 65536
     -exist`` (``setIPSetDefaults`` in ``pkg/liqonet/ipset/kubernetes``), ``ipset flush``, one
     ``ipset add <set> <ip> -exist`` process per live IP, and a ``-m set --match-set <set> dst -j
     ACCEPT`` rule (with its comment) if the set is not empty;
  3. ``buildRulesPerClusterForEndpointslicesReflected``: the same for each EndpointSlice reflected
     to each cluster (set ``<SLICE-NAME>-<id>``, cropped to 31 characters);
  4. for each cluster, ``updateRulesPerChain(LIQO-FRWD-CLS-<id>, [-j DROP, rules...],
     notKeepExistingRules, Prepend)``: ``iptables -t filter -S <chain>`` (go-iptables' ``List``),
     an ``iptables -D`` for every listed rule that is no longer wanted, then for every wanted rule
     ``iptables -C`` and, if missing, ``iptables -I <chain> 1`` (so ``-j DROP`` ends up last).
     go-iptables passes ``--wait``.
- ``getChainRulesPerCluster`` / ``Init`` (``setup``, once per peering, not per event): chain
  ``LIQO-FORWARD`` jumped to from ``FORWARD``, holding ``-m conntrack --ctstate
  ESTABLISHED,RELATED -j ACCEPT`` before each cluster's ``-s <remote pod CIDR> -j
  LIQO-FRWD-CLS-<id>``; ``EnsureClusterForwardRules`` appends the chain's ``-j DROP``.

Not reproduced: the API server reads (served from controller-runtime's cache in v0.10, so they
cost no process), logging, the ``LIQO-FRWD-EXT``/NAT chains of the same file (not on the event
path), and Go's own overhead (a Go fork/exec costs about what Python's does).

``IpsetRestore`` is the best that approach could do: on each event, one ``ipset restore`` process
that fills a fresh, pre-sized copy of each changed set and swaps it in atomically; the chain is
untouched (its rules only name sets).
"""

from __future__ import annotations

import csv
import shlex
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from peerwall import nsenter

IPSET_NAME_MAX = 31  # IPSetNameMaxLength
IPSET_CREATE = ("hash:ip", "family", "inet", "hashsize", "1024", "maxelem", "65536")
"""What v0.10 passes (``setIPSetDefaults``): a hash:ip set holds 65,536 addresses at most."""


@dataclass
class PodInfo:
    ip: str
    cluster: str
    deleting: bool = False


@dataclass
class EndpointInfo:
    address: str
    clusters: tuple[str, ...]
    deleting: bool = False


def short_id(cluster_id: str) -> str:
    """``strings.Split(clusterID, "-")[0]``."""
    return cluster_id.split("-")[0]


def offloaded_set(cluster_id: str) -> str:
    return f"SET-CLS-{short_id(cluster_id)}"


def forward_chain(cluster_id: str) -> str:
    return f"LIQO-FRWD-CLS-{short_id(cluster_id)}"


def slice_set(slice_name: str, cluster_id: str) -> str:
    """``fmt.Sprintf("%s-%s", strings.ToUpper(name), short id)``, then ``ShortenString(.., 31)``."""
    return f"{slice_name.upper()}-{short_id(cluster_id)}"[:IPSET_NAME_MAX]


@dataclass
class Tools:
    """Runs ``ipset``/``iptables`` inside ``netns``, one process per command, and counts them."""

    netns: str
    iptables: str = "iptables"
    spawned: Counter[str] = field(default_factory=Counter)

    def __call__(self, *argv: str, stdin: bytes | None = None, check: bool = True) -> str:
        self.spawned[argv[0]] += 1
        with nsenter.entered(self.netns):
            done = subprocess.run(argv, input=stdin, capture_output=True, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv)}: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def ipt(self, *args: str, check: bool = True) -> str:
        return self(self.iptables, "--wait", "-t", "filter", *args, check=check)

    def exists(self, *args: str) -> bool:
        self.spawned[self.iptables] += 1
        with nsenter.entered(self.netns):
            done = subprocess.run(
                [self.iptables, "--wait", "-t", "filter", *args], capture_output=True, check=False
            )
        return done.returncode == 0


def _comment(cluster_id: str) -> str:
    return f"Allows traffic from '{cluster_id}' only to pods offloaded by that remote cluster"


class LiqoV010:
    """One Liqo v0.10 gateway: its pod and EndpointSlice caches, and the rules it keeps."""

    def __init__(self, tools: Tools, remote_cidrs: Mapping[str, str]) -> None:
        self.tools = tools
        self.remote_cidrs = dict(remote_cidrs)
        """Remote cluster ID -> its pod CIDR (as this cluster sees it)."""
        self.pods: dict[str, PodInfo] = {}
        self.slices: dict[str, dict[str, EndpointInfo]] = {}
        self._filling = True

    # --- once per peering ------------------------------------------------------------------

    def setup(self) -> None:
        t = self.tools
        t.ipt("-N", "LIQO-FORWARD")
        t.ipt("-A", "FORWARD", "-j", "LIQO-FORWARD")
        t.ipt(
            "-A",
            "LIQO-FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        )
        for cid, cidr in self.remote_cidrs.items():
            chain = forward_chain(cid)
            t.ipt("-N", chain)
            t.ipt(
                "-A",
                "LIQO-FORWARD",
                "-s",
                cidr,
                "-m",
                "comment",
                "--comment",
                f"Contains rules allowing traffic segregation with '{cid}' cluster",
                "-j",
                chain,
            )
            t.ipt("-A", chain, "-j", "DROP")  # EnsureClusterForwardRules

    # --- events (the controllers' Reconcile) -----------------------------------------------

    def pod_event(self, key: str, ip: str | None, cluster: str) -> None:
        """A pod offloaded here by ``cluster`` appeared or changed (``ip``) or went (``None``)."""
        if ip is None:
            info = self.pods.get(key)
            if info is None:
                return
            info.deleting = True  # soft delete, ensure, hard delete
            self.ensure()
            del self.pods[key]
            return
        self.pods[key] = PodInfo(ip, cluster)
        self.ensure()

    def slice_event(self, key: str, endpoints: Mapping[str, Sequence[str]] | None) -> None:
        """A reflected EndpointSlice ``ns/name`` changed: address -> remote clusters it is
        reflected to; ``None``: deleted."""
        if endpoints is None:
            infos = self.slices.get(key)
            if infos is None:
                return
            for info in infos.values():
                info.deleting = True
            self.ensure()
            del self.slices[key]
            return
        self.slices[key] = {a: EndpointInfo(a, tuple(c)) for a, c in endpoints.items()}
        self.ensure()

    # --- EnsureRulesForClustersForwarding ---------------------------------------------------

    def ensure(self, fill: bool = True) -> None:
        """``fill=False`` (benchmark setup, after ``preload``): the same, minus refilling sets."""
        self._filling = fill
        self._garbage_collect()
        rules = self._offloaded_pod_rules()
        for cid, more in self._slice_rules().items():
            rules.setdefault(cid, []).extend(more)
        for cid, cluster_rules in rules.items():
            self._update_chain(forward_chain(cid), [["-j", "DROP"], *cluster_rules])

    def _garbage_collect(self) -> None:
        t = self.tools
        for name in t("ipset", "list", "-n").split("\n"):
            if not name:
                continue
            listing = t("ipset", "list", name)
            members = listing.split("Members:\n", 1)[1] if "Members:\n" in listing else ""
            if not [line for line in members.split("\n") if line]:
                t("ipset", "destroy", name)

    def _fill(self, name: str, ips: Iterable[str]) -> bool:
        if not self._filling:
            return bool(list(ips))
        t = self.tools
        t("ipset", "create", name, *IPSET_CREATE, "-exist")
        t("ipset", "flush", name)
        filled = False
        for ip in ips:
            t("ipset", "add", name, ip, "-exist")
            filled = True
        return filled

    def _offloaded_pod_rules(self) -> dict[str, list[list[str]]]:
        per_cluster: dict[str, list[str]] = {}
        for info in self.pods.values():
            ips = per_cluster.setdefault(info.cluster, [])
            if not info.deleting:
                ips.append(info.ip)
        rules: dict[str, list[list[str]]] = {}
        for cid, ips in per_cluster.items():
            rules[cid] = []
            name = offloaded_set(cid)
            if self._fill(name, ips):
                rules[cid].append(
                    [
                        "-m",
                        "comment",
                        "--comment",
                        _comment(cid),
                        "-m",
                        "set",
                        "--match-set",
                        name,
                        "dst",
                        "-j",
                        "ACCEPT",
                    ]
                )
        return rules

    def _slice_rules(self) -> dict[str, list[list[str]]]:
        per_cluster: dict[str, dict[str, list[str]]] = {}
        for key, infos in self.slices.items():
            for info in infos.values():
                for cid in info.clusters:
                    ips = per_cluster.setdefault(cid, {}).setdefault(key, [])
                    if not info.deleting:
                        ips.append(info.address)
        rules: dict[str, list[list[str]]] = {}
        for cid, slices in per_cluster.items():
            rules[cid] = []
            for key, ips in slices.items():
                name = slice_set(key.split("/")[1], cid)
                if self._fill(name, ips):
                    rules[cid].append(["-m", "set", "--match-set", name, "dst", "-j", "ACCEPT"])
        return rules

    def _update_chain(self, chain: str, wanted: list[list[str]]) -> None:
        t = self.tools
        listed = t.ipt("-S", chain).splitlines()
        wanted_text = [" ".join(r) for r in wanted]
        for line in listed:
            if line.startswith("-N "):
                continue
            # ListRulesInChain drops "/32" and "-A <chain>"; ParseRule unescapes \' and splits
            # on spaces outside double quotes (encoding/csv with Comma ' ').
            text = line.replace("/32", "").split(" ", 2)[2].replace("\\'", "'")
            rule = next(csv.reader([text], delimiter=" "))
            if not any(w in " ".join(rule) for w in wanted_text):  # checkRuleIsOutdated
                t.ipt("-D", chain, *rule)
        for rule in wanted:  # insertRulesIfNotPresent(.., Prepend)
            if not t.exists("-C", chain, *rule):
                t.ipt("-I", chain, "1", *rule)

    def preload(self, sets: Mapping[str, Iterable[str]]) -> None:
        """Fill sets as a long run of v0.10 would have left them (created with v0.10's own
        parameters), in one ``ipset restore``: benchmark setup, not an event."""
        lines = []
        for name, members in sets.items():
            lines.append(f"create {name} {' '.join(IPSET_CREATE)} -exist")
            lines.append(f"flush {name}")
            lines += [f"add {name} {ip} -exist" for ip in members]
        self.tools("ipset", "restore", stdin=("\n".join(lines) + "\n").encode())

    # --- reading ------------------------------------------------------------------------------

    def live_sets(self) -> dict[str, set[str]]:
        """The kernel's sets and members (for checks; not part of any timed path)."""
        out: dict[str, set[str]] = {}
        for name in self.tools("ipset", "list", "-n").split():
            listing = self.tools("ipset", "list", name)
            members = listing.split("Members:\n", 1)[1] if "Members:\n" in listing else ""
            out[name] = {line for line in members.split("\n") if line}
        return out


class IpsetRestore:
    """The best the ipset approach could do: one ``ipset restore`` per change, whole sets swapped
    in atomically (``create`` a pre-sized temporary set, ``add`` every member, ``swap``,
    ``destroy``), the iptables chain untouched."""

    def __init__(self, tools: Tools) -> None:
        self.tools = tools
        self.members: dict[str, set[str]] = {}

    def create(self, name: str, members: Iterable[str]) -> None:
        self.members[name] = set(members)
        self.tools("ipset", "create", name, *self._sized(len(self.members[name])), "-exist")
        self.restore([name])

    @staticmethod
    def _sized(n: int) -> tuple[str, ...]:
        hashsize = 1024
        while hashsize < n:
            hashsize *= 2
        return (
            "hash:ip",
            "family",
            "inet",
            "hashsize",
            str(hashsize),
            "maxelem",
            str(max(65536, 2 * n)),
        )

    def event(self, name: str, add: Iterable[str] = (), delete: Iterable[str] = ()) -> None:
        s = self.members[name]
        s.difference_update(delete)
        s.update(add)
        self.restore([name])

    def restore(self, names: Iterable[str]) -> None:
        lines = []
        for name in names:
            tmp = f"{name[:26]}-tmp"
            members = self.members[name]
            lines.append(f"create {tmp} {' '.join(self._sized(len(members)))} -exist")
            lines.append(f"flush {tmp}")
            lines += [f"add {tmp} {ip}" for ip in members]
            lines.append(f"swap {name} {tmp}")
            lines.append(f"destroy {tmp}")
        self.tools("ipset", "restore", stdin=("\n".join(lines) + "\n").encode())
