"""The compact truth table (``--output json-classes``, docs/json-classes.md) expands back to the
dense contract exactly, byte for byte, on generated topologies and on the seed."""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from typer.testing import CliRunner

from gen import generate
from hypothesis_profiles import budget
from peerwall.cli.main import app
from peerwall.model import SecurityMode, load_topology, topology_from_data
from peerwall.policy import TruthTable, Verdict, expect
from peerwall.policy.tablejson import write_json, write_json_classes
from peerwall.policy.truthtable import JSON_CLASSES_FORMAT
from strategies import topologies

FULL = SecurityMode.FULL_POD_TO_POD
SEG = SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION


def expand(doc: dict[str, Any]) -> dict[str, Any]:
    """The dense contract from the compact one, exactly as docs/json-classes.md spells it."""
    assert doc["format"] == JSON_CLASSES_FORMAT
    return {
        "securityMode": doc["securityMode"],
        "sources": doc["sources"],
        "destinations": doc["destinations"],
        "matrix": {
            s: {
                d: doc["verdicts"][doc["sourceClass"][i]][doc["destinationClass"][j]]
                for j, d in enumerate(doc["destinations"])
                if d != s
            }
            for i, s in enumerate(doc["sources"])
        },
    }


def dense_text(table: TruthTable) -> str:
    buf = io.StringIO()
    write_json(table, buf)
    return buf.getvalue()


def compact(table: TruthTable) -> dict[str, Any]:
    buf = io.StringIO()
    write_json_classes(table, buf)
    text = buf.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    doc: dict[str, Any] = json.loads(text)
    return doc


def check_round_trip(table: TruthTable) -> None:
    doc = compact(table)
    buf = io.StringIO()
    write_json_classes(table, buf)
    assert buf.getvalue() == json.dumps(table.classes_dict()) + "\n"  # byte for byte
    dense = dense_text(table)
    assert json.dumps(expand(doc)) + "\n" == dense  # the derivation gives the contract's bytes
    assert json.loads(dense) == table.to_dict()
    back = TruthTable.from_classes(doc)
    assert dense_text(back) == dense
    # Small: a class number per name, one verdict per pair of classes.
    assert len(doc["verdicts"]) == len(set(doc["sourceClass"]))
    assert all(len(row) == len(set(doc["destinationClass"])) for row in doc["verdicts"])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", [FULL, SEG], ids=lambda m: m.value)
def test_generated_topologies_expand_to_the_dense_json(seed: int, mode: SecurityMode) -> None:
    t = topology_from_data(generate(seed, clusters=3 + seed % 2), f"gen-{seed}")
    check_round_trip(expect(t, mode).table)
    check_round_trip(expect(t, force=mode).table)


@budget("json-classes")
@given(topologies())
def test_any_valid_topology_expands_to_the_dense_json(data: dict[str, Any]) -> None:
    t = topology_from_data(data, "generated")
    for e in (expect(t, SEG), expect(t, FULL), expect(t, force=SEG)):
        check_round_trip(e.table)


def test_an_observed_table_with_errors_round_trips() -> None:
    names = ["a", "b", "c"]
    dests = [*names, "svc"]
    cells = {
        (s, d): [Verdict.YES, Verdict.NO, Verdict.ERROR, Verdict.PARTIAL][(i + j) % 4]
        for i, s in enumerate(names)
        for j, d in enumerate(dests)
        if s != d
    }
    check_round_trip(TruthTable.from_cells("FullPodToPod", names, dests, cells))


def test_a_table_without_sources_round_trips() -> None:
    data = {"clusters": [{"name": "C1", "podCIDR": "10.1.0.0/16"}]}
    check_round_trip(expect(topology_from_data(data, "empty"), SEG).table)


def test_a_table_without_destinations_round_trips() -> None:
    check_round_trip(TruthTable.from_cells("FullPodToPod", ["a", "b"], [], {}))


def test_the_cli_writes_the_compact_form_of_what_it_writes_dense(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(resources.files("peerwall").joinpath("examples/seed.yaml").read_text())
    runner = CliRunner()
    mode = f"networking.securityMode={SEG.value}"
    classes = runner.invoke(app, ["matrix", "-f", str(seed), "--set", mode, "-o", "json-classes"])
    dense = runner.invoke(app, ["matrix", "-f", str(seed), "--set", mode, "-o", "json"])
    assert classes.exit_code == 0 and dense.exit_code == 0, classes.output + dense.output
    doc = json.loads(classes.stdout)
    assert json.dumps(expand(doc)) + "\n" == dense.stdout
    table = expect(load_topology(seed.read_text(), "seed.yaml"), SEG).table
    assert doc == table.classes_dict()


def test_a_document_of_another_format_or_inconsistent_is_refused() -> None:
    t = topology_from_data(generate(1), "gen")
    doc = compact(expect(t, SEG).table)
    with pytest.raises(ValueError, match="format"):
        TruthTable.from_classes({**doc, "format": "something/else"})
    with pytest.raises(ValueError, match="sourceClass"):
        TruthTable.from_classes({**doc, "sourceClass": doc["sourceClass"][:-1]})
    with pytest.raises(ValueError, match="destinationClass"):
        TruthTable.from_classes(
            {**doc, "destinationClass": [len(doc["verdicts"][0]), *doc["destinationClass"][1:]]}
        )
    with pytest.raises(ValueError, match="verdicts"):
        TruthTable.from_classes(
            {**doc, "verdicts": [doc["verdicts"][0][:-1], *doc["verdicts"][1:]]}
        )


def test_write_json_to_a_real_file_is_the_same_bytes(tmp_path: Path) -> None:
    # A file takes the bytes through its binary buffer; a StringIO through text writes.
    t = topology_from_data(generate(2, clusters=4), "gen")
    table = expect(t, SEG).table
    out = tmp_path / "t.json"
    with out.open("w", encoding="utf-8") as f:
        f.write("")
        write_json(table, f)
        f.write("after\n")  # text written after the table lands after it
    assert out.read_text() == dense_text(table) + "after\n"
