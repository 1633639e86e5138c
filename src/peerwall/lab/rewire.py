"""Apply ``wiring.rewire_steps`` to the kernel, then reload the kube tables that changed.

One ``ip -batch`` process per namespace per phase; within a phase the batches are independent
(each touches only its own namespace, except that a link batch moves the far ends of its new
veths into namespaces that exist already, under names no other batch uses), so a few workers
overlap the process start-ups, as ``lab up`` always did. The peerwall table is the agents'
business (or ``build.apply_modes``'), with one exception: a new gateway gets a fail-closed table
(``compile.build.fail_closed``) right after its namespace is created, before any of its links
exists, so it never forwards a packet from a tunnel without a table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from peerwall.compile.build import fail_closed
from peerwall.compile.names import LAB_TUNNEL_PATTERN
from peerwall.dataplane.nft import LibNft
from peerwall.lab.kube import cni_script, kube_script
from peerwall.lab.netns import delete_namespaces, ip_batch, write_sysctl
from peerwall.lab.plan import LabPlan
from peerwall.lab.wiring import Changes, Role, Steps, rewire_steps, wiring
from peerwall.nft.objects import render_replace
from peerwall.nsenter import entered
from peerwall.settings import LabSettings

WORKERS = 4
"""ip(8) spends its time in the kernel, under one lock: more workers than this gain nothing."""


def _run(batches: Mapping[str, list[str]]) -> None:
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(lambda item: ip_batch(item[1], item[0]), batches.items()))


def apply_steps(steps: Steps, first: Mapping[str, str] | None = None) -> None:
    """Run the phases of ``steps`` in order; the first failing ``ip`` raises ``LabError``.
    ``first``: an nft script per new namespace, loaded once it exists, before any link."""
    _run(steps.unlink_batches())
    delete_namespaces(steps.delete_namespaces)
    ip_batch(f"netns add {n.name}" for n in steps.create_namespaces)
    for ns, values in steps.sysctls_by_namespace().items():
        with entered(ns):
            write_sysctl(values)
    for ns, script in (first or {}).items():
        with LibNft(ns) as nft:
            nft.run(script)
    _run(steps.link_batches())
    _run(steps.configure_batches())


def _kube_text(plan: LabPlan | None, cluster: str, settings: LabSettings) -> str | None:
    if plan is None or cluster not in plan.topology.cluster_by_name:
        return None
    return kube_script(plan, cluster, settings)


def rewire(old: LabPlan | None, new: LabPlan, settings: LabSettings) -> Changes:
    """Turn the lab built for ``old`` (``None``: nothing) into one built for ``new``: the wiring
    that differs, then the ``pw-kube`` and ``pw-cni`` tables of every gateway that is new or
    whose kube table differs. Each table load is one atomic replace, so a connection already
    NATed keeps its conntrack binding."""
    steps = rewire_steps(wiring(old) if old else None, wiring(new))
    fresh = {n.name for n in steps.create_namespaces if n.role is Role.GATEWAY}
    closed = {
        new.gateway_ns(c.name): render_replace(fail_closed(c.name, LAB_TUNNEL_PATTERN))
        for c in new.topology.clusters
        if new.gateway_ns(c.name) in fresh
    }
    apply_steps(steps, closed)
    reloaded = 0
    for c in new.topology.clusters:
        ns = new.gateway_ns(c.name)
        text = kube_script(new, c.name, settings)
        if ns in fresh or _kube_text(old, c.name, settings) != text:
            with LibNft(ns) as nft:
                nft.run(text + cni_script())
            reloaded += 1
    return dataclasses.replace(steps.changes(), kube_tables=reloaded)
