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
included. Text is scored as generated (``--text-clean none``, the default) or cleaned as CURE's
training validation cleans it (``--text-clean cure``: boxes out, the description part of
anatomy targets kept), with gradatim's metric settings or CURE's (``--text-metrics cure``: corpus
BLEU-4, ROUGE-L without stemming); ``gradatim.evaluate.text`` has both. ``curriculum_metrics``
gives ``ErrorAwareCurriculum.update``'s input from the table.
``grounding_iou`` is the mean IoU over phrase-grounding and anatomy-grounded rows together.

Model output is untrusted. A prediction with more than ``MAX_PREDICTED_BOXES`` (1,000) boxes, with
a box coordinate that is not a finite number (a 400-digit number), or longer than
``MAX_PREDICTION_CHARS`` (1,000,000 characters) scores as unparsable: IoU 0 (as a prediction
without boxes), and, over the length limit, BLEU-4 and ROUGE-L 0 as well; the row's
``unparsable`` says why and each group counts them (``n_unparsable``). A bad reference row (a
missing or non-string field, reference boxes that are not lists of four finite numbers with
``x1 <= x2`` and ``y1 <= y2``, more than ``MAX_PREDICTED_BOXES`` of them, an unknown or
non-string ``box_format``, text that is not UTF-8, JSON nested too deep or with a huge integer) is
a one-line error naming the file, the line and the field.

Baselines (``gradatim.evaluate.baselines``): with ``--train-manifest M`` the prompt-only baseline
(no image, no model: training boxes and targets of the same prompt) is scored on the same rows;
``--baseline-predictions NAME=FILE`` scores other prediction files of the same rows (the model on
blank images, the untrained model). Each goes under ``"baselines"`` with the model's structure,
and a table compares IoU and ROUGE-L per source.
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

import numpy as np

from gradatim import cli_paths
from gradatim.errors import InvalidArgumentError
from gradatim.evaluate.baselines import grounding_iou
from gradatim.evaluate.clinical import SCORERS, score_clinical
from gradatim.evaluate.hallucination import is_normal
from gradatim.evaluate.iou import union_iou
from gradatim.evaluate.text import (
    TEXT_CLEAN,
    TEXT_METRICS,
    TEXT_METRICS_SETTINGS,
    bleu_stats,
    clean_text,
    corpus_bleu,
    rouge_l,
)

__all__ = [
    "evaluate_rows",
    "summarize",
    "curriculum_metrics",
    "read_predictions",
    "comparison_table",
    "MAX_PREDICTED_BOXES",
    "MAX_PREDICTION_CHARS",
    "add_parser",
]

REQUIRED = ("id", "source", "task", "prediction", "reference")

#: The most boxes read from one prediction (and allowed in one row's ``reference_boxes``): a
#: prediction with more scores as unparsable (IoU 0). Generated grounding answers carry a few.
MAX_PREDICTED_BOXES = 1000
#: The longest prediction scored: a longer one scores as unparsable (IoU, BLEU-4, ROUGE-L 0).
MAX_PREDICTION_CHARS = 1_000_000
BOX_FORMATS = ("cure", "maira2", "loc", "xyxy")


