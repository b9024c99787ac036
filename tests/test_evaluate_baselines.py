"""``gradatim evaluate``'s baselines on a hand-made training manifest: the prompt-only baseline's
mean boxes, majority answers and most frequent reports are the hand-computed ones, its IoU is a
hand computation, other prediction files are reported beside the model, and the grounding IoU
averages phrase and anatomy grounding together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradatim as ga
from gradatim.cli import main
from gradatim.data import parse_boxes, render_boxes
from gradatim.evaluate import evaluate_rows, grounding_iou, prompt_only_rows, training_stats
from gradatim.image import encode_png

AGR = "anatomy_grounded_report"


def _box(xyxy: list[float], phrase: str = "", anatomy: str | None = None) -> dict[str, Any]:
    return {"box": xyxy, "phrase": phrase, "anatomy": anatomy}


def _rec(id: str, task: str, text: str, image: str = "a.png", source: str = "s",
         split: str = "train", **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"id": id, "image": image, "source": source, "task": task, "split": split,
            "text": text, **extra}  # fmt: skip


@pytest.fixture(scope="module")
def train_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.png is 256 x 128 (w x h), b.png 128 x 256: every normalised box below is exact."""
    root = tmp_path_factory.mktemp("baseline")
    (root / "a.png").write_bytes(encode_png(np.full((128, 256), 90, np.uint8)))
    (root / "b.png").write_bytes(encode_png(np.full((256, 128), 160, np.uint8)))
    records = [
        # phrase grounding: nodule [0.125, 0.125, 0.375, 0.5] and [0.25, 0.25, 0.625, 0.75]
        _rec("p1", "phrase_grounding", "nodule", boxes=[_box([32, 16, 96, 64], "nodule")]),
        _rec("p2", "phrase_grounding", "nodule", boxes=[_box([64, 32, 160, 96], "nodule")]),
        _rec("p3", "phrase_grounding", "mass", boxes=[_box([128, 64, 256, 128], "mass")]),
        # anatomy: left lung [0, 0, 1, 0.5], [0, 0.5, 1, 1], [0, 0, 1, 1] (on b.png); the ids
        # draw the prompt kinds locate, locate, locate_describe, then locate (checked below)
        _rec("t0", AGR, "x", "b.png", boxes=[_box([0, 0, 128, 128], "", "left lung")]),
        _rec("t3", AGR, "x", "b.png", boxes=[_box([0, 128, 128, 256], "", "left lung")]),
        _rec(
            "t1", AGR, "x", "b.png", boxes=[_box([0, 0, 128, 256], "small effusion", "left lung")]
        ),
        # right lung, three times "locate": the most frequent anatomy target of the source
        *(
            _rec(i, AGR, "x", "b.png", boxes=[_box([0, 0, 64, 256], "", "right lung")])
            for i in ("t5", "t6", "t7")
        ),
        # two regions in one record: each rendered (the loader's prompt chooses one of them)
        _rec(
            "m1",
            AGR,
            "x",
            "b.png",
            boxes=[_box([0, 0, 64, 64], "", "heart"), _box([64, 0, 128, 64], "", "aorta")],
        ),  # fmt: skip
        # reports: source s says "No acute findings." twice, r says "Cardiomegaly." once
        _rec("r1", "report", "No acute findings."),
        _rec("r2", "report", "Small effusion."),
        _rec("r3", "report", "No acute findings."),
        _rec("r4", "report", "Cardiomegaly.", source="r"),
        # VQA: "Is there a nodule?" yes, yes, no
        _rec("q1", "vqa", "yes", prompt="Is there a nodule?"),
        _rec("q2", "vqa", "no", prompt="Is there a nodule?"),
        _rec("q3", "vqa", "yes", prompt="Is there a nodule?"),
        _rec("q4", "vqa", "no", prompt="Is the heart enlarged?"),
        # another split: never counted
        _rec("v1", "report", "Pneumothorax.", split="validate"),
        _rec("v2", "report", "Pneumothorax.", split="validate"),
        _rec("v3", "report", "Pneumothorax.", split="validate"),
    ]
    path = root / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _row(id: str, task: str, prompt: str, reference: str, **extra: Any) -> dict[str, Any]:
    row = {"id": id, "source": "s", "task": task, "prediction": "", "reference": reference,
           "reference_boxes": [], "box_format": "xyxy", "category": None, "anatomy": None,
           "phrase": None, "prompt": prompt}  # fmt: skip
    return {**row, **extra}


