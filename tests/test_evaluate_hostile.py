"""``gradatim evaluate`` on untrusted model output: many boxes, huge or non-finite coordinates and
pathological text score as unparsable in bounded time; bad reference rows are one-line errors
naming the file, line and field; the union area is exact and O(n log n) (against the former
coordinate-grid implementation, a pixel-grid count and shapely)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim.cli import main
from gradatim.evaluate import evaluate_rows, read_predictions, union_area, union_iou
from gradatim.evaluate.report import MAX_PREDICTED_BOXES, MAX_PREDICTION_CHARS, _description
from gradatim.evaluate.text import clean_text

CAP = 2 << 30
ROW = {"id": "a", "source": "vindr", "task": "phrase_grounding", "category": "nodule",
       "prediction": "nodule: [0.30,0.40,0.12,0.08]", "reference": "nodule: [0.30,0.40,0.12,0.08]",
       "reference_boxes": [[0.24, 0.36, 0.36, 0.44]], "box_format": "cure"}  # fmt: skip


def _many_boxes(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    boxes = " ".join(
        "[" + ",".join(f"{rng.random():.6f}" for _ in range(4)) + "]" for _ in range(n)
    )
    return "nodule: " + boxes


def test_ten_thousand_boxes_score_as_unparsable_within_5_s(tmp_path: Path) -> None:
    """A 380 KB generated row with 10,000 boxes: formerly minutes and gigabytes (a dense grid of
    the pairwise intersections), then MemoryError. Now unparsable (IoU 0), in a child capped at
    2 GiB, within 5 s (imports and a warm-up row excluded)."""
    text = _many_boxes(10_000)
    assert 300_000 < len(text) < MAX_PREDICTION_CHARS
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({**ROW, "prediction": text}) + "\n")
    code = textwrap.dedent(f"""
        import resource, time
        resource.setrlimit(resource.RLIMIT_AS, ({CAP}, {CAP}))
        from gradatim.evaluate import evaluate_rows, read_predictions
        evaluate_rows([{ROW!r}])  # imports (nltk, sacrebleu) and first use
        start = time.perf_counter()
        [row] = evaluate_rows(read_predictions({str(preds)!r}))
        print(time.perf_counter() - start, row["iou"], row["unparsable"])
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, iou, why = out.stdout.split(" ", 2)
    assert float(seconds) < 5.0 and float(iou) == 0.0
    assert why.strip() == f"10000 boxes, more than {MAX_PREDICTED_BOXES}"


