"""Helpers shared by test modules (conftest files cannot be imported: their names collide)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerwall.nsenter import entered

SHARED_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
"""The seed's reference files, authoritative, beside the repository as in CI."""
REFERENCE_COPY = Path(__file__).resolve().parent / "reference"
"""A copy of the files the tests read, for a clone made elsewhere (checked against the
authoritative ones wherever they are beside the clone)."""
REFERENCE = SHARED_REFERENCE if SHARED_REFERENCE.is_dir() else REFERENCE_COPY


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the {tool} command"
    return None


def require_lab() -> None:
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("PEERWALL_REQUIRE_LAB") == "1":
        pytest.fail(f"PEERWALL_REQUIRE_LAB=1 but the lab cannot run: {reason}")
    pytest.skip(f"lab test: {reason} (PEERWALL_REQUIRE_LAB=1 makes this a failure)")


@contextlib.contextmanager
def tcp_connection(
    src_ns: str, src: str | None, dst_ns: str, dst: str, port: int
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """An established TCP connection from namespace ``src_ns`` (from address ``src``; None: the
    kernel's choice) to ``dst:port`` in ``dst_ns``: (client end, server end)."""
    with entered(dst_ns):
        srv = socket.socket()
    with entered(src_ns):
        cli = socket.socket()
    with srv, cli:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((dst, port))
        srv.listen(1)
        srv.settimeout(2)
        cli.settimeout(2)
        if src is not None:
            cli.bind((src, 0))
        cli.connect((dst, port))
        conn, _ = srv.accept()
        with conn:
            yield cli, conn


def talks(a: socket.socket, b: socket.socket, data: bytes) -> bool:
    """``data`` sent on ``a`` arrives on ``b`` within a second."""
    try:
        a.sendall(data)
        b.settimeout(1.0)
        return b.recv(100) == data
    except OSError:
        return False