NODULE = [0.1875, 0.1875, 0.5, 0.625]  # the mean of the two nodule boxes
LEFT_LUNG = [0.0, 1 / 6, 1.0, 5 / 6]  # the mean of the three left lung boxes
TASK_PG = [(0.125 + 0.25 + 0.5) / 3, (0.125 + 0.25 + 0.5) / 3, (0.375 + 0.625 + 1) / 3,
           (0.5 + 0.75 + 1) / 3]  # fmt: skip
PG, LUNG = "phrase_grounding", {"anatomy": "left lung", "category": "left lung"}
WHOLE = {"reference_boxes": [[0.0, 0.0, 1.0, 1.0]]}


def eval_rows() -> list[dict[str, Any]]:
    nodule = {"phrase": "nodule", "category": "nodule", "reference_boxes": [[0.25, 0.25, 0.5, 0.5]]}
    cyst = {"phrase": "cyst", "category": "cyst", "reference_boxes": [[0.1, 0.1, 0.2, 0.2]]}
    located = "Location of the left lung: [0, 0, 1, 1]"
    described = f"{located}. Description: No acute findings."
    return [
        _row("e1", PG, "Ground the phrase: nodule", "nodule: [0.25, 0.25, 0.5, 0.5]", **nodule),
        _row("e2", PG, "Ground the phrase: cyst", "cyst: [0.1, 0.1, 0.2, 0.2]", **cyst),
        _row("e3", AGR, "Locate the left lung.", located, **LUNG, **WHOLE),
        _row("e4", AGR, "Locate and describe the left lung.", described, **LUNG, **WHOLE),
        _row("e5", AGR, "Describe the left lung.", "Description of the left lung: Normal.", **LUNG),
        _row("e6", "report", "Generate a report.", "No acute findings."),
        _row("e7", "report", "Generate a report.", "Cardiomegaly.", source="r"),
        _row("e8", "report", "Generate a report.", "Clear lungs.", source="unseen"),
        _row("e9", "vqa", "Is there a nodule?", "no"),
        _row("e10", "vqa", "Is the heart enlarged?", "no"),
    ]


def test_anatomy_records_draw_the_prompt_kinds_the_cases_assume(train_manifest: Path) -> None:
    # the loader's choices are keyed by (seed, epoch, id): the baseline renders at seed 0, epoch 0
    ds = ga.ManifestDataset(train_manifest, image_size=(64, 64), channels=1)
    ids = ds.column("id")
    batch = ds.load_batch([ids.index(i) for i in ("t0", "t3", "t1", "t5", "t6", "t7")], epoch=0)
    assert batch["prompt_kind"] == ["locate", "locate", "locate_describe", *["locate"] * 3]


def test_mean_boxes_are_the_hand_computed_ones(train_manifest: Path) -> None:
    stats = training_stats([train_manifest], "train", "xyxy")
    assert stats.records == 18  # the validate split is not counted
    assert stats.mean_box(("phrase", "phrase_grounding", "nodule")) == pytest.approx(NODULE)
    assert stats.mean_box(("anatomy", AGR, "left lung")) == pytest.approx(LEFT_LUNG)
    assert stats.mean_box(("task", "phrase_grounding")) == pytest.approx(TASK_PG)
    assert stats.boxes_unmatched == 0
    assert stats.mean_box(("anatomy", AGR, "aorta")) == pytest.approx([0.5, 0.0, 1.0, 0.25])
    for region in ("heart", "aorta"):  # both regions of m1 have a target
        assert ("subject", AGR, region) in stats.targets, region


