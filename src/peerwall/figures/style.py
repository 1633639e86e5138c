"""The colours of the seed's figures (Liqo's security-modes drawings), in one place.

Read off the seed's SVGs: the matrices' blue headers (#0e58c4) and cell borders (#609fe0), the
yellow of the cells that differ from FullPodToPod (#fff2cc, border #d6b656); the schema's
Kubernetes blue (#326ce5), the second cluster's orange (#ff8000), the virtual cluster's cyan
(#19d1ff) and the offloaded namespace's light blue (#dae8fc). The verdict words are coloured as in
the terminal renderer (green YES, red NO, orange PARTIAL, magenta ERROR) so a figure and a
``peerwall matrix`` table read the same.
"""

from __future__ import annotations

from peerwall.policy.verdict import Verdict

HEADER = "#0e58c4"
HEADER_TEXT = "#ffffff"
GRID = "#609fe0"
HIGHLIGHT = "#fff2cc"
HIGHLIGHT_BORDER = "#d6b656"
GROUP_OUTER = "#3f7fd9"
GROUP_INNER = "#eef3fb"
NAMESPACE = "#dae8fc"
"""An offloaded namespace, in the matrices' group bands and in the topology figure."""
WRONG = "#d0021b"
"""The outline of a probed cell that differs from the computed one."""

VERDICT_COLOURS = {
    Verdict.YES: "#1e7b34",
    Verdict.NO: "#c62828",
    Verdict.PARTIAL: "#e06c00",
    Verdict.ERROR: "#b0179a",
}
VERDICT_MARKS = {Verdict.YES: "Y", Verdict.NO: "N", Verdict.PARTIAL: "P", Verdict.ERROR: "E"}
"""One-letter marks for small cells (the terminal's ``.`` for YES would vanish in a figure)."""

KUBE_BLUE = "#326ce5"
VIRTUAL = "#19d1ff"
CLUSTER_COLOURS = ("#326ce5", "#ff8000", "#2e9e44", "#8e44ad", "#d6336c", "#0f9d9a")
"""Cluster outlines in file order: the seed's blue and orange first."""
NAMESPACE_FILLS = ("#dae8fc", "#d5e8d4", "#ffe6cc", "#e1d5e7", "#f8cecc", "#d0f0ef")
"""Offloaded namespaces in file order: the seed's light blue first."""
PLAIN_NAMESPACE = "#f5f5f5"
INK = "#1a1a1a"
MUTED = "#5f6b7a"
