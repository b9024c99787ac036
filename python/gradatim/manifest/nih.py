"""NIH ChestX-ray14 -> ``phrase_grounding`` records, one per image with boxes.

Input: ``BBox_List_2017.csv`` (``.csv`` or ``.csv.gz``): ``Image Index, Finding Label,
Bbox [x,y,w,h]``: the unquoted header spreads the box over four columns, and most rows end in
empty cells, so the columns are read by position: image, label, x, y, w, h. The boxes are pixels
of the released 1024 x 1024 PNGs (``images/00013118_008.png``); a box that leaves the image is an
error. Optionally ``Data_Entry_2017*.csv`` gives each image's full label set ("Finding Labels",
``|``-separated) and ``test_list.txt`` the official test split.

Output per image: ``id = "nih-cxr/<Image Index>"``, ``image = <image_dir>/<Image Index>``, one
box ``[x, y, x + w, y + h]`` per row (file order) with ``phrase`` = the finding label as written
("Infiltrate", "Effusion", ...), ``anatomy`` null, ``text`` = the distinct labels joined by "; ".

Labels (CheXpert style) through :data:`NIH_TO_CHEXPERT`. With the data-entry file: every mapped
label is 1 if one of its NIH labels is present and 0 otherwise, "No Finding" from NIH's
"No Finding" (the NIH labels are exhaustive, NLP-mined). Without it: only the box findings are
known, so mapped labels are 1 for them and the rest are left out.
"""

from __future__ import annotations

import csv
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
    open_text,
    parse_float,
    splitter,
    validate_record,
)

__all__ = ["SOURCE", "IMAGE_SIZE", "NIH_TO_CHEXPERT", "convert", "read_bbox_list", "labels_for"]

SOURCE = "nih-cxr"
IMAGE_SIZE = (1024, 1024)
"""Width and height of the released ChestX-ray14 PNGs, the frame of the box coordinates."""

NIH_TO_CHEXPERT: dict[str, str] = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
    "Effusion": "Pleural Effusion",
    "Infiltrate": "Lung Opacity",
    "Infiltration": "Lung Opacity",
    "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion",
    "Pleural_Thickening": "Pleural Other",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
}
"""NIH labels -> CheXpert observations (the box list spells "Infiltrate", the data-entry file
"Infiltration"). Emphysema, Fibrosis and Hernia have no CheXpert counterpart."""


@dataclass
class _Image:
    first: Where
    boxes: list[dict[str, object]] = field(default_factory=list)


def read_bbox_list(
    path: str | os.PathLike[str], image_size: tuple[int, int] = IMAGE_SIZE
) -> tuple[dict[str, _Image], int]:
    """Parse the box list into ``{image: boxes}`` (file order) and the number of box rows."""
    p = os.fspath(path)
    images: dict[str, _Image] = {}
    rows = 0
    with open_text(p) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "Image Index":
            raise ManifestError(
                "expected the header 'Image Index,Finding Label,Bbox [x,y,w,h]'", p, 1
            )
        w_img, h_img = image_size
        for cells in reader:
            where = Where(p, reader.line_num)
            if not any(c.strip() for c in cells):
                continue
            if len(cells) < 6:
                raise where.error("Bbox [x,y,w,h]", f"expected 6 columns, got {len(cells)}")
            name, label = cells[0].strip(), cells[1].strip()
            if not name:
                raise where.error("Image Index", "empty")
            if not label:
                raise where.error("Finding Label", "empty")
            x, y, w, h = (parse_float(cells[2 + i], where, f) for i, f in enumerate("xywh"))
            if w <= 0 or h <= 0:
                raise where.error(
                    "w" if w <= 0 else "h", f"box width and height must be > 0, got {w}, {h}"
                )
            box = [x, y, x + w, y + h]
            if x < 0 or y < 0 or box[2] > w_img or box[3] > h_img:
                raise where.error("Bbox [x,y,w,h]", f"box {box!r} leaves the {w_img}x{h_img} image")
            img = images.get(name)
            if img is None:
                img = images[name] = _Image(where)
            img.boxes.append(make_box(box, label, None))
            rows += 1
    return images, rows


def _read_data_entry(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _, row in iter_csv(path, required=("Image Index", "Finding Labels")):
        out[row["Image Index"].strip()] = [x.strip() for x in row["Finding Labels"].split("|")]
    return out


def _read_list(path: str | os.PathLike[str]) -> set[str]:
    with open_text(path) as f:
        return {line.strip() for line in f if line.strip()}


def labels_for(findings: list[str], exhaustive: bool) -> dict[str, int | None]:
    """CheXpert-style labels from NIH finding names (see module doc)."""
    present = [f for f in findings if f != "No Finding"]
    labels: dict[str, int | None] = {}
    if exhaustive:
        labels[NO_FINDING] = 0 if present else 1
        for chexpert in NIH_TO_CHEXPERT.values():
            labels[chexpert] = 0
    for f in present:
        if f in NIH_TO_CHEXPERT:
            labels[NIH_TO_CHEXPERT[f]] = 1
    return labels


def convert(
    bbox_list: str | os.PathLike[str],
    *,
    image_dir: str = "images",
    data_entry: str | os.PathLike[str] | None = None,
    test_list: str | os.PathLike[str] | None = None,
    split: str = "train",
    image_size: tuple[int, int] = IMAGE_SIZE,
    on_error: str = "raise",
) -> Conversion:
    """Convert NIH's box list to ``phrase_grounding`` records (one per image).

    ``data_entry``: ``Data_Entry_2017*.csv[.gz]`` for complete labels. ``test_list``: the
    official ``test_list.txt``; its images get split "test", the others ``split``. Without it
    every image gets ``split`` (a name, or ``"hash:..."`` by patient: the image name's part before
    ``_``). ``on_error`` applies to the data-entry lookup (an image missing
    from it); malformed box rows always raise.
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    images, _ = read_bbox_list(bbox_list, image_size)
    entries = _read_data_entry(data_entry) if data_entry is not None else None
    tests = _read_list(test_list) if test_list is not None else set()
    split_of = splitter(split)
    conv.inputs = len(images)
    for name, img in images.items():
        if entries is not None:
            if name not in entries:
                conv.reject(img.first.error("Image Index", "image not in the data-entry file"))
                continue
            labels = labels_for(entries[name], exhaustive=True)
        else:
            labels = labels_for([str(b["phrase"]) for b in img.boxes], exhaustive=False)
        phrases = list(dict.fromkeys(str(b["phrase"]) for b in img.boxes))
        rec = make_record(
            id=f"{SOURCE}/{name}",
            image=join_image(image_dir, name),
            source=SOURCE,
            task="phrase_grounding",
            split="test" if name in tests else split_of(name.split("_")[0]),
            text="; ".join(phrases),
            labels=labels,
            boxes=img.boxes,  # type: ignore[arg-type]
        )
        conv.records.append(validate_record(rec, img.first))
    return conv