def test_prompt_only_predictions_are_the_hand_computed_ones(train_manifest: Path) -> None:
    stats = training_stats([train_manifest], "train", "xyxy")
    base = {r["id"]: r for r in prompt_only_rows(eval_rows(), {"xyxy": stats})}
    xyxy = lambda b: render_boxes([b], "xyxy")  # noqa: E731
    assert base["e1"]["prediction"] == f"nodule: {xyxy(NODULE)}"
    assert base["e1"]["prediction"] == "nodule: [0.1875, 0.1875, 0.5000, 0.6250]"
    assert base["e1"]["baseline"] == {"text_from": "source_prompt", "box_from": "phrase"}
    # an unseen phrase: the most frequent target of the task (nodule's), the task's mean box
    assert base["e2"]["prediction"] == f"nodule: {xyxy(TASK_PG)}"
    assert base["e2"]["baseline"] == {"text_from": "source_task", "box_from": "task"}
    assert base["e3"]["prediction"] == f"Location of the left lung: {xyxy(LEFT_LUNG)}"
    assert base["e3"]["baseline"]["text_from"] == "source_prompt"
    assert base["e4"]["prediction"] == (
        f"Location of the left lung: {xyxy(LEFT_LUNG)}. Description: small effusion"
    )
    # no training sample drew "describe": the most frequent target about the left lung, not the
    # source's most frequent anatomy target (about the right lung)
    assert base["e5"]["prediction"] == f"Location of the left lung: {xyxy(LEFT_LUNG)}"
    assert base["e5"]["baseline"]["text_from"] == "subject"
    assert base["e6"]["prediction"] == "No acute findings."  # 2 of 3 reports of source s
    assert base["e7"]["prediction"] == "Cardiomegaly."  # source r's only report
    assert base["e8"]["prediction"] == "No acute findings."  # unseen source: every source's
    assert base["e8"]["baseline"]["text_from"] == "prompt"
    assert base["e9"]["prediction"] == "yes"  # 2 yes, 1 no
    assert base["e10"]["prediction"] == "no"
    assert base["e6"]["baseline"]["box_from"] is None  # no box in a report
    kept = {k: v for k, v in base["e1"].items() if k not in ("prediction", "baseline")}
    assert kept == {k: v for k, v in eval_rows()[0].items() if k != "prediction"}


def test_boxes_are_rendered_in_the_rows_box_format(train_manifest: Path) -> None:
    stats = training_stats([train_manifest], "train", "cure")
    row = {**eval_rows()[0], "box_format": "cure"}
    (base,) = prompt_only_rows([row], stats)
    # [cx, cy, w, h] of the mean nodule box, 2 decimals
    assert base["prediction"] == "nodule: [0.34,0.41,0.31,0.44]"
    np.testing.assert_allclose(
        parse_boxes(base["prediction"], "cure"), [[0.185, 0.19, 0.495, 0.63]], atol=1e-12
    )


def test_grounding_iou_averages_phrase_and_anatomy_rows() -> None:
    rows = [
        {"task": "phrase_grounding", "iou": 0.2},
        {"task": AGR, "iou": 0.6},
        {"task": AGR, "iou": None},  # no reference boxes: left out
        {"task": "grounded_report", "iou": 1.0},  # not a grounding task
    ]
    assert grounding_iou(rows) == pytest.approx(0.4)
    assert grounding_iou([{"task": "report", "iou": None}]) is None


