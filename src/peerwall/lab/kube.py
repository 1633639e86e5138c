"""What a cluster's node does besides peerwall, in an emulated gateway: kube-proxy's service
DNAT, hairpin masquerade and Internet egress (table ``ip pw-kube``), Liqo's masquerade of traffic
towards peers, and the CNI's per-pod source check (table ``ip pw-cni``).

Liqo's nodes source-NAT traffic towards a peer's pods that does not come from a local pod
(NodePort, hostNetwork: here, the gateway's own sockets), and with ``fullMasquerade`` all of it, to
the first address of the cluster's external CIDR (FirewallConfiguration
``<configuration>-masquerade-bypass``, ``internal-network/configuration-controller/firewall.go``
in liqotech/liqo). The lab does it for clusters whose topology gives an ``externalCIDR``, in the
same postrouting chain, before peerwall's own remapping: the first source NAT of a flow is the one
that holds.

Each service present in a cluster (at home or reflected) gets a ClusterIP there and a chain that
DNATs to its backends as that cluster sees them. The backend is picked by the low bits of the
client's source port rather than at random, so a prober can aim at every backend in turn and
observe PARTIAL as such; ordinary clients with random ports still spread over all backends.

Real CNIs (Calico, Cilium) stop a pod from sending with another pod's address. peerwall's
source-based exception (the API server, for pods whose home is here) relies on the peer's CNI
doing so, so the lab's nodes do it too: a packet from a pod's veth whose source is not routed back
through that veth (strict reverse-path, nft's ``fib``) is dropped before anything else sees it.
"""

from __future__ import annotations

from peerwall.compile.names import hash8
from peerwall.lab.plan import LabPlan
from peerwall.settings import LabSettings

TABLE = "pw-kube"
CNI_TABLE = "pw-cni"
HAIRPIN_MARK = "0x00004000"


def next_power_of_two(n: int) -> int:
    """How many source-port values the backend choice of an ``n``-backend service spans."""
    k = 1
    while k < n:
        k *= 2
    return k


def kube_script(plan: LabPlan, cluster: str, settings: LabSettings) -> str:
    """The ``ip pw-kube`` table of ``cluster``'s node, as a script that replaces it."""
    t = plan.topology
    addr = t.addresses
    chains: list[tuple[str, list[str]]] = []
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
            chains.append((ep, rules))
            endpoints.append(ep)
        if not endpoints:
            body = ["drop"]
        elif len(endpoints) == 1:
            body = [f"goto {endpoints[0]}"]
        else:
            k = next_power_of_two(len(endpoints))
            choices = ", ".join(f"{i} : goto {endpoints[i % len(endpoints)]}" for i in range(k))
            body = [f"tcp sport & {k - 1} vmap {{ {choices} }}"]
        chains.append((svc_chain, body))
    pre = [f"ip daddr . tcp dport vmap {{ {', '.join(dispatch)} }}"] if dispatch else []
    lines = [f"add table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{"]
    lines += [
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat - 10; policy accept;",
    ]
    lines += [f"\t\t{r}" for r in pre] + ["\t}"]
    lines += [
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat - 10; policy accept;",
    ]
    lines += [
        f"\t\tmeta mark & {HAIRPIN_MARK} == {HAIRPIN_MARK} masquerade",
        '\t\toifname "uplink" masquerade',
        *(f"\t\t{r}" for r in liqo_masquerade(plan, cluster)),
        "\t}",
    ]
    for name, rules in chains:
        lines += [f"\tchain {name} {{", *(f"\t\t{r}" for r in rules), "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def liqo_masquerade(plan: LabPlan, cluster: str) -> list[str]:
    """Liqo's node rules towards each peer: the source of what is not from a local pod (all of it
    with ``fullMasquerade``) becomes the first address of the external CIDR."""
    t = plan.topology
    me = t.cluster_by_name[cluster]
    if me.masquerade_source is None:
        return []
    rules = []
    for peer in t.peers[cluster]:
        ifname, _, _ = plan.tunnel(cluster, peer)
        only = "" if me.full_masquerade else f" ip saddr != {me.pod_cidr}"
        rules.append(
            f'oifname "{ifname}" ip daddr {t.addresses.remapped(cluster, peer)}{only}'
            f" snat ip to {me.masquerade_source}"
        )
    return rules


def cni_script() -> str:
    """The per-pod source check of every lab node (pod veths are ``pv<N>``, the API host's
    ``api``): strict reverse-path filtering in the prerouting hook, before NAT and peerwall."""
    return (
        "\n".join(
            (
                f"add table ip {CNI_TABLE}",
                f"delete table ip {CNI_TABLE}",
                f"table ip {CNI_TABLE} {{",
                "\tchain source-check {",
                "\t\ttype filter hook prerouting priority raw; policy accept;",
                *(
                    f'\t\tiifname "{veth}" fib saddr . iif oif missing counter drop'
                    ' comment "a pod sending with an address that is not its own"'
                    for veth in ("pv*", "api")
                ),
                "\t}",
                "}",
            )
        )
        + "\n"
    )
