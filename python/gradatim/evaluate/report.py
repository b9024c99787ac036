"""``gradatim evaluate``: metrics of generated text against references, per sample and per
source / category, plus hallucination per anatomy; JSON and CSV out.

Input: JSON lines, one generated sample each::

    {"id": "...", "source": "vindr", "task": "phrase_grounding", "category": "nodule",
     "anatomy": null, "prediction": "nodule: [0.31,0.42,0.10,0.08]",
     "reference": "nodule: [0.30,0.40,0.12,0.08]", "reference_boxes": [[x1, y1, x2, y2], ...],
     "box_format": "cure"}

``reference_boxes`` are normalised ``[x1, y1, x2, y2]`` (the frame every box format renders); the
predicted boxes are parsed from ``prediction`` with the sample's ``box_format`` (whitespace between
tokens tolerated). Conventions (CURE's evaluation code): IoU of the unions, samples without
reference boxes left out of IoU; the text score is computed on every row, phrase grounding
included. ``curriculum_metrics`` gives ``ErrorAwareCurriculum.update``'s input from the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from gradatim import cli_paths
from gradatim.errors import InvalidArgumentError
from gradatim.evaluate.clinical import SCORERS, score_clinical
from gradatim.evaluate.hallucination import is_normal
from gradatim.evaluate.iou import union_iou
from gradatim.evaluate.text import TEXT_METRICS

__all__ = ["evaluate_rows", "summarize", "curriculum_metrics", "read_predictions", "add_parser"]

REQUIRED = ("id", "source", "task", "prediction", "reference")


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The prediction rows of a JSONL file; a bad row raises :class:`InvalidArgumentError` (a
    ``ValueError``) naming the file, line and field."""
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"{path} line {n}: not JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise InvalidArgumentError(f"{path} line {n}: expected an object")
        for key in REQUIRED:
            if not isinstance(row.get(key), str):
                raise InvalidArgumentError(f"{path} line {n}, field '{key}': expected a string")
        rows.append(row)
    return rows


def _predicted_boxes(text: str, box_format: str) -> list[list[float]]:
    from gradatim.data import parse_boxes

    compact = re.sub(r">\s+<", "><", text)  # special tokens decoded with spaces between them
    return [list(b) for b in parse_boxes(compact, box_format)]


def _description(text: str) -> str:
    """The description part of an anatomy-grounded target or prediction."""
    match = re.search(r"Description[^:]*:\s*(.*)$", text, flags=re.S)
    return match.group(1) if match else text


def evaluate_rows(
    rows: Iterable[Mapping[str, Any]], text_metric: str = "rougeL"
) -> list[dict[str, Any]]:
    """Per-sample metrics: ``iou`` (None without reference boxes), ``bleu4``, ``rougeL``,
    ``text_score`` (= ``text_metric``) and ``hallucinated`` (None unless the reference describes
    a normal region of an anatomy-grounded sample)."""
    if text_metric not in TEXT_METRICS:
        raise ValueError(f"text_metric must be one of {', '.join(TEXT_METRICS)}")
    out = []
    for row in rows:
        pred, ref = str(row["prediction"]), str(row["reference"])
        scores = {name: fn(pred, ref) for name, fn in TEXT_METRICS.items()}
        boxes = row.get("reference_boxes") or []
        iou = union_iou(_predicted_boxes(pred, row.get("box_format", "cure")), boxes)
        hallucinated = None
        if row.get("anatomy") and row["task"] == "anatomy_grounded_report":
            if is_normal(_description(ref)):
                hallucinated = not is_normal(_description(pred))
        out.append(
            {
                "id": row["id"],
                "source": row["source"],
                "task": row["task"],
                "category": row.get("category"),
                "anatomy": row.get("anatomy"),
                "iou": iou,
                **scores,
                "text_score": scores[text_metric],
                "hallucinated": hallucinated,
            }
        )
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(per_sample: list[dict[str, Any]]) -> dict[str, Any]:
    ious = [r["iou"] for r in per_sample if r["iou"] is not None]
    return {
        "n": len(per_sample),
        "n_iou": len(ious),
        "iou": _mean(ious),
        "bleu4": _mean([r["bleu4"] for r in per_sample]),
        "rougeL": _mean([r["rougeL"] for r in per_sample]),
        "text_score": _mean([r["text_score"] for r in per_sample]),
    }


