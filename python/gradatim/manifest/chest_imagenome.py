"""Chest ImaGenome (scene graphs on MIMIC-CXR images) -> ``anatomy_grounded_report`` records.

Input: the scene-graph JSON files (``silver_dataset/scene_graph/<dicom_id>_SceneGraph.json``, a
folder or a zip of them, or one file), one per image::

    {"image_id": "<dicom_id>", "patient_id": 10000032, "study_id": 50414267,
     "objects": [{"object_id": "<dicom_id>_right lung", "bbox_name": "right lung",
                  "x1": .., "y1": .., "x2": .., "y2": ..,            # 224 x 224 frame
                  "original_x1": .., "original_y1": .., "original_x2": .., "original_y2": ..},
                 ...],
     "attributes": [{"bbox_name": "right lung", "phrases": ["..."],
                     "attributes": [["anatomicalfinding|yes|lung opacity", ...]], ...}, ...]}

Output per image: ``id = "chest-imagenome/<dicom_id>"``, the MIMIC-CXR-JPG image path
(``files/p10/p10000032/s50414267/<dicom_id>.jpg``), one box per region object with ``anatomy`` =
its ``bbox_name`` and coordinates ``original_x1 .. original_y2`` (pixels of the original image,
unchanged), ``phrase`` = the region's description: the report phrases attached to that region
that assert a finding (an attribute ``...|yes|...``), distinct, in order, joined by spaces;
"" when there is none, which CURE's template renders as "No acute findings." (``descriptions=
"all"`` keeps negative and normal statements too). ``text`` = every distinct phrase of the
graph in order (the report sentences the graph was built from).

Regions: only the 29 of :data:`gradatim.manifest.anatomy.ANATOMY_REGIONS` unless
``all_regions=True``. Silver boxes are detector output: a region box with ``x2 <= x1`` or
``y2 <= y1`` is dropped and counted, not an error. Splits from a CSV with ``dicom_id`` and
``split`` (MIMIC-CXR's split file, or Chest ImaGenome's ``train.csv`` / ``valid.csv`` /
``test.csv`` given as a folder). Labels from ``mimic-cxr-2.0.0-chexpert.csv`` by study.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gradatim.errors import ManifestError
from gradatim.manifest.anatomy import is_anatomy_region
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    iter_csv,
    join_report,
    make_box,
    make_record,
    normalize_split,
    splitter,
    study_labels,
    validate_record,
)
from gradatim.manifest.label_csv import read_label_csv
from gradatim.manifest.mimic_cxr import image_path

__all__ = ["SOURCE", "convert", "iter_scene_graphs", "read_splits"]

SOURCE = "chest-imagenome"
_SUFFIX = "_SceneGraph.json"


def iter_scene_graphs(path: str | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """``(name, json_bytes)`` of the scene graphs in a folder (recursively), a zip, or one file,
    sorted by name."""
    p = Path(path)
    if p.is_dir():
        for f in sorted(p.rglob(f"*{_SUFFIX}")):
            yield str(f), f.read_bytes()
    elif zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(_SUFFIX)):
                yield f"{p}:{name}", z.read(name)
    else:
        yield str(p), p.read_bytes()


def read_splits(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{dicom_id: split}`` from a CSV with ``dicom_id`` and ``split`` columns, or from a folder
    of Chest ImaGenome split files (``train.csv``, ``valid.csv``, ``test.csv``; the file name is
    the split)."""
    p = Path(path)
    out: dict[str, str] = {}
    if p.is_dir():
        for name in ("train", "valid", "test"):
            f = p / f"{name}.csv"
            if f.is_file():
                for _, row in iter_csv(f, required=("dicom_id",)):
                    out[row["dicom_id"].strip()] = normalize_split(name)
        if not out:
            raise ManifestError(
                "no train.csv, valid.csv or test.csv with a dicom_id column", str(p)
            )
        return out
    for _, row in iter_csv(p, required=("dicom_id", "split")):
        out[row["dicom_id"].strip()] = normalize_split(row["split"])
    return out