def test_predictions_that_cannot_be_scored_are_unparsable_not_errors() -> None:
    digits = "1" * 400  # parses to infinity
    rows = [
        {**ROW, "id": "inf", "prediction": f"a: [0.{digits},0.4,0.1,0.1] [{digits},0.4,0.1,0.1]"},
        {**ROW, "id": "long", "prediction": "x " * (MAX_PREDICTION_CHARS // 2 + 1)},
        {**ROW, "id": "many", "prediction": _many_boxes(MAX_PREDICTED_BOXES + 1)},
        {**ROW, "id": "limit", "prediction": _many_boxes(MAX_PREDICTED_BOXES)},
        {**ROW, "id": "fine"},
    ]  # fmt: skip
    by_id = {r["id"]: r for r in evaluate_rows(rows)}
    assert by_id["inf"]["unparsable"] == "a box coordinate is not a finite number"
    assert by_id["inf"]["iou"] == 0.0
    assert by_id["long"]["unparsable"].endswith(f"more than {MAX_PREDICTION_CHARS}")
    assert by_id["long"]["iou"] == 0.0 and by_id["long"]["rougeL"] == 0.0
    assert by_id["many"]["unparsable"] and by_id["many"]["iou"] == 0.0
    assert by_id["limit"]["unparsable"] is None and by_id["limit"]["iou"] > 0.0
    assert by_id["fine"]["unparsable"] is None and by_id["fine"]["iou"] == pytest.approx(1.0)
    from gradatim.evaluate import summarize

    assert summarize(list(by_id.values()))["overall"]["n_unparsable"] == 3


BAD_ROWS = [
    ('"reference_boxes": [[NaN, 0, 1, 1]]', "reference_boxes[0]", "finite"),
    ('"reference_boxes": [[0, 0, Infinity, 1]]', "reference_boxes[0]", "finite"),
    ('"reference_boxes": [[0.5, 0, 0.1, 1]]', "reference_boxes[0]", "x1 <= x2"),
    ('"reference_boxes": [[0, 0, 1]]', "reference_boxes[0]", "[x1, y1, x2, y2]"),
    ('"reference_boxes": [0, 0, 1, 1]', "reference_boxes[0]", "[x1, y1, x2, y2]"),
    ('"reference_boxes": ["0,0,1,1"]', "reference_boxes[0]", "[x1, y1, x2, y2]"),
    ('"reference_boxes": [{"box": [0, 0, 1, 1]}]', "reference_boxes[0]", "[x1, y1, x2, y2]"),
    ('"reference_boxes": [[0, 0, true, 1]]', "reference_boxes[0]", "four numbers"),
    ('"reference_boxes": [[0, 0, "1", 1]]', "reference_boxes[0]", "four numbers"),
    ('"reference_boxes": {"a": 1}', "reference_boxes", "a list of boxes"),
    ('"reference_boxes": [[0, 0, 1' + "0" * 400 + ", 1]]", "reference_boxes[0]", "too large"),
    ('"box_format": 5', "box_format", "expected one of"),
    ('"box_format": "nope"', "box_format", "expected one of"),
    ('"box_format": null', "box_format", "expected one of"),
    ('"category": {"a": 1}', "category", "string or null"),
]


@pytest.mark.parametrize(("extra", "field", "reason"), BAD_ROWS)
def test_bad_reference_rows_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, field: str, reason: str
) -> None:
    good = json.dumps({k: v for k, v in ROW.items() if k not in ("reference_boxes", "box_format")})
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps(ROW) + "\n" + good[:-1] + ", " + extra + "}\n")
    with pytest.raises(ValueError, match=re.escape(f"line 2, field '{field}': ")) as e:
        read_predictions(preds)
    assert reason in str(e.value)
    assert main(["evaluate", str(preds), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        err.startswith("gradatim evaluate: error: ") and f"p.jsonl line 2, field '{field}'" in err
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"id": ' + b"9" * 5000 + b"}", "not JSON"),
        (json.dumps(ROW).encode().replace(b"nodule:", b"nod\xffle:"), "not UTF-8"),
        (b"[1, 2]", "expected an object"),
    ],
    ids=["deep", "huge-integer", "not-utf8", "array"],
)
def test_unreadable_lines_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: bytes, reason: str
) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_bytes(json.dumps(ROW).encode() + b"\n\n" + line + b"\n")
    with pytest.raises(ValueError, match=f"p.jsonl line 3: .*{reason}"):
        read_predictions(preds)
    assert main(["evaluate", str(preds), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "p.jsonl line 3" in err


def test_the_library_call_names_the_row() -> None:
    with pytest.raises(ValueError, match=r"row 2, field 'reference_boxes\[0\]': expected finite"):
        evaluate_rows([ROW, {**ROW, "reference_boxes": [[float("nan"), 0, 1, 1]]}])


def test_pathological_text_is_cleaned_in_linear_time() -> None:
    """CURE's cleaning, formerly quadratic in a run of digits after '[' (regular expression
    backtracking) and in repeated 'Description' without ':'."""
    import time

    for text in ("[" + "1" * 500_000, "Description " * 50_000, "[1,2,3," + "4" * 500_000):
        start = time.perf_counter()
        clean_text(text)
        _description(text)
        assert time.perf_counter() - start < 1.0


_CURE_BOX_OLD = re.compile(r"\[\s*" + r"\s*,\s*".join([r"(-?\d+\.?\d*)"] * 4) + r"\s*\]")
_TOKEN_BOXES = re.compile(r"<box>.*?</box>|<loc\d+>", flags=re.S)


def _clean_old(text: str) -> str:
    """clean_text as it was (CURE's regular expressions), the oracle on short text."""
    out = _TOKEN_BOXES.sub("", _CURE_BOX_OLD.sub("", text))
    out = " ".join(out.strip().split())
    found = re.search(r"Description.*?:(.*)", out)
    if found is not None:
        out = found.group(1).strip()
    for old in (": .", " .", ":"):
        out = out.replace(old, ".")
    return out


_pieces = st.sampled_from(
    ["Description", "Description of the left lung", ":", " ", "\n", "[", "]", ",", "0.5", "-1",
     "12", ".", "x", "[0.1, 0.2,0.3 ,0.4]", "<box><x1><y2><x3><y4></box>", "<loc0012>", "é"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_pieces, max_size=12))
def test_cleaning_equals_the_regular_expressions(parts: list[str]) -> None:
    text = "".join(parts)
    assert clean_text(text) == _clean_old(text)
    found = re.search(r"Description[^:]*:\s*(.*)$", text, flags=re.S)
    assert _description(text) == (found.group(1) if found else text)


def _grid_union_area(boxes: np.ndarray) -> float:
    """The former union_area (coordinate compression, a dense grid): the oracle."""
    if len(boxes) == 0:
        return 0.0
    xs, ys = np.unique(boxes[:, [0, 2]]), np.unique(boxes[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        i0, i1 = np.searchsorted(ys, [y1, y2])
        j0, j1 = np.searchsorted(xs, [x1, x2])
        covered[i0:i1, j0:j1] = True
    return float((np.outer(np.diff(ys), np.diff(xs)) * covered).sum())


def _grid_iou(pred: list[list[float]], ref: list[list[float]]) -> float | None:
    """The former union_iou (pairwise intersections on the grid)."""
    keep = lambda a: a[(a[:, 2] > a[:, 0]) & (a[:, 3] > a[:, 1])]  # noqa: E731
    p, r = keep(np.asarray(pred, float).reshape(-1, 4)), keep(np.asarray(ref, float).reshape(-1, 4))
    if len(r) == 0:
        return None
    if len(p) == 0:
        return 0.0
    lo = np.maximum(p[:, None, :2], r[None, :, :2]).reshape(-1, 2)
    hi = np.minimum(p[:, None, 2:], r[None, :, 2:]).reshape(-1, 2)
    inter = _grid_union_area(keep(np.concatenate([lo, hi], axis=1)))
    union = _grid_union_area(p) + _grid_union_area(r) - inter
    return inter / union if union > 0 else 0.0


@st.composite
def _int_boxes(draw: st.DrawFn) -> list[list[float]]:
    out = []
    for _ in range(draw(st.integers(0, 8))):
        x1, x2 = sorted((draw(st.integers(0, 12)), draw(st.integers(0, 12))))
        y1, y2 = sorted((draw(st.integers(0, 12)), draw(st.integers(0, 12))))
        out.append([float(x1), float(y1), float(x2), float(y2)])
    return out


@settings(max_examples=300, deadline=None)
@given(pred=_int_boxes(), ref=_int_boxes())
def test_sweep_equals_the_grid_and_a_pixel_count(
    pred: list[list[float]], ref: list[list[float]]
) -> None:
    """On integer coordinates every sum is exact: the sweep equals the former implementation
    and a count of covered unit pixels exactly."""
    pixels = np.zeros((12, 12), bool)
    for x1, y1, x2, y2 in pred:
        pixels[int(y1) : int(y2), int(x1) : int(x2)] = True
    assert union_area(pred) == _grid_union_area(np.asarray(pred).reshape(-1, 4)) == pixels.sum()
    assert union_iou(pred, ref) == _grid_iou(pred, ref)


@settings(max_examples=200, deadline=None)
@given(
    pred=st.lists(st.lists(st.floats(0, 1), min_size=4, max_size=4), max_size=10),
    ref=st.lists(st.lists(st.floats(0, 1), min_size=4, max_size=4), max_size=10),
)
def test_sweep_equals_the_grid_on_floats(pred: list[list[float]], ref: list[list[float]]) -> None:
    old = _grid_iou(pred, ref)
    new = union_iou(pred, ref)
    assert (old is None) == (new is None)
    if old is not None:
        assert new == pytest.approx(old, rel=1e-9, abs=1e-12)


def test_union_is_n_log_n() -> None:
    """1,000 predicted boxes against 100 reference boxes: the former pairwise grid made 100,000
    boxes and a grid of 4e10 cells; the sweep takes well under a second."""
    import time

    rng = np.random.default_rng(0)
    corner = rng.random((1000, 2))
    pred = np.concatenate([corner, corner + rng.random((1000, 2)) * 0.1], axis=1)
    start = time.perf_counter()
    iou = union_iou(pred.tolist(), pred[:100].tolist())
    assert time.perf_counter() - start < 2.0
    assert 0.0 < iou < 1.0