def summarize(per_sample: list[dict[str, Any]], text_metric: str = "rougeL") -> dict[str, Any]:
    """Overall, per-source and per-(source, category) means, and hallucination per anatomy."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_category: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    anatomy: dict[str, list[bool]] = defaultdict(list)
    for r in per_sample:
        by_source[r["source"]].append(r)
        if r["category"] is not None:
            by_category[(r["source"], str(r["category"]))].append(r)
        if r["hallucinated"] is not None:
            anatomy[str(r["anatomy"])].append(bool(r["hallucinated"]))
    return {
        "text_metric": text_metric,
        "overall": _group(per_sample),
        "sources": {s: _group(rs) for s, rs in sorted(by_source.items())},
        "categories": {f"{s}/{c}": _group(rs) for (s, c), rs in sorted(by_category.items())},
        "hallucination": {
            a: {"normal_references": len(v), "hallucinated": sum(v), "rate": sum(v) / len(v)}
            for a, v in sorted(anatomy.items())
        },
    }


def curriculum_metrics(summary: Mapping[str, Any], level: str = "sources") -> dict[str, dict]:
    """``{name: {"iou": x, "text": y}}`` for ``ErrorAwareCurriculum.update`` / ``cure_weights``:
    IoU only where some sample had reference boxes, the text score always."""
    out: dict[str, dict] = {}
    for name, group in summary[level].items():
        metrics = {"text": group["text_score"]}
        if group["iou"] is not None:
            metrics["iou"] = group["iou"]
        out[name] = metrics
    return out


def _write_csv(summary: Mapping[str, Any], path: Path) -> None:
    columns = ["level", "name", "n", "n_iou", "iou", "bleu4", "rougeL", "text_score"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for level in ("overall", "sources", "categories"):
            groups = {"all": summary["overall"]} if level == "overall" else summary[level]
            for name, g in groups.items():
                w.writerow([level, name, *(g[c] for c in columns[2:])])


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evaluate",
        help="grounding IoU, BLEU-4, ROUGE-L and hallucination of generated text",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("predictions", type=Path, help="JSON lines of generated samples")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--csv", type=Path, help="also write the per-source/category table as CSV")
    p.add_argument("--text-metric", default="rougeL", choices=sorted(TEXT_METRICS))
    p.add_argument("--per-sample", type=Path, help="also write per-sample metrics as JSON lines")
    p.add_argument(
        "--clinical",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a learned clinical scorer from a local model folder (safetensors): "
        "chexbert=DIR, radgraph=DIR, cxrfe=DIR; repeatable (docs/training.md)",
    )
    p.set_defaults(func=_run)
    cli_paths.declare(p, inputs=["predictions"], outputs=["out", "csv", "per_sample"])


def _clinical_arg(value: str) -> tuple[str, str]:
    name, sep, folder = value.partition("=")
    if not sep or name not in SCORERS or not folder:
        raise cli_paths.CliError(
            f"--clinical {value!r}: expected NAME=DIR with NAME one of {', '.join(SCORERS)}"
        )
    return name, folder


def _run(args: argparse.Namespace) -> int:
    per_sample = evaluate_rows(read_predictions(args.predictions), args.text_metric)
    summary = summarize(per_sample, args.text_metric)
    folders = dict(_clinical_arg(a) for a in args.clinical)
    summary["clinical_scorers"] = score_clinical(read_predictions(args.predictions), folders)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, allow_nan=False))
    if args.csv:
        _write_csv(summary, args.csv)
    if args.per_sample:
        args.per_sample.write_text("".join(json.dumps(r) + "\n" for r in per_sample))
    o = summary["overall"]
    fmt = lambda v: "-" if v is None or math.isnan(v) else f"{v:.3f}"  # noqa: E731
    print(
        f"{o['n']} samples: IoU {fmt(o['iou'])} ({o['n_iou']} with boxes), BLEU-4 "
        f"{fmt(o['bleu4'])}, ROUGE-L {fmt(o['rougeL'])} -> {args.out}"
    )
    for name, result in summary["clinical_scorers"].items():
        if "not_computed" in result and name in folders:
            print(f"clinical scorer {name} not computed: {result['not_computed']}")
    return 0
