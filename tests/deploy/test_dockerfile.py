"""The agent image's Dockerfile. No container engine runs here to build it, so these tests read it:
the base image, the Debian packages, the package install, and the entry point the chart relies on
(the chart's agent container gives only arguments: ``agent --source kubernetes ...``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_of(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def test_base_image_is_python_311_slim_bookworm() -> None:
    assert args_of("FROM") == ["python:3.11-slim-bookworm"]


def test_installs_the_tools_without_recommends() -> None:
    runs = [shlex.split(r) for r in args_of("RUN")]
    installs = [r for r in runs if "apt-get" in r and "install" in r]
    assert len(installs) == 1
    words = installs[0]
    assert "--no-install-recommends" in words
    assert {"nftables", "libnftables1", "conntrack", "iproute2"} <= set(words)


def test_pip_installs_the_package_from_the_copied_sources() -> None:
    copied = " ".join(args_of("COPY"))
    assert "pyproject.toml" in copied and "src" in copied
    assert any(shlex.split(r)[:3] == ["pip", "install", "."] for r in args_of("RUN"))


def test_entrypoint_is_peerwall() -> None:
    (entrypoint,) = args_of("ENTRYPOINT")
    assert json.loads(entrypoint) == ["peerwall"]
