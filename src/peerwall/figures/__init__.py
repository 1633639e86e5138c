"""Figures: truth tables, probe results and topologies as SVG and self-contained HTML.

Pure: each function takes tables or a topology and returns the document as a string; writing it
anywhere is the caller's business. No browser is needed to produce a figure, only to look at one.

The names below are imported when first used (PEP 562): the agent serves one page
(``figures.flows``) and starts in every lab's gateways, so it does not load the others.
"""

import typing

from peerwall import lazy

_EXPORTS = {
    "MAX_LINES": "peerwall.figures.view",
    "MatrixView": "peerwall.figures.view",
    "matrix_html": "peerwall.figures.matrix",
    "matrix_svg": "peerwall.figures.matrix",
    "matrix_view": "peerwall.figures.view",
    "probe_html": "peerwall.figures.probe",
    "topology_svg": "peerwall.figures.topology",
}

if typing.TYPE_CHECKING:
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


_load = lazy.exports(__name__, _EXPORTS)


def __getattr__(name: str) -> object:
    return _load(name)
