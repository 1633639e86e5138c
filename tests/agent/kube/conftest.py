"""Fixtures of the Kubernetes source's tests (the harness is ``kubeapi.harness``)."""

from __future__ import annotations

import logging

import pytest

from kubeapi.harness import REAL, REAL_SKIP


@pytest.fixture(
    params=["fake", pytest.param("real", marks=pytest.mark.skipif(not REAL, reason=REAL_SKIP))]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _quiet_http_logs() -> None:
    for name in ("httpx2", "aiohttp.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
