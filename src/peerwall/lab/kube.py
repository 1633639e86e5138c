"""kube-proxy's part in an emulated gateway: service DNAT, hairpin masquerade, Internet egress.

Each service present in a cluster (at home or reflected) gets a ClusterIP there and a chain that
DNATs to its backends as that cluster sees them. The backend is picked by the low bits of the
client's source port rather than at random, so a prober can aim at every backend in turn and
observe PARTIAL as such; ordinary clients with random ports still spread over all backends.
"""

from __future__ import annotations

from peerwall.compile.names import hash8
from peerwall.compile.ruleset import Chain, Hook, Ruleset
from peerwall.lab.plan import LabPlan
from peerwall.settings import LabSettings

TABLE = "pw-kube"
HAIRPIN_MARK = "0x00004000"


def spread(n: int) -> int:
    """Smallest power of two >= n: how many source-port values the backend choice uses."""
    k = 1
    while k < n:
        k *= 2
    return k


def build_kube(plan: LabPlan, cluster: str, settings: LabSettings) -> Ruleset:
    t = plan.topology
    addr = plan.addresses
    chains: list[Chain] = []
    dispatch: list[str] = []
    nowhere = 0
    for svc in t.services:
        if cluster not in svc.present_in:
            continue
        svc_chain = f"svc-{hash8(svc.name)}-{svc.name}"
        ip = addr.service_ips[(svc.name, cluster)]
        dispatch.append(f"{ip} . {settings.service_port} : goto {svc_chain}")
        endpoints: list[str] = []
        for i, b in enumerate(svc.backends):
            pod = t.pod_by_name[b]
            seen = addr.pod_seen_from(pod, cluster)
            if seen is None:
                # No peering with where the backend runs: a real kube-proxy would forward into
                # the void; the gateway answers 'unreachable' for NOWHERE instead of hanging.
                seen = plan.nowhere_ip(nowhere)
                nowhere += 1
            ep = f"ep-{hash8(svc.name)}-{i}"
            rules = []
            if pod.physical == cluster:
                rules.append(f"ip saddr {seen} meta mark set meta mark | {HAIRPIN_MARK}")
            rules.append(f"meta l4proto tcp dnat ip to {seen}:{settings.pod_port}")
            chains.append(Chain(ep, tuple(rules)))
            endpoints.append(ep)
        if not endpoints:
            body: tuple[str, ...] = ("drop",)
        elif len(endpoints) == 1:
            body = (f"goto {endpoints[0]}",)
        else:
            k = spread(len(endpoints))
            choices = ", ".join(f"{i} : goto {endpoints[i % len(endpoints)]}" for i in range(k))
            body = (f"tcp sport & {k - 1} vmap {{ {choices} }}",)
        chains.append(Chain(svc_chain, body))
    pre = (f"ip daddr . tcp dport vmap {{ {', '.join(dispatch)} }}",) if dispatch else ()
    post = (
        f"meta mark & {HAIRPIN_MARK} == {HAIRPIN_MARK} masquerade",
        'oifname "uplink" masquerade',
    )
    return Ruleset(
        "ip",
        TABLE,
        (),
        (
            Chain("prerouting", pre, Hook("nat", "prerouting", "dstnat - 10")),
            Chain("postrouting", post, Hook("nat", "postrouting", "srcnat - 10")),
            *chains,
        ),
    )
