"""PadChest-GR (grounded reports, Spanish + English) -> ``grounded_report`` records.

Input: ``grounded_reports_<date>.json``, a list of studies::

    {"StudyID": "...", "ImageID": "<name>.png", "findings": [
        {"sentence_en": "...", "sentence_es": "...", "abnormal": true,
         "boxes": [[x1, y1, x2, y2], ...],        # first reader
         "extra_boxes": [[x1, y1, x2, y2], ...],  # second reader (some findings)
         "labels": ["cardiomegaly"], "locations": ["heart"], "progression": null}, ...]}

Box coordinates are fractions of the image width and height (``box_units="normalized"``, the
released format); they are converted to pixels with the image's size, taken from (in order) an
``image_sizes`` CSV (``ImageID, width, height``), ``Columns_DICOM`` / ``Rows_DICOM`` of the master
table, or the PNG header of the image file under ``root``. ``box_units="pixel"`` takes them as
they are. ``master_table.csv`` (``ImageID, split, ...``) gives the official split
(train / validation / test).

Output per study: ``id = "padchest-gr/<ImageID without extension>"``, ``image =
<image_dir>/<ImageID>``, ``text`` = every finding sentence (present and absent findings) in order,
in ``language`` "en" or "es", joined by spaces; one box per box of each present finding, with
``phrase`` = that finding's sentence (so a grounded-report target can follow each sentence with
its boxes) and ``anatomy`` null. ``reader`` picks the first reader's boxes (default), the
second's, or both.

Labels: "No Finding" is 1 when no sentence is abnormal, else 0; PadChest labels of present
findings map to CheXpert through :func:`chexpert_label` (a partial keyword map; unmapped labels
are left out).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradatim.errors import ManifestError
from gradatim.manifest.classes import NO_FINDING
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    iter_csv,
    join_image,
    join_report,
    make_box,
    make_record,
    normalize_split,
    parse_float,
    splitter,
    validate_record,
)

__all__ = ["SOURCE", "convert", "chexpert_label", "png_size"]

SOURCE = "padchest-gr"

# Keyword -> CheXpert observation, tried in order on the lower-case PadChest label.
_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("fracture", "Fracture"),
    ("pneumothorax", "Pneumothorax"),
    ("pleural effusion", "Pleural Effusion"),
    ("costophrenic angle blunting", "Pleural Effusion"),
    ("pleural thickening", "Pleural Other"),
    ("atelectasis", "Atelectasis"),
    ("consolidation", "Consolidation"),
    ("pneumonia", "Pneumonia"),
    ("cardiomegaly", "Cardiomegaly"),
    ("edema", "Edema"),
    ("mediastinal enlargement", "Enlarged Cardiomediastinum"),
    ("nodule", "Lung Lesion"),
    ("pulmonary mass", "Lung Lesion"),
    ("infiltrates", "Lung Opacity"),
    ("alveolar pattern", "Lung Opacity"),
    ("interstitial pattern", "Lung Opacity"),
    ("ground glass pattern", "Lung Opacity"),
    ("pacemaker", "Support Devices"),
    ("catheter", "Support Devices"),
    ("tube", "Support Devices"),
    ("electrodes", "Support Devices"),
    ("chamber device", "Support Devices"),
)


def chexpert_label(padchest_label: str) -> str | None:
    """The CheXpert observation a PadChest label names, or None (partial keyword map: fractures,
    pneumothorax, effusion, pleural thickening, atelectasis, consolidation, pneumonia,
    cardiomegaly, edema, mediastinal enlargement, nodule/mass, infiltrates and alveolar,
    interstitial or ground-glass patterns, devices)."""
    low = padchest_label.strip().lower()
    if low == "mass":
        return "Lung Lesion"
    for key, label in _KEYWORDS:
        if key in low:
            return label
    return None


def png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` from a PNG file's header (no decoding)."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ManifestError("not a PNG file; cannot read the image size", os.fspath(path))
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _read_sizes(path: str | os.PathLike[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for where, row in iter_csv(path, required=("ImageID", "width", "height")):
        out[row["ImageID"].strip()] = (
            parse_float(row["width"], where, "width"),
            parse_float(row["height"], where, "height"),
        )
    return out


def _read_master(
    path: str | os.PathLike[str],
) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    splits: dict[str, str] = {}
    sizes: dict[str, tuple[float, float]] = {}
    for where, row in iter_csv(path, required=("ImageID", "split")):
        image = row["ImageID"].strip()
        splits[image] = normalize_split(row["split"])
        cols, rows = row.get("Columns_DICOM"), row.get("Rows_DICOM")
        if cols and rows and cols.strip() and rows.strip():
            sizes[image] = (
                parse_float(cols, where, "Columns_DICOM"),
                parse_float(rows, where, "Rows_DICOM"),
            )
    return splits, sizes


def _boxes(
    value: Any, where: Where, field: str, units: str, size: tuple[float, float] | None
) -> list[list[float]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(field, f"expected a list of [x1, y1, x2, y2], got {type(value).__name__}")
    out = []
    for j, b in enumerate(value):
        name = f"{field}[{j}]"
        if not isinstance(b, list) or len(b) != 4:
            raise where.error(name, "expected [x1, y1, x2, y2]")
        nums = []
        for v in b:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise where.error(name, f"coordinates must be numbers, got {b!r}")
            nums.append(float(v))
        if units == "normalized":
            if any(not -1e-6 <= v <= 1 + 1e-6 for v in nums):
                raise where.error(
                    name,
                    f"expected fractions of the image size in [0, 1], got {nums!r} "
                    "(pixel coordinates? use box_units='pixel')",
                )
            if size is None:
                raise where.error(
                    "ImageID",
                    "image size unknown, needed to turn normalised boxes into pixels (give "
                    "image_sizes, a master table with Columns_DICOM/Rows_DICOM, or root)",
                )
            w, h = size
            nums = [nums[0] * w, nums[1] * h, nums[2] * w, nums[3] * h]
        if not (nums[0] < nums[2] and nums[1] < nums[3]):
            raise where.error(name, f"expected x1 < x2 and y1 < y2, got {nums!r}")
        out.append(nums)
    return out


def _study(
    entry: Any,
    where: Where,
    *,
    language: str,
    reader: str,
    units: str,
    size: tuple[float, float] | None,
) -> tuple[str, list[dict[str, object]], dict[str, int | None]]:
    if not isinstance(entry, Mapping):
        raise where.error(None, f"expected an object, got {type(entry).__name__}")
    findings = entry.get("findings")
    if not isinstance(findings, list):
        raise where.error("findings", "expected a list")
    sentences: list[str] = []
    boxes: list[dict[str, object]] = []
    labels: dict[str, int | None] = {}
    abnormal_any = False
    key = f"sentence_{language}"
    for i, f in enumerate(findings):
        fw = f"findings[{i}]"
        if not isinstance(f, Mapping):
            raise where.error(fw, "expected an object")
        sentence = f.get(key)
        if not isinstance(sentence, str) or not sentence.strip():
            raise where.error(f"{fw}.{key}", "missing or empty sentence")
        sentence = join_report(sentence)
        sentences.append(sentence)
        if not f.get("abnormal"):
            continue
        abnormal_any = True
        for lab in f.get("labels") or []:
            mapped = chexpert_label(str(lab))
            if mapped is not None:
                labels[mapped] = 1
        fields = {"first": ("boxes",), "second": ("extra_boxes",), "both": ("boxes", "extra_boxes")}
        for name in fields[reader]:
            for b in _boxes(f.get(name), where, f"{fw}.{name}", units, size):
                boxes.append(make_box(b, sentence, None))
    labels[NO_FINDING] = 0 if abnormal_any else 1
    return " ".join(sentences), boxes, labels


def convert(
    reports_json: str | os.PathLike[str],
    *,
    master_table: str | os.PathLike[str] | None = None,
    image_sizes: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    image_dir: str = "",
    language: str = "en",
    reader: str = "first",
    box_units: str = "normalized",
    split: str = "train",
    on_error: str = "raise",
) -> Conversion:
    """Convert PadChest-GR's grounded-report JSON to ``grounded_report`` records (module doc).

    ``split`` applies to studies the master table does not list (or without one): a name, or
    ``"hash:..."`` by study. ``root``: the manifest root, to read image sizes from PNG headers
    (``<root>/<image_dir>/<ImageID>``).
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    if language not in ("en", "es"):
        raise ValueError(f"language must be 'en' or 'es', got {language!r}")
    if reader not in ("first", "second", "both"):
        raise ValueError(f"reader must be 'first', 'second' or 'both', got {reader!r}")
    if box_units not in ("normalized", "pixel"):
        raise ValueError(f"box_units must be 'normalized' or 'pixel', got {box_units!r}")
    split_of = splitter(split)
    splits: dict[str, str] = {}
    sizes: dict[str, tuple[float, float]] = {}
    if master_table is not None:
        splits, sizes = _read_master(master_table)
    if image_sizes is not None:
        sizes.update(_read_sizes(image_sizes))
    path = os.fspath(reports_json)
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, list):
        raise ManifestError("expected a JSON list of studies", path)
    for i, entry in enumerate(data, start=1):
        conv.inputs += 1
        where = Where(path, i, "entry")
        try:
            image = entry.get("ImageID") if isinstance(entry, Mapping) else None
            if not isinstance(image, str) or not image.strip():
                raise where.error("ImageID", "missing or empty")
            image = image.strip()
            rel = join_image(image_dir, image)
            size = sizes.get(image)
            if size is None and box_units == "normalized" and root is not None:
                file = Path(root) / rel
                if file.is_file():
                    w, h = png_size(file)
                    size = (float(w), float(h))
            text, boxes, labels = _study(
                entry, where, language=language, reader=reader, units=box_units, size=size
            )
            study = str(entry.get("StudyID") or image)
            rec = make_record(
                id=f"{SOURCE}/{os.path.splitext(image)[0]}",
                image=rel,
                source=SOURCE,
                task="grounded_report",
                split=splits.get(image) or split_of(study),
                text=text,
                labels=labels,
                boxes=boxes,
            )
            conv.records.append(validate_record(rec, where))
        except ManifestError as exc:
            conv.reject(exc)
    return conv