def test_cli_reports_the_baselines_beside_the_model(
    train_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = [dict(r) for r in eval_rows()]
    model[0]["prediction"] = "nodule: [0.25, 0.25, 0.5, 0.5]"  # a perfect box
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in model))
    blank = [dict(r, prediction="No acute findings.") for r in eval_rows()[:6]]
    blank_file = tmp_path / "blank.jsonl"
    blank_file.write_text("".join(json.dumps(r) + "\n" for r in blank))
    out, po = tmp_path / "m.json", tmp_path / "prompt_only.jsonl"
    argv = ["evaluate", str(preds), "--out", str(out), "--train-manifest", str(train_manifest),
            "--baseline-predictions", f"blank={blank_file}",
            "--prompt-only-out", str(po)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(out.read_text())
    assert set(summary["baselines"]) == {"prompt_only", "blank"}
    prompt_only = summary["baselines"]["prompt_only"]
    assert set(prompt_only) >= {"overall", "sources", "categories", "grounding_iou"}
    assert prompt_only["overall"]["n"] == len(model)
    # source s has two phrase rows with boxes (e1, e2) and two anatomy rows (e3, e4):
    # e1: the mean nodule box [0.1875, 0.1875, 0.5, 0.625] contains the reference
    # [0.25, 0.25, 0.5, 0.5]: IoU = 0.25^2 / (0.3125 x 0.4375) = 16/35
    e1 = 0.25 * 0.25 / (0.3125 * 0.4375)
    assert e1 == pytest.approx(16 / 35)
    # e2: the task's mean box [0.29, 0.29, 0.67, 0.75] misses [0.1, 0.1, 0.2, 0.2]: IoU 0
    # e3, e4: the mean left lung box [0, 1/6, 1, 5/6] (4 decimals) inside [0, 0, 1, 1]
    lung = parse_boxes(render_boxes([LEFT_LUNG], "xyxy"), "xyxy")[0]
    e3 = (lung[2] - lung[0]) * (lung[3] - lung[1])
    assert e3 == pytest.approx(0.8333 - 0.1667)
    assert prompt_only["sources"]["s"]["n_iou"] == 4
    assert prompt_only["sources"]["s"]["iou"] == pytest.approx((e1 + 0 + 2 * e3) / 4)
    assert prompt_only["grounding_iou"] == pytest.approx((e1 + 0 + 2 * e3) / 4)
    per = {r["id"]: r for r in evaluate_rows([json.loads(x) for x in po.read_text().splitlines()])}
    assert per["e1"]["iou"] == pytest.approx(16 / 35)
    assert per["e6"]["rougeL"] == 1.0 and per["e9"]["rougeL"] == 0.0  # "yes" vs "no"
    assert summary["overall"]["n"] == len(model)
    assert summary["sources"]["s"]["n_iou"] == 4
    assert summary["sources"]["s"]["iou"] == pytest.approx(1 / 4)  # e1 perfect, the rest empty
    assert summary["baselines"]["blank"]["overall"]["n"] == 6
    assert summary["baselines"]["blank"]["missing"] == 4
    levels = {"prompt": 1, "source_prompt": 7, "source_task": 1, "subject": 1}  # e8; e2; e5
    assert prompt_only["predictions_from"]["text"] == levels
    table = capsys.readouterr().out
    assert "prompt_only" in table and "blank" in table and "grounding IoU" in table


def test_cli_baseline_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps(eval_rows()[5]) + "\n")
    out = str(tmp_path / "m.json")
    assert main(["evaluate", str(preds), "--out", out, "--baseline-predictions", "x"]) == 2
    assert "expected NAME=FILE" in capsys.readouterr().err
    missing = str(tmp_path / "nope.jsonl")
    argv = ["evaluate", str(preds), "--out", out, "--baseline-predictions", f"b={missing}"]
    assert main(argv) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    argv = ["evaluate", str(preds), "--out", out, "--prompt-only-out", str(tmp_path / "p.jsonl")]
    assert main(argv) == 2
    assert "needs --train-manifest" in capsys.readouterr().err
