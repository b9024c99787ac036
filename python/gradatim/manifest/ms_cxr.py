"""MS-CXR (phrase grounding on MIMIC-CXR images) -> ``phrase_grounding`` records.

Input: ``MS_CXR_Local_Alignment_v1.x.csv``, one row per box: ``dicom_id, category_name,
label_text, x, y, w, h, image_width, image_height, path`` (v1.1 adds ``split``: train / val /
test). ``x, y, w, h`` are pixels of the original image (``image_width`` x ``image_height``);
``path`` is the image's MIMIC-CXR path (``files/p1x/p1xxxxxxx/sxxxxxxxx/<dicom_id>.dcm``).
Required columns: ``dicom_id, label_text, x, y, w, h``; the others are used when present.

Output: one record per (image, phrase), in order of first appearance, with every box of that
phrase: ``id = "ms-cxr/<dicom_id>/<k>"`` (k counts the image's phrases from 0), ``text`` = the
phrase, boxes ``[x, y, x + w, y + h]`` with ``phrase`` = the phrase and ``anatomy`` null.
``image`` = ``path`` (its extension replaced by ``image_ext`` if given, e.g. ``.jpg`` for
MIMIC-CXR-JPG; prefixed by ``image_dir``), or ``<image_dir>/<dicom_id><image_ext>`` without a
``path`` column. A box that leaves ``image_width`` x ``image_height`` is an error.

Labels: ``category_name`` is a CheXpert observation ("Pneumonia", "Cardiomegaly", ...) and is
set to 1 (and "No Finding" to 0); with a MIMIC-CXR CheXpert label file (the study id read from
``path``) the study's labels are the base.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from gradatim.errors import ManifestError
from gradatim.manifest.classes import CHEXPERT_LABELS, NO_FINDING
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    iter_csv,
    join_image,
    make_box,
    make_record,
    normalize_split,
    parse_float,
    splitter,
    study_labels,
    validate_record,
)
from gradatim.manifest.label_csv import read_label_csv

__all__ = ["SOURCE", "convert"]

SOURCE = "ms-cxr"
_STUDY = re.compile(r"(?:^|/)s(\d+)/")


@dataclass
class _Phrase:
    first: Where
    image: str
    phrase: str
    category: str
    split: str | None
    study: str | None
    boxes: list[dict[str, object]] = field(default_factory=list)


def _image(row: dict[str, str], where: Where, image_dir: str, image_ext: str | None) -> str:
    path = (row.get("path") or "").strip()
    if path:
        if image_ext is not None:
            path = os.path.splitext(path)[0] + image_ext
        return join_image(image_dir, path)
    return join_image(image_dir, f"{row['dicom_id'].strip()}{image_ext or '.jpg'}")


def _box(row: dict[str, str], where: Where) -> list[float]:
    x, y, w, h = (parse_float(row[c], where, c) for c in "xywh")
    if w <= 0 or h <= 0:
        raise where.error("w" if w <= 0 else "h", f"box width and height must be > 0, got {w}, {h}")
    box = [x, y, x + w, y + h]
    size = [row.get("image_width"), row.get("image_height")]
    if all(s is not None and s.strip() for s in size):
        iw = parse_float(size[0], where, "image_width")
        ih = parse_float(size[1], where, "image_height")
        if x < 0 or y < 0 or box[2] > iw or box[3] > ih:
            raise where.error("x", f"box {box!r} leaves the {iw:g}x{ih:g} image")
    return box


def convert(
    annotations: str | os.PathLike[str],
    *,
    image_dir: str = "",
    image_ext: str | None = None,
    labels_csv: str | os.PathLike[str] | None = None,
    split: str = "train",
    on_error: str = "raise",
) -> Conversion:
    """Convert the MS-CXR CSV to ``phrase_grounding`` records (see the module doc).

    ``split`` applies where the CSV has no ``split`` column (v1.0): a name, or ``"hash:..."`` by
    study. ``labels_csv``: ``mimic-cxr-2.0.0-chexpert.csv[.gz]``. ``on_error="skip"`` drops a
    phrase with a bad row (counted) instead of raising.
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    split_of = splitter(split)
    labels = read_label_csv(labels_csv, "study_id") if labels_csv is not None else None
    phrases: dict[tuple[str, str], _Phrase] = {}
    bad: dict[tuple[str, str], ManifestError] = {}
    for where, row in iter_csv(
        annotations, required=("dicom_id", "label_text", "x", "y", "w", "h")
    ):
        conv.inputs += 1
        dicom = row["dicom_id"].strip()
        phrase = " ".join(row["label_text"].split())
        key = (dicom, phrase)
        try:
            if not dicom:
                raise where.error("dicom_id", "empty")
            if not phrase:
                raise where.error("label_text", "empty")
            box = _box(row, where)
            entry = phrases.get(key)
            if entry is None:
                m = _STUDY.search((row.get("path") or "").replace("\\", "/"))
                sp = (row.get("split") or "").strip()
                entry = phrases[key] = _Phrase(
                    where,
                    _image(row, where, image_dir, image_ext),
                    phrase,
                    (row.get("category_name") or "").strip(),
                    normalize_split(sp) if sp else None,
                    m.group(1) if m else None,
                )
            entry.boxes.append(make_box(box, phrase, None))
        except ManifestError as exc:
            if conv.on_error != "skip":
                raise
            bad.setdefault(key, exc)
    per_image: dict[str, int] = {}
    for key, entry in phrases.items():
        if key in bad:
            continue
        k = per_image.get(key[0], 0)
        per_image[key[0]] = k + 1
        lab = study_labels(labels, entry.study, conv)
        if entry.category in CHEXPERT_LABELS and entry.category != NO_FINDING:
            lab[entry.category] = 1  # radiologist-drawn, so present whatever the labeller said
            lab[NO_FINDING] = 0
        rec = make_record(
            id=f"{SOURCE}/{key[0]}/{k}",
            image=entry.image,
            source=SOURCE,
            task="phrase_grounding",
            split=entry.split or split_of(entry.study or key[0]),
            text=entry.phrase,
            labels=lab,
            boxes=entry.boxes,  # type: ignore[arg-type]
        )
        conv.records.append(validate_record(rec, entry.first))
    for err in bad.values():
        conv.reject(err)
    return conv
