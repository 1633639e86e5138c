"""The probe page: both tables, the wrong cells marked in both and linked to their entries, each
entry with its detail and reproducers, everything escaped, nothing fetched."""

from __future__ import annotations

from pathlib import Path

from figkit import parse_html, self_contained

from peerwall.figures import probe_html
from peerwall.model import SecurityMode, load_topology
from peerwall.policy import TruthTable, Verdict, expect

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "peerwall" / "examples"


def seed_run() -> tuple[TruthTable, TruthTable, dict[tuple[str, str], tuple[str, list[str]]]]:
    t = load_topology((EXAMPLES / "seed.yaml").read_text(), "seed.yaml")
    computed = expect(t, SecurityMode.INTRA_CLUSTER_TRAFFIC_SEGREGATION).table
    cells = {(s, d): v for s, d, v in computed.cells()}
    cells["P1", "P5"] = Verdict.YES  # a hole in the firewall
    cells["P4", "S1"] = Verdict.ERROR  # a probe that failed
    observed = TruthTable.from_cells(
        computed.security_mode, computed.sources, computed.destinations, cells
    )
    wrong = {
        (m.source, m.destination): (
            f"10.244.0.5:8080 -> open (<{m.destination}> & co)",
            [
                f"ip netns exec pw-lab-{m.source} nc -z -w 1 10.244.0.5 8080",
                "echo '<script>x</script>'",
            ],
        )
        for m in computed.compare(observed).mismatches()
    }
    return computed, observed, wrong


def test_wrong_cells_are_marked_in_both_tables_and_linked_to_their_entries():
    computed, observed, wrong = seed_run()
    assert set(wrong) == {("P1", "P5"), ("P4", "S1")}
    text = probe_html(computed, observed, wrong, note="a timeout means dropped")
    self_contained(text)
    p = parse_html(text)
    tds = [a for tag, a in p.tags if tag == "td" and "data-source" in a]
    assert len(tds) == 2 * 5 * 10
    marked = [
        (a["data-source"], a["data-destination"])
        for a in tds
        if "wrong" in (a.get("class") or "").split()
    ]
    assert sorted(marked) == sorted([*wrong, *wrong])  # in computed and in observed
    links = {a["href"] for tag, a in p.tags if tag == "a"}
    entries = {
        a["id"]: (a["data-source"], a["data-destination"]) for tag, a in p.tags if tag == "li"
    }
    assert {f"#{i}" for i in entries} == links
    assert sorted(entries.values()) == sorted(wrong)
    body = "".join(p.text)
    assert "P1 → P5: computed NO, observed YES" in body
    assert "P4 → S1: computed NO, observed ERROR" in body
    assert "10.244.0.5:8080 -> open (<P5> & co)" in body
    assert "ip netns exec pw-lab-P1 nc -z -w 1 10.244.0.5 8080" in body
    assert "echo '<script>x</script>'" in body  # shown as text
    assert "<script>" not in text
    assert "100 cells" not in body and "45 cells: 43 correct, 2 wrong." in body
    assert "a timeout means dropped" in body


def test_no_wrong_cell():
    computed, _, _ = seed_run()
    text = probe_html(computed, computed, {})
    self_contained(text)
    body = "".join(parse_html(text).text)
    assert "45 cells: 45 correct, 0 wrong." in body
    assert "Wrong cells" not in body
