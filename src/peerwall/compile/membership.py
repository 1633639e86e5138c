"""Segregation as set membership: which per-peer sets of a gateway a pod's address joins.

The one statement of the rule, used by both sources of state: the file source
(``compile.desired``, from the decision procedure's ``PodClass``) and the Kubernetes source
(``agent.kube``, from Liqo's objects). Under IntraClusterTrafficSegregation a peer R reaches here
only what DESIGN §1 admits, and each admission is one set of R:

* a pod R offloaded here (running here, its home is R): R's ``OFFLOADED`` set;
* a local backend of a service reflected to R: R's ``BACKENDS`` set;
* a pod whose home is here, offloaded to R, may reach the local API server: R's ``API_CLIENTS``
  set (by the address R's traffic carries for it; the sources find that address).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from peerwall.compile.state import SetKind

__all__ = ["memberships"]


def memberships(
    *,
    offloaded_by: str | None = None,
    reflected_to: Iterable[str] = (),
    offloaded_to: str | None = None,
) -> Iterator[tuple[str, SetKind]]:
    """The (peer, set) pairs a pod's address joins. For a pod running here: ``offloaded_by`` is
    the peer that offloaded it here (None: its home is here), ``reflected_to`` the peers a service
    it backs is reflected to. For a pod of ours running at a peer: ``offloaded_to`` is that peer."""
    if offloaded_by is not None:
        yield offloaded_by, SetKind.OFFLOADED
    for peer in reflected_to:
        yield peer, SetKind.BACKENDS
    if offloaded_to is not None:
        yield offloaded_to, SetKind.API_CLIENTS