def _num(obj: Mapping[str, Any], key: str, where: Where, field: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise where.error(f"{field}.{key}", f"expected a number, got {type(v).__name__}")
    return float(v)


def _id(graph: Mapping[str, Any], key: str, where: Where) -> str:
    v = graph.get(key)
    s = str(v).strip() if isinstance(v, (int, str)) and not isinstance(v, bool) else ""
    if s.endswith(".0"):
        s = s[:-2]
    if not s or (key != "image_id" and not s.isdigit()):
        raise where.error(key, "expected an id")  # the value is an identifier: not quoted
    return s


def _positive(attrs: Any) -> bool:
    return isinstance(attrs, list) and any(
        isinstance(a, str) and a.split("|")[1:2] == ["yes"] for a in attrs
    )


def _descriptions(
    graph: Mapping[str, Any], where: Where, mode: str
) -> tuple[dict[str, list[str]], list[str]]:
    per_region: dict[str, list[str]] = {}
    every: list[str] = []
    attributes = graph.get("attributes") or []
    if not isinstance(attributes, list):
        raise where.error("attributes", "expected a list")
    for i, a in enumerate(attributes):
        if not isinstance(a, Mapping):
            raise where.error(f"attributes[{i}]", "expected an object")
        region = a.get("bbox_name")
        phrases = a.get("phrases") or []
        labels = a.get("attributes") or []
        if not isinstance(phrases, list):
            raise where.error(f"attributes[{i}].phrases", "expected a list")
        for j, phrase in enumerate(phrases):
            if not isinstance(phrase, str):
                continue
            phrase = join_report(phrase)
            if not phrase:
                continue
            if phrase not in every:
                every.append(phrase)
            keep = mode == "all" or _positive(labels[j] if j < len(labels) else None)
            if keep and isinstance(region, str):
                lst = per_region.setdefault(region, [])
                if phrase not in lst:
                    lst.append(phrase)
    return per_region, every


def convert(
    scene_graphs: str | os.PathLike[str],
    *,
    splits: str | os.PathLike[str] | None = None,
    labels_csv: str | os.PathLike[str] | None = None,
    image_dir: str = "files",
    image_ext: str = ".jpg",
    split: str = "train",
    all_regions: bool = False,
    descriptions: str = "positive",
    on_error: str = "raise",
) -> Conversion:
    """Convert Chest ImaGenome scene graphs to ``anatomy_grounded_report`` records (module doc).

    ``splits``: a CSV (``dicom_id, split``) or a folder of ``train/valid/test.csv``; images it
    does not list get ``split`` (a name, or ``"hash:..."`` by patient). ``descriptions``:
    ``"positive"`` (default) or ``"all"`` phrases per region.
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    if descriptions not in ("positive", "all"):
        raise ValueError(f"descriptions must be 'positive' or 'all', got {descriptions!r}")
    split_map = read_splits(splits) if splits is not None else {}
    split_of = splitter(split)
    labels = read_label_csv(labels_csv, "study_id") if labels_csv is not None else None
    for name, data in iter_scene_graphs(scene_graphs):
        conv.inputs += 1
        where = Where(name, None)
        try:
            try:
                graph = json.loads(data)
            except json.JSONDecodeError as exc:
                raise Where(name, exc.lineno).error(None, f"invalid JSON: {exc.msg}") from None
            if not isinstance(graph, Mapping):
                raise where.error(None, "expected a JSON object")
            dicom = _id(graph, "image_id", where)
            subject = _id(graph, "patient_id", where)
            study = _id(graph, "study_id", where)
            per_region, every = _descriptions(graph, where, descriptions)
            objects = graph.get("objects")
            if not isinstance(objects, list):
                raise where.error("objects", "expected a list")
            boxes = []
            for i, obj in enumerate(objects):
                field = f"objects[{i}]"
                if not isinstance(obj, Mapping):
                    raise where.error(field, "expected an object")
                region = obj.get("bbox_name")
                if not isinstance(region, str) or not region.strip():
                    raise where.error(f"{field}.bbox_name", "missing")
                if not all_regions and not is_anatomy_region(region):
                    continue
                box = [_num(obj, f"original_{k}", where, field) for k in ("x1", "y1", "x2", "y2")]
                if not (box[0] < box[2] and box[1] < box[3]):
                    conv.notes["degenerate region box dropped"] += 1
                    continue
                phrase = " ".join(per_region.get(region, []))
                boxes.append(make_box(box, phrase, region))
            if not boxes:
                conv.skipped["no region boxes"] += 1
                continue
            lab = study_labels(labels, study, conv)
            rec = make_record(
                id=f"{SOURCE}/{dicom}",
                image=image_path(image_dir, subject, study, dicom, image_ext),
                source=SOURCE,
                task="anatomy_grounded_report",
                split=split_map.get(dicom) or split_of(subject),
                text=" ".join(every),
                labels=lab,
                boxes=boxes,
            )
            conv.records.append(validate_record(rec, where))
        except ManifestError as exc:
            conv.reject(exc)
    return conv