def _row_problem(row: Any) -> tuple[str | None, str] | None:
    """What is wrong with a prediction row, as ``(field, reason)``, or None: the fields the
    evaluation reads must have their types, reference boxes must be boxes."""
    if not isinstance(row, dict):
        return None, "expected an object"
    for key in REQUIRED:
        if not isinstance(row.get(key), str):
            return key, "expected a string"
    for key in ("category", "anatomy"):
        if row.get(key) is not None and not isinstance(row[key], str):
            return key, "expected a string or null"
    fmt = row.get("box_format", "cure")
    if not isinstance(fmt, str) or fmt not in BOX_FORMATS:
        shown = repr(fmt)[:40] if isinstance(fmt, str) else type(fmt).__name__
        return "box_format", f"expected one of {', '.join(BOX_FORMATS)}, got {shown}"
    boxes = row.get("reference_boxes")
    if boxes is None:
        return None
    if not isinstance(boxes, list):
        return "reference_boxes", f"expected a list of boxes, got {type(boxes).__name__}"
    if len(boxes) > MAX_PREDICTED_BOXES:
        return "reference_boxes", f"{len(boxes)} boxes, more than {MAX_PREDICTED_BOXES}"
    for i, box in enumerate(boxes):
        where = f"reference_boxes[{i}]"
        if not isinstance(box, list) or len(box) != 4:
            return where, "expected [x1, y1, x2, y2]"
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            return where, "expected four numbers"
        try:
            values = [float(v) for v in box]
        except OverflowError:
            return where, "a coordinate is too large"
        if not all(math.isfinite(v) for v in values):
            return where, "expected finite numbers"
        if values[2] < values[0] or values[3] < values[1]:
            return where, "needs x1 <= x2 and y1 <= y2"
    return None


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The prediction rows of a JSONL file; a bad row raises :class:`InvalidArgumentError` (a
    ``ValueError``) naming the file, line and field (see the module docstring). Only a regular
    file is read."""
    from gradatim.manifest.common import not_regular

    problem = not_regular(path)
    if problem is not None:
        raise InvalidArgumentError(f"{path}: {problem}")
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InvalidArgumentError(f"{path} line {line}: not UTF-8 text") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidArgumentError(f"{path} line {n}: not JSON ({e.msg})") from None
        except RecursionError:
            raise InvalidArgumentError(f"{path} line {n}: not JSON (nested too deep)") from None
        except ValueError as e:  # an integer of more digits than Python converts
            reason = " ".join(str(e).split())[:120]
            raise InvalidArgumentError(f"{path} line {n}: not JSON ({reason})") from None
        found = _row_problem(row)
        if found is not None:
            field, reason = found
            where = f"{path} line {n}" + (f", field '{field}'" if field else "")
            raise InvalidArgumentError(f"{where}: {reason}")
        rows.append(row)
    return rows


def _predicted_boxes(text: str, box_format: str) -> tuple[list[list[float]], str | None]:
    """The boxes of a prediction, or no boxes and why the prediction is unparsable: more than
    :data:`MAX_PREDICTED_BOXES`, or a coordinate that is not a finite number."""
    from gradatim.data import parse_boxes

    compact = re.sub(r">\s+<", "><", text)  # special tokens decoded with spaces between them
    found = parse_boxes(compact, box_format)
    if len(found) > MAX_PREDICTED_BOXES:
        return [], f"{len(found)} boxes, more than {MAX_PREDICTED_BOXES}"
    if not np.isfinite(found).all():
        return [], "a box coordinate is not a finite number"
    return found.tolist(), None


def _description(text: str) -> str:
    """The description part of an anatomy-grounded target or prediction."""
    # re.search(r"Description[^:]*:\s*(.*)$", text, flags=re.S), in time linear in the text
    start = text.find("Description")
    colon = text.find(":", start + len("Description")) if start >= 0 else -1
    return text[colon + 1 :].lstrip() if colon >= 0 else text


def evaluate_rows(
    rows: Iterable[Mapping[str, Any]],
    text_metric: str = "rougeL",
    *,
    text_clean: str = "none",
    text_metrics: str = "gradatim",
) -> list[dict[str, Any]]:
    """Per-sample metrics: ``iou`` (None without reference boxes), ``bleu4``, ``rougeL``,
    ``text_score`` (= ``text_metric``) and ``hallucinated`` (None unless the reference describes
    a normal region of an anatomy-grounded sample). Text is scored after ``text_clean``
    (``"none"`` | ``"cure"``) with ``text_metrics`` settings (``"gradatim"`` | ``"cure"``; see
    ``gradatim.evaluate.text``); with ``"cure"`` a row also carries ``bleu_stats``, from which
    :func:`summarize` computes corpus BLEU per group. IoU always reads the boxes of the text as
    generated."""
    if text_metric not in TEXT_METRICS:
        raise ValueError(f"text_metric must be one of {', '.join(TEXT_METRICS)}")
    if text_clean not in TEXT_CLEAN:
        raise ValueError(f"text_clean must be one of {', '.join(TEXT_CLEAN)}")
    if text_metrics not in TEXT_METRICS_SETTINGS:
        raise ValueError(f"text_metrics must be one of {', '.join(TEXT_METRICS_SETTINGS)}")
    out = []
    for k, row in enumerate(rows):
        found = _row_problem(row)
        if found is not None:
            field, reason = found
            where = f"row {k + 1}" + (f", field '{field}'" if field else "")
            raise InvalidArgumentError(f"{where}: {reason}")
        pred, ref = row["prediction"], row["reference"]
        unparsable = None
        if len(pred) > MAX_PREDICTION_CHARS:
            unparsable = f"{len(pred)} characters, more than {MAX_PREDICTION_CHARS}"
            pred = ""
        p, r = clean_text(pred, text_clean), clean_text(ref, text_clean)
        extra: dict[str, Any] = {}
        if text_metrics == "cure":
            stats = bleu_stats(p, r)
            scores = {"bleu4": corpus_bleu([stats]), "rougeL": rouge_l(p, r, stem=False)}
            extra["bleu_stats"] = stats
        elif unparsable is not None:
            scores = dict.fromkeys(TEXT_METRICS, 0.0)
        else:
            scores = {name: fn(p, r) for name, fn in TEXT_METRICS.items()}
        boxes = row.get("reference_boxes") or []
        predicted, why = _predicted_boxes(pred, row.get("box_format", "cure"))
        unparsable = unparsable or why
        iou = union_iou(predicted, boxes)
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
                "unparsable": unparsable,
                **extra,
            }
        )
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _group(per_sample: list[dict[str, Any]], text_metric: str = "rougeL") -> dict[str, Any]:
    ious = [r["iou"] for r in per_sample if r["iou"] is not None]
    bleu = _mean([r["bleu4"] for r in per_sample])
    if per_sample and all("bleu_stats" in r for r in per_sample):  # CURE's corpus BLEU
        bleu = corpus_bleu(r["bleu_stats"] for r in per_sample)
    text = _mean([r["text_score"] for r in per_sample])
    return {
        "n": len(per_sample),
        "n_iou": len(ious),
        "n_unparsable": sum(r.get("unparsable") is not None for r in per_sample),
        "iou": _mean(ious),
        "bleu4": bleu,
        "rougeL": _mean([r["rougeL"] for r in per_sample]),
        "text_score": bleu if text_metric == "bleu4" else text,
    }


def summarize(
    per_sample: list[dict[str, Any]],
    text_metric: str = "rougeL",
    *,
    text_clean: str = "none",
    text_metrics: str = "gradatim",
) -> dict[str, Any]:
    """Overall, per-source and per-(source, category) means (BLEU-4 over each group as a corpus
    when the rows carry ``bleu_stats``), and hallucination per anatomy. ``text_clean`` and
    ``text_metrics`` only name the conventions the rows were scored with."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_category: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    anatomy: dict[str, list[bool]] = defaultdict(list)
    for r in per_sample:
        by_source[r["source"]].append(r)
        if r["category"] is not None:
            by_category[(r["source"], str(r["category"]))].append(r)
        if r["hallucinated"] is not None:
            anatomy[str(r["anatomy"])].append(bool(r["hallucinated"]))
    tm = text_metric
    return {
        "text_metric": text_metric,
        "text_clean": text_clean,
        "text_metrics": text_metrics,
        "overall": _group(per_sample, tm),
        "grounding_iou": grounding_iou(per_sample),
        "sources": {s: _group(rs, tm) for s, rs in sorted(by_source.items())},
        "categories": {f"{s}/{c}": _group(rs, tm) for (s, c), rs in sorted(by_category.items())},
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
    p.add_argument(
        "--text-clean",
        default="none",
        choices=TEXT_CLEAN,
        help="score the text as generated (none, the default) or as CURE's validation cleans it "
        "(cure: boxes removed, the description part of anatomy targets kept)",
    )
    p.add_argument(
        "--text-metrics",
        default="gradatim",
        choices=TEXT_METRICS_SETTINGS,
        help="gradatim (sacrebleu sentence BLEU-4, stemmed ROUGE-L; the default) or cure "
        "(CURE's torchmetrics settings: corpus BLEU-4, ROUGE-L without stemming)",
    )
    p.add_argument("--per-sample", type=Path, help="also write per-sample metrics as JSON lines")
    p.add_argument(
        "--clinical",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="a learned clinical scorer from a local model folder (safetensors): "
        "chexbert=DIR, radgraph=DIR, cxrfe=DIR; repeatable (docs/training.md)",
    )
    p.add_argument(
        "--train-manifest",
        action="append",
        default=[],
        type=Path,
        metavar="M",
        help="a training manifest (repeatable): also score the prompt-only baseline (the mean "
        "training box and most frequent training target of each row's prompt; no image, no "
        "model) on the same rows",
    )
    p.add_argument(
        "--train-split", default="train", help="the training manifests' split (default: train)"
    )
    p.add_argument(
        "--baseline-predictions",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="another prediction file of the same rows to report as baseline NAME (e.g. "
        "blank=FILE from gradatim predict --blank-images); repeatable",
    )
    p.add_argument(
        "--prompt-only-out", type=Path, help="also write the prompt-only predictions (JSON lines)"
    )
    p.set_defaults(func=_run)
    cli_paths.declare(
        p,
        inputs=["predictions", "train_manifest"],
        outputs=["out", "csv", "per_sample", "prompt_only_out"],
    )


def _clinical_arg(value: str) -> tuple[str, str]:
    name, sep, folder = value.partition("=")
    if not sep or name not in SCORERS or not folder:
        raise cli_paths.CliError(
            f"--clinical {value!r}: expected NAME=DIR with NAME one of {', '.join(SCORERS)}"
        )
    return name, folder


def _baseline_arg(value: str) -> tuple[str, Path]:
    name, sep, file = value.partition("=")
    if not sep or not name or not file:
        raise cli_paths.CliError(f"--baseline-predictions {value!r}: expected NAME=FILE")
    if not Path(file).is_file():
        raise cli_paths.CliError(f"{file}: no such file")
    return name, Path(file)


def _baselines(
    args: argparse.Namespace, rows: list[dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """``{name: summary}`` of every requested baseline on the model's rows, and the prompt-only
    rows (None without ``--train-manifest``)."""
    from gradatim.evaluate import baselines

    named = [_baseline_arg(a) for a in args.baseline_predictions]
    names = [n for n, _ in named]
    taken = {"model", *(["prompt_only"] if args.train_manifest else [])}
    for name in taken.intersection(names):
        raise cli_paths.CliError(f"--baseline-predictions: the name {name} is taken")
    if len(set(names)) != len(names):
        raise cli_paths.CliError("--baseline-predictions: a name appears twice")
    out: dict[str, Any] = {}
    prompt_only = None
    if args.train_manifest:
        formats = sorted({str(r.get("box_format", "cure")) for r in rows})
        stats = {
            f: baselines.training_stats(args.train_manifest, args.train_split, f) for f in formats
        }
        prompt_only = baselines.prompt_only_rows(rows, stats)
        summary = _scored(prompt_only, args)
        summary["train_manifests"] = [str(m) for m in args.train_manifest]
        summary["train_split"] = args.train_split
        summary["train_records"] = next(iter(stats.values())).records if stats else 0
        summary["predictions_from"] = baselines.provenance(prompt_only)
        out["prompt_only"] = summary
    ids = {r["id"] for r in rows}
    for name, path in named:
        theirs = [r for r in read_predictions(path) if r["id"] in ids]
        summary = _scored(theirs, args)
        summary["predictions"] = str(path)
        summary["missing"] = len(ids - {r["id"] for r in theirs})
        out[name] = summary
    return out, prompt_only


def comparison_table(summary: Mapping[str, Any]) -> str:
    """The model beside its baselines: IoU and ROUGE-L per source, overall, and the grounding
    IoU (phrase + anatomy grounding)."""
    columns = {"model": summary, **summary.get("baselines", {})}
    fmt = lambda v: "-" if v is None or math.isnan(v) else f"{v:.3f}"  # noqa: E731
    names = ["all", *summary["sources"]]
    width = max(len(n) for n in [*names, "grounding IoU"]) + 2
    cell = max(16, *(len(c) + 2 for c in columns))
    lines = [
        " " * width + "".join(c.ljust(cell) for c in columns),
        " " * width + "".join("IoU    ROUGE-L".ljust(cell) for _ in columns),
    ]
    for name in names:
        line = name.ljust(width)
        for s in columns.values():
            g = s["overall"] if name == "all" else s["sources"].get(name)
            text = "-" if g is None else f"{fmt(g['iou']).ljust(7)}{fmt(g['rougeL'])}"
            line += text.ljust(cell)
        lines.append(line.rstrip())
    line = "grounding IoU".ljust(width)
    for s in columns.values():
        line += fmt(s.get("grounding_iou")).ljust(cell)
    lines.append(line.rstrip())
    return "\n".join(lines)


def _conventions(args: argparse.Namespace) -> dict[str, str]:
    return {"text_clean": args.text_clean, "text_metrics": args.text_metrics}


def _scored(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    conv = _conventions(args)
    return summarize(evaluate_rows(rows, args.text_metric, **conv), args.text_metric, **conv)


def _run(args: argparse.Namespace) -> int:
    if args.prompt_only_out and not args.train_manifest:
        raise cli_paths.CliError("--prompt-only-out needs --train-manifest")
    rows = read_predictions(args.predictions)
    per_sample = evaluate_rows(rows, args.text_metric, **_conventions(args))
    summary = summarize(per_sample, args.text_metric, **_conventions(args))
    folders = dict(_clinical_arg(a) for a in args.clinical)
    baselines, prompt_only = _baselines(args, rows)
    summary["clinical_scorers"] = score_clinical(rows, folders)
    if baselines:
        summary["baselines"] = baselines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2, allow_nan=False))
    if args.csv:
        _write_csv(summary, args.csv)
    if args.per_sample:
        args.per_sample.write_text("".join(json.dumps(r) + "\n" for r in per_sample))
    if args.prompt_only_out and prompt_only is not None:
        args.prompt_only_out.write_text("".join(json.dumps(r) + "\n" for r in prompt_only))
    o = summary["overall"]
    fmt = lambda v: "-" if v is None or math.isnan(v) else f"{v:.3f}"  # noqa: E731
    print(
        f"{o['n']} samples: IoU {fmt(o['iou'])} ({o['n_iou']} with boxes), BLEU-4 "
        f"{fmt(o['bleu4'])}, ROUGE-L {fmt(o['rougeL'])} -> {args.out}"
    )
    if baselines:
        print(comparison_table(summary))
    for name, result in summary["clinical_scorers"].items():
        if "not_computed" in result and name in folders:
            print(f"clinical scorer {name} not computed: {result['not_computed']}")
    return 0
