"""Baselines for ``gradatim evaluate``: what a score means is what it beats.

The **prompt-only** baseline answers every evaluated row without the image and without a model,
from the training data alone:

- boxes: the mean normalised ``[x1, y1, x2, y2]`` training box of what the prompt asks about,
  among the training records of the same task: the phrase (phrase grounding), the region
  (anatomy-grounded reports); else the mean box of the task; else of every training box;
- text: the most frequent training target of the same prompt, from the same source where the
  source has that prompt (VQA: the majority answer to the same question; a report: the most
  frequent report of the source and task; an anatomy prompt: the most frequent target for that
  region and prompt kind), else of any source; else the most frequent target about the same
  phrase or region (another anatomy prompt kind); else of the source and task; else of the task.
  Targets are counted with their boxes taken out (the same report with other boxes counts as the
  same report); ties go to the first in manifest order.

The training targets are rendered by the loader itself (no augmentation, epoch 0; a record whose
prompt chooses among several phrases or regions once per choice), so prompts, templates and box
formats are exactly the evaluated rows'; the baseline's boxes are put where the chosen target has
its first boxes, rendered in the row's ``box_format``, and the rows are scored by the same
:func:`~gradatim.evaluate.report.evaluate_rows`: IoU and ROUGE-L are comparable with the model's.
Text depends neither on the image nor on box coordinates, so targets are rendered against a
one-pixel placeholder; boxes are normalised as the loader normalises the rows' reference boxes
(each training image with boxes is decoded once, at a small size).

Other baselines are prediction files of the same rows: the same model with blank images
(``gradatim predict --blank-images``), the untrained model, ... (``--baseline-predictions``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "TrainingStats",
    "training_stats",
    "prompt_only_rows",
    "grounding_iou",
    "strip_boxes",
    "GROUNDING_TASKS",
]

#: The tasks whose rows :func:`grounding_iou` averages.
GROUNDING_TASKS = ("phrase_grounding", "anatomy_grounded_report")

#: One box of each format, as ``gradatim.data.parse_boxes`` finds it (rust box_format.rs).
_BOX = {
    "cure": r"\[\s*[0-9.]+\s*,\s*[0-9.]+\s*,\s*[0-9.]+\s*,\s*[0-9.]+\s*\]",
    "xyxy": r"\[\s*[0-9.]+\s*,\s*[0-9.]+\s*,\s*[0-9.]+\s*,\s*[0-9.]+\s*\]",
    "maira2": r"<box><x\d+><y\d+><x\d+><y\d+></box>",
    "loc": r"<loc\d{4}><loc\d{4}><loc\d{4}><loc\d{4}>",
}
#: Stands for a run of boxes in a target with its boxes taken out.
SLOT = "\x00"

#: Keys of the target tables, most specific first: (source, task, prompt), (task, prompt),
#: (task, phrase or region), (source, task), (task).
TEXT_LEVELS = ("source_prompt", "prompt", "subject", "source_task", "task")


def _runs(box_format: str) -> re.Pattern[str]:
    box = _BOX.get(box_format)
    if box is None:
        raise ValueError(f"unknown box format {box_format!r} (known: {', '.join(_BOX)})")
    return re.compile(rf"(?:{box})(?:\s*(?:{box}))*")


def strip_boxes(text: str, box_format: str) -> str:
    """``text`` with each run of boxes (boxes separated by whitespace) replaced by :data:`SLOT`."""
    return _runs(box_format).sub(SLOT, text)


def grounding_iou(evaluated_rows: Iterable[Mapping[str, Any]]) -> float | None:
    """Mean union IoU over the evaluated rows (``evaluate_rows``' output) of phrase grounding and
    anatomy-grounded reports together that have reference boxes (``iou`` not None); None when
    there is none."""
    ious = [
        float(r["iou"])
        for r in evaluated_rows
        if r.get("task") in GROUNDING_TASKS and r.get("iou") is not None
    ]
    return sum(ious) / len(ious) if ious else None


@dataclass
class _Mean:
    total: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    n: int = 0

    def add(self, box: Sequence[float]) -> None:
        for i in range(4):
            self.total[i] += float(box[i])
        self.n += 1

    def value(self) -> list[float]:
        return [v / self.n for v in self.total]


@dataclass
class TrainingStats:
    """What the prompt-only baseline knows: mean boxes (``("phrase", task, phrase)``,
    ``("anatomy", task, region)``, ``("task", task)``, ``("all",)``) and, per level of
    :data:`TEXT_LEVELS`, the counts of box-less training targets (:data:`SLOT` for box runs)."""

    box_format: str
    boxes: dict[tuple[str, ...], _Mean] = field(default_factory=dict)
    targets: dict[tuple[str, ...], Counter[str]] = field(default_factory=dict)
    records: int = 0
    boxes_unmatched: int = 0  # records whose boxes the loader did not return one for one

    def mean_box(self, key: tuple[str, ...]) -> list[float] | None:
        m = self.boxes.get(key)
        return m.value() if m is not None and m.n else None

    def add_box(self, key: tuple[str, ...], box: Sequence[float]) -> None:
        self.boxes.setdefault(key, _Mean()).add(box)

    def add_target(
        self, source: str, task: str, prompt: str, target: str, subject: str | None = None
    ) -> None:
        skeleton = strip_boxes(target, self.box_format)
        for key in _text_keys(source, task, prompt, subject):
            self.targets.setdefault(key, Counter())[skeleton] += 1

    def most_frequent(
        self, source: str, task: str, prompt: str | None, subject: str | None = None
    ) -> tuple[str, str] | None:
        """``(skeleton, level)``: the most frequent training target at the most specific level
        that has one (ties: the first seen), or None."""
        for key in _text_keys(source, task, prompt, subject):
            counts = self.targets.get(key)
            if counts:
                return counts.most_common(1)[0][0], key[0]
        return None


def _text_keys(
    source: str, task: str, prompt: str | None, subject: str | None
) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = []
    if prompt is not None:
        keys += [("source_prompt", source, task, prompt), ("prompt", task, prompt)]
    if subject:
        keys.append(("subject", task, subject))
    return keys + [("source_task", source, task), ("task", task)]


def _subject(row: Mapping[str, Any]) -> str | None:
    """What a row's prompt asks about: the region (anatomy-grounded) or the phrase."""
    task = row["task"]
    if task == "anatomy_grounded_report":
        return row.get("anatomy") or None
    if task == "phrase_grounding":
        return row.get("phrase") or row.get("category") or None
    return None


def _box_keys(record: Mapping[str, Any]) -> list[tuple[str, ...] | None]:
    """Per box of a training record, its key: the phrase (phrase grounding, grounded reports) or
    the region (anatomy-grounded reports) the loader's targets render it under; None for a box
    no target renders."""
    task = str(record["task"])
    out: list[tuple[str, ...] | None] = []
    for b in record.get("boxes") or []:
        if task == "anatomy_grounded_report":
            out.append(("anatomy", task, b["anatomy"]) if b.get("anatomy") else None)
        elif task == "phrase_grounding":
            out.append(("phrase", task, b.get("phrase") or str(record["text"])))
        elif task == "grounded_report":
            out.append(("phrase", task, b["phrase"]) if b.get("phrase") else None)
        else:
            out.append(None)
    return out


def _placeholder(folder: str) -> str:
    import numpy as np

    from gradatim.image import encode_png

    path = os.path.join(folder, "placeholder.png")
    Path(path).write_bytes(encode_png(np.full((1, 1), 128, dtype=np.uint8)))
    return path


def _by_subject(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A record whose prompt chooses among several phrases (phrase grounding) or regions
    (anatomy-grounded) as one copy per choice, each with that choice's boxes only (ids
    ``<id>#<k>``), so every phrase and region is rendered; any other record as it is."""
    task, boxes = record["task"], record.get("boxes") or []
    if task == "phrase_grounding":
        key = "phrase"
    elif task == "anatomy_grounded_report":
        key = "anatomy"
    else:
        return [record]
    # the loader's choices: every distinct phrase; every distinct region a box names
    choices = list(dict.fromkeys(b.get(key) for b in boxes if key == "phrase" or b.get(key)))
    if len(choices) < 2:
        return [record]
    return [
        {**record, "id": f"{record['id']}#{k}", "boxes": [b for b in boxes if b.get(key) == c]}
        for k, c in enumerate(choices)
    ]


def _batches(ds: Any, n: int, seed: int, size: int) -> Iterable[tuple[int, Mapping[str, Any]]]:
    """``(first index, batch)`` over the data set, no augmentation, epoch 0 (numpy, no torch)."""
    for start in range(0, n, size):
        yield start, ds._core.batch(list(range(start, min(start + size, n))), 0, seed, [])


def training_stats(
    manifests: Sequence[str | os.PathLike[str]],
    split: str | None = "train",
    box_format: str = "cure",
    *,
    seed: int = 0,
    image_size: int = 64,
    batch_size: int = 64,
) -> TrainingStats:
    """The prompt-only baseline's tables from the records of ``split`` (all with None) of the
    training ``manifests``.

    Targets: rendered by the loader in ``box_format`` (no augmentation, epoch 0, ``seed``), one
    per record, and one per phrase / region of a record whose prompt chooses among several. Text
    does not depend on the image or the box coordinates, so they are rendered against a one-pixel
    placeholder image with every box covering it. Boxes: each record with boxes is decoded once
    at ``image_size`` and its boxes normalised to the output image, as the loader normalises the
    rows' reference boxes."""
    from gradatim.data import ManifestDataset
    from gradatim.manifest.common import manifest_root, read_manifest

    _runs(box_format)  # a known format
    stats = TrainingStats(box_format=box_format)
    common = {"channels": 1, "box_format": box_format, "allow_outside_root": True, "seed": seed}
    with tempfile.TemporaryDirectory(prefix="gradatim-baseline-") as tmp:
        blank = _placeholder(tmp)
        for manifest in manifests:
            records = [r for r in read_manifest(manifest) if split is None or r["split"] == split]
            for r in records:
                r.pop("line", None)
            stats.records += len(records)
            texts = [
                {**c, "image": blank, "boxes": [{**b, "box": [0.0, 0.0, 1.0, 1.0]}
                                               for b in c.get("boxes") or []]}
                for r in records
                for c in _by_subject(r)
            ]  # fmt: skip
            if texts:
                ds = ManifestDataset(texts, root=tmp, image_size=(8, 8), **common)
                for _, batch in _batches(ds, len(texts), seed, batch_size):
                    for k in range(len(batch["id"])):
                        _add_target(stats, batch, k)
            boxed = [r for r in records if r.get("boxes")]
            if boxed:
                root = manifest_root(manifest)
                size = (image_size, image_size)
                ds = ManifestDataset(boxed, root=root, image_size=size, **common)
                for start, batch in _batches(ds, len(boxed), seed, batch_size):
                    for k in range(len(batch["id"])):
                        _add_boxes(stats, boxed[start + k], batch, k, image_size)
    return stats


def _add_target(stats: TrainingStats, batch: Mapping[str, Any], k: int) -> None:
    task, source = str(batch["task"][k]), str(batch["source"][k])
    subject = str(batch["category"][k]) if task in GROUNDING_TASKS else ""
    stats.add_target(source, task, str(batch["prompt"][k]), str(batch["target"][k]), subject)


def _add_boxes(
    stats: TrainingStats, record: Mapping[str, Any], batch: Mapping[str, Any], k: int, size: int
) -> None:
    keys = _box_keys(record)
    count = int(batch["box_count"][k])
    if count != len(keys):  # a box the loader dropped: the order no longer says which is which
        stats.boxes_unmatched += 1
        return
    task = str(record["task"])
    for key, box in zip(keys, batch["boxes"][k, :count].tolist(), strict=True):
        if key is None:
            continue
        norm = [v / size for v in box]
        stats.add_box(key, norm)
        stats.add_box(("task", task), norm)
        stats.add_box(("all",), norm)


def _row_box(stats: TrainingStats, row: Mapping[str, Any]) -> tuple[list[float] | None, str | None]:
    """The baseline's box for a row and where it came from."""
    task = str(row["task"])
    keys: list[tuple[str, ...]] = []
    subject = _subject(row)
    if subject is not None:
        kind = "anatomy" if task == "anatomy_grounded_report" else "phrase"
        keys.append((kind, task, str(subject)))
    keys += [("task", task), ("all",)]
    for key in keys:
        box = stats.mean_box(key)
        if box is not None:
            return box, key[0]
    return None, None


def _render(skeleton: str, box: list[float] | None, box_format: str) -> str:
    from gradatim.data import render_boxes

    if box is not None and SLOT in skeleton:
        skeleton = skeleton.replace(SLOT, render_boxes([box], box_format), 1)  # type: ignore[arg-type]
    return re.sub(rf"\s*{SLOT}", "", skeleton)


def prompt_only_rows(
    rows: Iterable[Mapping[str, Any]], stats: Mapping[str, TrainingStats] | TrainingStats
) -> list[dict[str, Any]]:
    """The evaluated rows with the prompt-only baseline's ``prediction`` (everything else kept),
    and ``baseline``: where its text and box came from. ``stats``: per box format (or one)."""
    out = []
    for row in rows:
        fmt = str(row.get("box_format", "cure"))
        table = stats if isinstance(stats, TrainingStats) else stats[fmt]
        found = table.most_frequent(
            str(row["source"]), str(row["task"]), row.get("prompt"), _subject(row)
        )
        skeleton, text_from = found if found is not None else ("", None)
        box, box_from = _row_box(table, row) if SLOT in skeleton else (None, None)
        out.append(
            {
                **row,
                "prediction": _render(skeleton, box, fmt),
                "baseline": {"text_from": text_from, "box_from": box_from},
            }
        )
    return out


def provenance(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """How many baseline predictions took their text / box from each level (``none``: no
    training target of the task; a box ``none`` where the target had no box)."""
    text: Counter[str] = Counter()
    box: Counter[str] = Counter()
    for r in rows:
        b = r.get("baseline") or {}
        text[str(b.get("text_from") or "none")] += 1
        box[str(b.get("box_from") or "none")] += 1
    return {"text": dict(sorted(text.items())), "box": dict(sorted(box.items()))}
