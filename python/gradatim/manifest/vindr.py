"""VinDr-CXR -> ``phrase_grounding`` records, one per image.

Input: an annotation CSV of VinDr-CXR (PhysioNet's ``annotations_train.csv`` /
``annotations_test.csv``, or the Kaggle VinBigData ``train.csv``), one row per box:
``image_id, class_name, x_min, y_min, x_max, y_max`` (plus ``rad_id``, ``class_id``, ignored).
Rows of class "No finding" carry no box. Coordinates are pixels of the original DICOM image.

Output per image: ``id = "vindr-cxr/<image_id>"``, ``image = <image_dir>/<image_id><image_ext>``
(default ``train/<id>.dicom`` as PhysioNet ships it), one box per annotation row in file order
with ``phrase`` = the class name (VinDr's training set has three radiologists per image, so one
finding usually has several overlapping boxes: all are kept, coordinates unchanged), ``anatomy``
null, ``text`` = the distinct class names joined with "; " ("No finding" for normal images).

Labels (CheXpert style) from the union of the image's annotations, through
:data:`VINDR_TO_CHEXPERT`: a mapped label is 1 if any radiologist marked one of its classes and 0
otherwise (VinDr's labels are exhaustive); "No Finding" is 1 when every row of the image is
"No finding". CheXpert labels without a VinDr counterpart are left out (unknown).

Bad rows (a box with a missing or non-numeric coordinate, ``x_max <= x_min``, a "No finding" row
with a box) raise :class:`gradatim.errors.ManifestError` naming the file, line and column, or are
skipped and counted with ``on_error="skip"`` (the whole image is skipped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from gradatim.errors import ManifestError
from gradatim.manifest.classes import NO_FINDING
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    iter_csv,
    join_image,
    make_box,
    make_record,
    parse_float,
    splitter,
    validate_record,
)

__all__ = ["SOURCE", "NO_FINDING_CLASS", "VINDR_TO_CHEXPERT", "convert", "labels_for"]

SOURCE = "vindr-cxr"
NO_FINDING_CLASS = "No finding"

VINDR_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Infiltration": "Lung Opacity",
    "Lung Opacity": "Lung Opacity",
    "Nodule/Mass": "Lung Lesion",
    "Pleural effusion": "Pleural Effusion",
    "Pleural thickening": "Pleural Other",
    "Pneumothorax": "Pneumothorax",
}
"""VinDr-CXR local labels -> CheXpert observations, following the CheXpert labeller's mention
lists (infiltrate is a lung opacity, nodule and mass a lung lesion, pleural thickening "pleural
other"). Aortic enlargement, Calcification, ILD, Other lesion and Pulmonary fibrosis have no
CheXpert counterpart."""

_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")


@dataclass
class _Image:
    first: Where
    boxes: list[dict[str, object]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    error: ManifestError | None = None


def _row_box(where: Where, row: dict[str, str]) -> list[float] | None:
    cells = [row[c] for c in ("x_min", "y_min", "x_max", "y_max")]
    if row["class_name"] == NO_FINDING_CLASS:
        if any(c.strip() for c in cells):
            raise where.error("x_min", "a 'No finding' row must not have a box")
        return None
    box = [parse_float(row[c], where, c) for c in ("x_min", "y_min", "x_max", "y_max")]
    if not (box[0] < box[2]):
        raise where.error("x_max", f"x_max must exceed x_min, got {box!r}")
    if not (box[1] < box[3]):
        raise where.error("y_max", f"y_max must exceed y_min, got {box!r}")
    return box


def labels_for(classes: list[str]) -> dict[str, int | None]:
    """CheXpert-style labels of one image from its annotated class names (see module doc)."""
    findings = [c for c in classes if c != NO_FINDING_CLASS]
    labels: dict[str, int | None] = {NO_FINDING: 0 if findings else 1}
    for vindr, chexpert in VINDR_TO_CHEXPERT.items():
        labels[chexpert] = max(labels.get(chexpert) or 0, int(vindr in findings))
    return labels


def convert(
    annotations: str | os.PathLike[str],
    *,
    image_dir: str = "train",
    image_ext: str = ".dicom",
    split: str = "train",
    include_normal: bool = True,
    on_error: str = "raise",
) -> Conversion:
    """Convert a VinDr-CXR annotation CSV (``.csv`` or ``.csv.gz``) to ``phrase_grounding``
    records, one per image in order of first appearance.

    ``split``: a split name for all (VinDr-CXR's train and test sets are separate files), or
    ``"hash:..."`` by image. ``include_normal=False`` drops images with no box.
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    split_of = splitter(split)
    images: dict[str, _Image] = {}
    for where, row in iter_csv(annotations, required=_COLUMNS):
        image_id = row["image_id"].strip()
        if not image_id:
            conv.reject(where.error("image_id", "empty"))
            continue
        img = images.get(image_id)
        if img is None:
            img = images[image_id] = _Image(where)
        if img.error is not None:
            continue
        try:
            class_name = row["class_name"].strip()
            if not class_name:
                raise where.error("class_name", "empty")
            box = _row_box(where, row)
        except ManifestError as exc:
            if conv.on_error != "skip":
                raise
            img.error = exc
            continue
        img.classes.append(class_name)
        if box is not None:
            img.boxes.append(make_box(box, class_name, None))
    conv.inputs = len(images)
    for image_id, img in images.items():
        if img.error is not None:
            conv.reject(img.error)
            continue
        if not img.boxes and not include_normal:
            conv.skipped["normal image (include_normal=False)"] += 1
            continue
        phrases = list(dict.fromkeys(str(b["phrase"]) for b in img.boxes))
        rec = make_record(
            id=f"{SOURCE}/{image_id}",
            image=join_image(image_dir, f"{image_id}{image_ext}"),
            source=SOURCE,
            task="phrase_grounding",
            split=split_of(image_id),
            text="; ".join(phrases) if phrases else NO_FINDING_CLASS,
            labels=labels_for(img.classes),
            boxes=img.boxes,  # type: ignore[arg-type]
        )
        conv.records.append(validate_record(rec, img.first))
    return conv
