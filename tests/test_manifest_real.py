"""Converters on REAL public data, found where ``torchxrayvision`` installs it (``pip install
--no-deps torchxrayvision``; ``make test`` does): the IU X-ray report archive, VinDr-CXR and NIH
boxes, NIH's data-entry labels and CheXpert's label file. Each is converted in full and checked
against an independent count made here with plain string handling (regular expressions, line
splitting), not with the converter's parsers. The data are CC BY-NC-ND / research-use files:
they are read in place and nothing is copied into the repository. Skipped, with the reason, when
torchxrayvision is not installed.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from gradatim.manifest import iu_xray, nih, read_manifest, sample_classes, vindr, write_manifest
from gradatim.manifest.classes import CHEXPERT_LABELS
from gradatim.manifest.label_csv import read_label_csv


def _data(name: str) -> Path:
    spec = importlib.util.find_spec("torchxrayvision")  # locate only; importing needs torch etc.
    if spec is None or spec.origin is None:
        pytest.skip("torchxrayvision is not installed (pip install --no-deps torchxrayvision)")
    path = Path(spec.origin).parent / "data" / name
    if not path.is_file():
        pytest.skip(f"torchxrayvision has no data file {name}")
    return path


def _norm(text: str) -> str:
    return " ".join(html.unescape(text).split())


def test_iu_xray_full_archive(tmp_path: Path) -> None:
    path = _data("NLMCXR_reports.tgz")
    # Oracle: regular expressions over the raw XML text.
    expected: dict[str, tuple[str, bool]] = {}  # image id -> (text, MeSH exactly "normal")
    reports = no_text = no_images = 0
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if not m.name.endswith(".xml"):
                continue
            reports += 1
            raw = tar.extractfile(m).read().decode("utf-8")  # type: ignore[union-attr]
            sections = []
            for label in ("FINDINGS", "IMPRESSION"):
                hit = re.search(rf'<AbstractText Label="{label}">(.*?)</AbstractText>', raw, re.S)
                sections.append(_norm(hit.group(1)) if hit else "")
            text = " ".join(s for s in sections if s)
            images = re.findall(r'<parentImage id="([^"]+)"', raw)
            majors = re.findall(r"<major>(.*?)</major>", raw, re.S)
            if not text:
                no_text += 1
            elif not images:
                no_images += 1
            else:
                for image in images:
                    expected[image] = (text, [x.strip() for x in majors] == ["normal"])
    assert reports == 3955  # the archive's size as published

    conv = iu_xray.convert(path)
    assert conv.inputs == reports
    assert conv.skipped == {"no findings or impression": no_text, "no images": no_images}
    got = {r["id"].removeprefix("iu-xray/"): r for r in conv.records}
    assert len(conv.records) == len(got) == len(expected)  # unique ids, one per image
    assert set(got) == set(expected)
    for image, (text, normal) in expected.items():
        rec = got[image]
        assert rec["text"] == text
        assert rec["image"] == f"images/{image}.png"
        assert rec["labels"] == ({"No Finding": 1} if normal else {})
    normal_images = sum(1 for _, n in expected.values() if n)
    classes = Counter(c for r in conv.records for c in sample_classes(r["labels"]))
    assert classes == {"No Finding": normal_images, "unlabeled": len(expected) - normal_images}
    out = write_manifest(conv.records, tmp_path / "iu.jsonl")
    assert read_manifest(out) == conv.records


def test_vindr_full_train_csv(tmp_path: Path) -> None:
    path = _data("vinbigdata-train.csv.gz")
    # Oracle: split lines on commas (the file has no quoted fields).
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().strip().split(",")
        rows = [dict(zip(header, line.rstrip("\n").split(","), strict=True)) for line in f]
    boxes: dict[str, list[tuple[str, tuple[float, ...]]]] = defaultdict(list)
    classes: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        classes[r["image_id"]].add(r["class_name"])
        if r["x_min"]:
            boxes[r["image_id"]].append(
                (r["class_name"], tuple(float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")))
            )
    conv = vindr.convert(path)
    assert len(conv.records) == len(classes) == conv.inputs
    assert not conv.skipped
    got = {r["id"].removeprefix("vindr-cxr/"): r for r in conv.records}
    assert set(got) == set(classes)
    n_boxes = 0
    for image, rec in got.items():
        mine = [(b["phrase"], tuple(b["box"])) for b in rec["boxes"]]
        assert mine == boxes[image]  # same boxes, same order, coordinates exactly equal
        n_boxes += len(mine)
        normal = classes[image] == {"No finding"}
        assert rec["labels"]["No Finding"] == int(normal)
        assert rec["labels"]["Cardiomegaly"] == int("Cardiomegaly" in classes[image])
        assert rec["labels"]["Lung Lesion"] == int("Nodule/Mass" in classes[image])
    assert n_boxes == sum(1 for r in rows if r["x_min"])
    assert sum(1 for r in conv.records if r["labels"]["No Finding"] == 1) == sum(
        1 for c in classes.values() if c == {"No finding"}
    )
    # published sizes of this file: 15,000 images, 67,914 rows
    assert (len(classes), len(rows)) == (15000, 67914)
    write_manifest(conv.records, tmp_path / "vindr.parquet")
    assert read_manifest(tmp_path / "vindr.parquet") == conv.records


def test_nih_full_bbox_list() -> None:
    path = _data("BBox_List_2017.csv.gz")
    entry = _data("Data_Entry_2017_v2020.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()[1:]
    oracle: dict[str, list[tuple[str, tuple[float, ...]]]] = defaultdict(list)
    for line in lines:
        cells = line.split(",")
        x, y, w, h = (float(c) for c in cells[2:6])
        oracle[cells[0]].append((cells[1], (x, y, x + w, y + h)))
    findings: dict[str, set[str]] = {}
    with gzip.open(entry, "rt", encoding="utf-8") as f:
        f.readline()
        for line in f:
            cells = line.split(",")
            if cells[0] in oracle:
                findings[cells[0]] = set(cells[1].split("|"))
    conv = nih.convert(path, data_entry=entry)
    got = {r["id"].removeprefix("nih-cxr/"): r for r in conv.records}
    assert set(got) == set(oracle) and len(conv.records) == len(oracle)
    assert (len(lines), len(oracle)) == (984, 880)  # the published box list
    for image, rec in got.items():
        assert [(b["phrase"], tuple(b["box"])) for b in rec["boxes"]] == oracle[image]
        labels = rec["labels"]
        assert labels["Pleural Effusion"] == int("Effusion" in findings[image])
        assert labels["Lung Lesion"] == int(bool({"Mass", "Nodule"} & findings[image]))
        assert labels["No Finding"] == int(findings[image] == {"No Finding"})
        # a finding with a box is always among the image's labels
        for phrase, _ in oracle[image]:
            mapped = nih.NIH_TO_CHEXPERT[phrase]
            assert labels[mapped] == 1


def test_chexpert_label_file() -> None:
    path = _data("chexpert_train.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split(",")
        rows = [line.rstrip("\n").split(",") for line in f]
    cols = {name: header.index(name) for name in CHEXPERT_LABELS}
    labels = read_label_csv(path, "Path")
    assert len(labels) == len(rows) > 200000
    expected = Counter()
    for row in rows:
        for name, i in cols.items():
            if row[i]:
                expected[(name, int(float(row[i])))] += 1
    got = Counter((name, v) for lab in labels.values() for name, v in lab.items())
    assert got == expected
    # RRGCL classes: an independent count of "No Finding"-only and unlabeled samples
    findings = [n for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")]
    no_finding = unlabeled = 0
    for row in rows:
        if any(row[cols[n]] and float(row[cols[n]]) == 1 for n in findings):
            continue
        if row[cols["No Finding"]] and float(row[cols["No Finding"]]) == 1:
            no_finding += 1
        else:
            unlabeled += 1
    classes = Counter(c for lab in labels.values() for c in sample_classes(lab))
    assert classes["No Finding"] == no_finding and classes["unlabeled"] == unlabeled
