"""Figures: truth tables, probe results and topologies as SVG and self-contained HTML.

Pure: each function takes tables or a topology and returns the document as a string; writing it
anywhere is the caller's business. No browser is needed to produce a figure, only to look at one.
"""

from peerwall.figures.matrix import matrix_html, matrix_svg
from peerwall.figures.probe import probe_html
from peerwall.figures.topology import topology_svg
from peerwall.figures.view import MAX_LINES, MatrixView, matrix_view

__all__ = [
    "MAX_LINES",
    "MatrixView",
    "matrix_html",
    "matrix_svg",
    "matrix_view",
    "probe_html",
    "topology_svg",
]
