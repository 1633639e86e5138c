"""``--junit FILE``: probed tables as JUnit XML, the report format CI systems read.

One ``<testsuite>`` per probed table (``lab probe``: one; ``demo``: one per mode), one
``<testcase>`` per cell, named ``SRC -> DST``. A cell whose observed verdict differs from the
computed one has a ``<failure>`` that says both, what the probes saw and the commands that repeat
them by hand; a cell that is right has its verdict as ``system-out``.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peerwall.policy import TruthTable
from peerwall.verify.observe import Observed


@dataclass(frozen=True)
class Suite:
    """One probed table: its name (``lab probe try``, ``demo FullPodToPod``), the computed table,
    and what the probes observed."""

    name: str
    expected: TruthTable
    observed: Observed


def junit_xml(suites: Sequence[Suite]) -> ET.ElementTree:
    root = ET.Element("testsuites", name="peerwall")
    total = failed = 0
    seconds = 0.0
    for suite in suites:
        wrong = set(suite.expected.compare(suite.observed.table).cells())
        cells = list(suite.expected.cells())
        per_cell = suite.observed.seconds / len(cells) if cells else 0.0
        node = ET.SubElement(
            root,
            "testsuite",
            name=suite.name,
            tests=str(len(cells)),
            failures=str(len(wrong)),
            errors="0",
            skipped="0",
            time=f"{suite.observed.seconds:.3f}",
        )
        for source, destination, verdict in cells:
            case = ET.SubElement(
                node,
                "testcase",
                classname=f"{_dotted(suite.name)}.{source}",
                name=f"{source} -> {destination}",
                time=f"{per_cell:.3f}",
            )
            got = suite.observed.table.get(source, destination)
            obs = suite.observed.cells.get((source, destination))
            if (source, destination) in wrong:
                failure = ET.SubElement(
                    case,
                    "failure",
                    type="WrongCell",
                    message=(
                        f"computed {verdict.value}, observed {got.value if got else '-'}"
                        + (f"; {obs.detail()}" if obs else "")
                    ),
                )
                failure.text = "\n".join(f"reproduce: {r}" for r in obs.reproducers) if obs else ""
            else:
                ET.SubElement(case, "system-out").text = f"{verdict.value} (computed and observed)"
        total += len(cells)
        failed += len(wrong)
        seconds += suite.observed.seconds
    root.set("tests", str(total))
    root.set("failures", str(failed))
    root.set("errors", "0")
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def _dotted(name: str) -> str:
    """``lab probe try (FullPodToPod)`` -> ``lab.probe.try.FullPodToPod``: reports group test
    cases by the dotted parts of their class name, as they do packages."""
    return re.sub(r"\W+", ".", name).strip(".")


def write_junit(path: Path, suites: Sequence[Suite]) -> None:
    """Write the report atomically: a CI step that reads it never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    junit_xml(suites).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)
