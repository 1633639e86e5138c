"""One list of every object the views need from a cluster, through the source's client.

The selections are the Kubernetes source's (``source.watch_specs``), listed once instead of
watched, with two widened: *every* pod and namespace (the source needs only Liqo's; a topology
has all of them). ``picture.topology_document`` joins what several clusters hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerwall import liqo
from peerwall.agent.kube.client import ApiError, KubeApi
from peerwall.agent.kube.picture import ClusterObjects, PictureError, topology_document
from peerwall.agent.kube.source import watch_specs
from peerwall.agent.kube.watch import WatchSpec
from peerwall.settings import KubeSettings

__all__ = ["ClusterRef", "read_clusters", "read_topology_document", "selections"]


@dataclass(frozen=True)
class ClusterRef:
    """How to reach one cluster: a kubeconfig and a context in it (None: its current one)."""

    kubeconfig: Path
    context: str | None = None

    def __str__(self) -> str:
        return f"kubeconfig {self.kubeconfig}" + (
            f", context {self.context}" if self.context else ""
        )


def selections(settings: KubeSettings | None = None) -> list[WatchSpec]:
    """The source's selections, pods and namespaces widened to all; each listed once."""
    out: list[WatchSpec] = [WatchSpec(liqo.POD), WatchSpec(liqo.NAMESPACE)]
    for spec, _role in watch_specs(settings or KubeSettings()):
        if spec.kind not in (liqo.POD, liqo.NAMESPACE) and spec not in out:
            out.append(spec)
    return out


async def read_cluster(api: KubeApi, source: str) -> ClusterObjects:
    found = ClusterObjects(source)
    for spec in selections():
        try:
            items, _ = await api.list(
                spec.kind, namespace=spec.namespace, labels=spec.labels, fields=spec.fields
            )
        except ApiError as exc:
            if exc.code == 404 and spec.kind is liqo.PEERING_SECURITY:
                items = []  # peerwall's CRD not installed: no peering sets a mode
            else:
                raise PictureError(f"{source}: listing {spec}: {exc}") from None
        found.objects.setdefault(spec.kind.kind, []).extend(items)
    return found


async def read_clusters(refs: Sequence[ClusterRef]) -> list[ClusterObjects]:
    async def one(ref: ClusterRef) -> ClusterObjects:
        try:
            api = KubeApi.from_config(ref.kubeconfig, ref.context)
        except OSError as exc:
            # ssl names no file: it is one the kubeconfig names (a CA, a client certificate).
            what = exc.filename or "a certificate or key file the kubeconfig names"
            raise PictureError(f"{ref}: {exc.strerror or exc}: {what}") from None
        except Exception as exc:  # lightkube's config errors have no common base
            raise PictureError(f"{ref}: {exc}") from None
        try:
            return await read_cluster(api, str(ref))
        except OSError as exc:
            raise PictureError(f"{ref}: {exc.strerror}: {exc.filename}") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("httpx", "httpcore")):
                raise PictureError(
                    f"{ref}: cannot reach the API server: {exc or type(exc).__name__}"
                ) from None
            raise
        finally:
            await api.aclose()

    return list(await asyncio.gather(*(one(r) for r in refs)))


def read_topology_document(refs: Sequence[ClusterRef]) -> dict[str, Any]:
    """The topology file's document of the clusters ``refs`` reach (one per cluster)."""
    return topology_document(asyncio.run(read_clusters(refs)))
