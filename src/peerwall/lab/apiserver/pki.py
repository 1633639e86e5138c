"""A test CA and a serving certificate for the fake API server, made with the openssl command.

The certificate is for ``127.0.0.1`` (and any other addresses asked for) (an IP SAN, as a client checking a ``https://<IP>`` server
needs) and ``kubernetes.default.svc``; the CA's ``ca.crt`` is what a pod's ServiceAccount volume
holds, and what a kubeconfig's ``certificate-authority`` names.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


def make_pki(directory: Path, ips: Sequence[str] = ()) -> Pki:
    """``ips``: more addresses the certificate names (IP SANs), besides 127.0.0.1: those the
    clients dial (the lab's gateways reach their cluster's API server at its node's address)."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = d / "ca.key", d / "ca.crt"
    key, csr, cert, ext = d / "server.key", d / "server.csr", d / "server.crt", d / "san.ext"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "2", "-subj", "/CN=fake-kube-ca",
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=kube-apiserver",
    )  # fmt: skip
    ext.write_text(
        f"subjectAltName=IP:127.0.0.1,{''.join(f'IP:{a},' for a in ips)}"
        "DNS:kubernetes.default.svc,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return Pki(ca_cert, cert, key)
