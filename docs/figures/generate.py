"""Regenerates the figures of this folder from the bundled seed example: ``make figures``.

tests/figures/test_docs_figures.py regenerates them too and compares byte for byte, so a change
to the figures' code that changes these files fails until they are regenerated and committed.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from peerwall.figures import matrix_svg, topology_svg
from peerwall.model import SecurityMode, load_topology
from peerwall.policy import expect

HERE = Path(__file__).resolve().parent


def figures() -> dict[str, str]:
    """File name -> content."""
    text = resources.files("peerwall").joinpath("examples/seed.yaml").read_text(encoding="utf-8")
    seed = load_topology(text, "seed.yaml")
    full = SecurityMode.FULL_POD_TO_POD
    segregation = expect(seed, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    baseline = expect(seed, full, force=full).table
    return {
        "seed-segregation.svg": matrix_svg(
            segregation,
            baseline,
            full.value,
            "Connectivity matrix: IntraClusterTrafficSegregation (the seed's example)",
            topology=seed,
        ),
        "seed-topology.svg": topology_svg(
            seed, full, title="The seed's virtual cluster: C1 offloads namespace 'offloaded' to C2"
        ),
    }


def main() -> None:
    for name, content in figures().items():
        (HERE / name).write_text(content, encoding="utf-8")
        print(f"wrote {HERE / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
