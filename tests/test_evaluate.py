"""``gradatim.evaluate``: union IoU against shapely, CURE's conventions, text metrics on hand
values, hallucination per anatomy, and the command line end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim.cli import main
from gradatim.evaluate import (
    bleu4,
    curriculum_metrics,
    evaluate_rows,
    is_normal,
    read_predictions,
    rouge_l,
    summarize,
    union_area,
    union_iou,
)

coord = st.integers(0, 1000).map(lambda v: v / 1000)  # detector-like coordinates


@st.composite
def boxes(draw: st.DrawFn, max_size: int = 5) -> list[list[float]]:
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        x1, x2 = sorted((draw(coord), draw(coord)))
        y1, y2 = sorted((draw(coord), draw(coord)))
        out.append([x1, y1, x2, y2])
    return out


def shapely_union(bs: list[list[float]]) -> shapely.Geometry:
    return shapely.union_all([shapely.box(*b) for b in bs if b[2] > b[0] and b[3] > b[1]])


@settings(max_examples=200, deadline=None)
@given(pred=boxes(), ref=boxes())
def test_union_iou_equals_shapely(pred: list[list[float]], ref: list[list[float]]) -> None:
    a, b = shapely_union(pred), shapely_union(ref)
    assert union_area(pred) == pytest.approx(a.area, abs=1e-12)
    got = union_iou(pred, ref)
    if b.area == 0:
        assert got is None
    else:
        union = a.union(b).area
        expected = a.intersection(b).area / union if union > 0 else 0.0
        assert got == pytest.approx(expected, abs=1e-9)


def test_cure_conventions() -> None:
    assert union_iou([[0, 0, 1, 1]], []) is None  # no reference boxes: left out
    assert union_iou([], [[0, 0, 1, 1]]) == 0.0  # boxes expected, none predicted
    # the union, not the best match: two halves predicted for one whole box -> IoU 1
    assert union_iou([[0, 0, 0.5, 1], [0.5, 0, 1, 1]], [[0, 0, 1, 1]]) == pytest.approx(1.0)


def test_text_metrics_hand_values() -> None:
    # ROUGE-L: LCS("the cat on the mat", "the cat sat on the mat") = 5 words; P = 5/5, R = 5/6
    p, r = 1.0, 5 / 6
    assert rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(
        2 * p * r / (p + r)
    )
    same = "no acute cardiopulmonary process"
    assert bleu4(same, same) == pytest.approx(1.0)
    assert bleu4("alpha beta gamma delta", "one two three four") == 0.0


def test_normal_descriptions() -> None:
    for text in ("No acute findings.", "Normal.", "Unremarkable", "No acute abnormality."):
        assert is_normal(text), text
    for text in ("Small left effusion.", "Opacity in the right lower lobe."):
        assert not is_normal(text), text


def rows() -> list[dict]:
    agrg = "anatomy_grounded_report"
    return [
        {"id": "a", "source": "vindr", "task": "phrase_grounding", "category": "nodule",
         "prediction": "nodule: [ 0.30 , 0.40,0.12, 0.08 ]",
         "reference": "nodule: [0.30,0.40,0.12,0.08]",
         "reference_boxes": [[0.24, 0.36, 0.36, 0.44]], "box_format": "cure"},
        {"id": "b", "source": "vindr", "task": "phrase_grounding", "category": "effusion",
         "prediction": "effusion: <box> <x10><y10> <x30><y30></box>", "reference": "effusion",
         "reference_boxes": [[0.105, 0.105, 0.305, 0.305]], "box_format": "maira2"},
        {"id": "c", "source": "mimic", "task": "report", "prediction": "No acute findings.",
         "reference": "No acute findings."},
        {"id": "d", "source": "imagenome", "task": agrg, "anatomy": "left lung",
         "prediction": "Description of the left lung: Small left effusion.",
         "reference": "Description of the left lung: No acute findings."},
        {"id": "e", "source": "imagenome", "task": agrg, "anatomy": "left lung",
         "prediction": "Description of the left lung: No acute findings.",
         "reference": "Description of the left lung: No acute findings."},
        {"id": "f", "source": "imagenome", "task": agrg, "anatomy": "right lung",
         "prediction": "Description of the right lung: Normal.",
         "reference": "Description of the right lung: Opacity."},
    ]  # fmt: skip


def test_rows_tables_and_curriculum_input() -> None:
    per = evaluate_rows(rows())
    by_id = {r["id"]: r for r in per}
    assert by_id["a"]["iou"] == pytest.approx(1.0, abs=1e-6)  # whitespace inside the box
    assert by_id["b"]["iou"] == pytest.approx(1.0, abs=1e-6)  # spaces between special tokens
    assert by_id["c"]["iou"] is None and by_id["c"]["text_score"] == 1.0
    assert [by_id[k]["hallucinated"] for k in "def"] == [True, False, None]
    summary = summarize(per)
    assert summary["sources"]["vindr"]["n_iou"] == 2
    assert summary["grounding_iou"] == pytest.approx(1.0)  # a and b; d-f have no reference boxes
    assert summary["sources"]["mimic"]["iou"] is None
    assert summary["hallucination"] == {
        "left lung": {"normal_references": 2, "hallucinated": 1, "rate": 0.5}
    }
    assert set(summary["categories"]) == {"vindr/effusion", "vindr/nodule"}
    metrics = curriculum_metrics(summary)
    assert "iou" not in metrics["mimic"] and "iou" in metrics["vindr"]
    weights = ga.curriculum.cure_weights(metrics)  # the curriculum takes the table as it is
    assert set(weights) == {"vindr", "mimic", "imagenome"}


def test_cli_writes_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    out, table = tmp_path / "m.json", tmp_path / "m.csv"
    assert main(["evaluate", str(preds), "--out", str(out), "--csv", str(table)]) == 0
    summary = json.loads(out.read_text())
    assert summary["overall"]["n"] == 6 and summary["text_metric"] == "rougeL"
    assert all("not_computed" in v for v in summary["clinical_scorers"].values())
    with table.open() as f:
        lines = list(csv.DictReader(f))
    assert {(r["level"], r["name"]) for r in lines} >= {("overall", "all"), ("sources", "vindr")}
    assert "6 samples" in capsys.readouterr().out


def test_cli_errors_name_the_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["evaluate", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m.json")]) == 2
    )
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows()[0]) + "\n" + json.dumps({"id": "x", "source": "s"}) + "\n")
    assert main(["evaluate", str(bad), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gradatim evaluate: error: ") and "bad.jsonl line 2, field 'task'" in err
    with pytest.raises(ValueError, match=r"bad.jsonl line 2, field 'task'"):
        read_predictions(bad)  # the library call raises a ValueError
