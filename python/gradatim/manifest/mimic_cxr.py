"""MIMIC-CXR-JPG (+ MIMIC-CXR reports) -> ``report`` records, one per image.

Inputs, as PhysioNet ships them (``.csv`` or ``.csv.gz``):

- ``mimic-cxr-2.0.0-metadata.csv``: ``dicom_id, subject_id, study_id, ViewPosition, ...``, one
  row per image (required; it defines the images);
- ``mimic-cxr-2.0.0-split.csv``: ``dicom_id, ..., split`` (train / validate / test);
- ``mimic-cxr-2.0.0-chexpert.csv`` (or ``-negbio``): ``subject_id, study_id`` + 14 CheXpert
  labels (1.0 / 0.0 / -1.0 / empty), one row per study;
- the free-text reports of MIMIC-CXR (``mimic-cxr-reports.zip`` or its extracted folder):
  ``files/p10/p10000032/s50414267.txt``, one per study.

Images: ``<image_dir>/p<first 2 digits of subject>/p<subject>/s<study>/<dicom_id>.jpg``.

``text`` = the FINDINGS and IMPRESSION sections joined (:func:`report_sections`; a combined
"FINDINGS AND IMPRESSION" section counts as findings, "CONCLUSION" as impression). Skipped and
counted: images whose study has no report file, or whose report has neither section, images not
in the split file (when one is given), and views not selected.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from gradatim.errors import ManifestError
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    iter_csv,
    join_image,
    join_report,
    make_record,
    normalize_split,
    study_labels,
    validate_record,
)
from gradatim.manifest.label_csv import read_label_csv

__all__ = ["SOURCE", "convert", "report_sections", "image_path", "ReportStore"]

SOURCE = "mimic-cxr"

_HEADING = re.compile(r"^[ \t]*([A-Z][A-Z0-9 ,/&()'-]*?)[ \t]*:", re.MULTILINE)
_SECTION_ALIASES = {
    "FINDINGS": "findings",
    "FINDING": "findings",
    "FINDINGS AND IMPRESSION": "findings",
    "IMPRESSION AND FINDINGS": "findings",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
    "CONCLUSION": "impression",
}


def report_sections(report: str) -> dict[str, str]:
    """Split a MIMIC-CXR free-text report into ``{"findings": ..., "impression": ...}`` (absent
    sections are missing). A section runs from its upper-case heading (``FINDINGS:``) to the next
    heading; a repeated section is concatenated."""
    out: dict[str, str] = {}
    heads = list(_HEADING.finditer(report))
    for i, m in enumerate(heads):
        name = _SECTION_ALIASES.get(re.sub(r"\s+", " ", m.group(1)).strip())
        if name is None:
            continue
        end = heads[i + 1].start() if i + 1 < len(heads) else len(report)
        body = report[m.end() : end]
        out[name] = join_report(out.get(name, ""), body)
    return {k: v for k, v in out.items() if v}


def image_path(image_dir: str, subject_id: str, study_id: str, dicom_id: str, ext: str) -> str:
    """MIMIC-CXR-JPG's layout: ``files/p10/p10000032/s50414267/<dicom_id>.jpg``."""
    return join_image(image_dir, f"p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}{ext}")


class ReportStore:
    """The MIMIC-CXR reports, from the zip or an extracted folder, looked up by study.

    Accepts the folder that holds ``files/`` or ``files/`` itself (or the zip of either).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._names: dict[str, str] = {}
        if self.path.is_file():
            self._zip = zipfile.ZipFile(self.path)
            for name in self._zip.namelist():
                m = re.search(r"(p\d+/p\d+/s\d+\.txt)$", name)
                if m:
                    self._names[m.group(1)] = name

    def _key(self, subject_id: str, study_id: str) -> str:
        return f"p{subject_id[:2]}/p{subject_id}/s{study_id}.txt"

    def where(self, subject_id: str, study_id: str) -> str:
        """The file name a study's report has (for messages)."""
        return f"{self.path}:{self._key(subject_id, study_id)}"

    def get(self, subject_id: str, study_id: str) -> str | None:
        """The report text of a study, or None if there is none."""
        key = self._key(subject_id, study_id)
        if self._zip is not None:
            name = self._names.get(key)
            return None if name is None else self._zip.read(name).decode("utf-8")
        for base in (self.path / "files", self.path):
            f = base / key
            if f.is_file():
                return f.read_text(encoding="utf-8")
        return None

    def close(self) -> None:
        """Close the zip, if any."""
        if self._zip is not None:
            self._zip.close()


def _digits(where: Where, row: dict[str, str], name: str) -> str:
    v = (row.get(name) or "").strip()
    if v.endswith(".0"):  # ids written by pandas as floats
        v = v[:-2]
    if not v.isdigit():
        raise where.error(name, "expected a numeric id")  # the value is an identifier: not quoted
    return v


def convert(
    metadata: str | os.PathLike[str],
    reports: str | os.PathLike[str],
    *,
    split_csv: str | os.PathLike[str] | None = None,
    labels_csv: str | os.PathLike[str] | None = None,
    views: Sequence[str] | None = None,
    image_dir: str = "files",
    image_ext: str = ".jpg",
    split: str = "train",
    on_error: str = "raise",
) -> Conversion:
    """Convert MIMIC-CXR-JPG metadata + reports (+ split, + CheXpert labels) to ``report``
    records, one per image in metadata order.

    ``views`` keeps only those ``ViewPosition`` values (e.g. ``("PA", "AP")``). Without
    ``split_csv`` every image gets ``split``. A study missing from ``labels_csv`` gets ``{}``
    (counted in ``notes``).
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    splits: dict[str, str] | None = None
    if split_csv is not None:
        splits = {}
        for _, row in iter_csv(split_csv, required=("dicom_id", "split")):
            splits[row["dicom_id"].strip()] = normalize_split(row["split"])
    labels = read_label_csv(labels_csv, "study_id") if labels_csv is not None else None
    wanted = None if views is None else {v.strip().upper() for v in views}
    store = ReportStore(reports)
    texts: dict[str, str | None] = {}
    try:
        required = ("dicom_id", "subject_id", "study_id")
        for where, row in iter_csv(metadata, required=required):
            conv.inputs += 1
            try:
                dicom = row["dicom_id"].strip()
                if not dicom:
                    raise where.error("dicom_id", "empty")
                subject = _digits(where, row, "subject_id")
                study = _digits(where, row, "study_id")
            except ManifestError as exc:
                conv.reject(exc)
                continue
            if wanted is not None and (row.get("ViewPosition") or "").strip().upper() not in wanted:
                conv.skipped["view not selected"] += 1
                continue
            if splits is not None and dicom not in splits:
                conv.skipped["not in the split file"] += 1
                continue
            if study not in texts:
                report = store.get(subject, study)
                if report is None:
                    texts[study] = None
                else:
                    sec = report_sections(report)
                    texts[study] = join_report(sec.get("findings"), sec.get("impression"))
            text = texts[study]
            if text is None:
                conv.skipped["no report file"] += 1
                continue
            if not text:
                conv.skipped["no findings or impression"] += 1
                continue
            lab = study_labels(labels, study, conv)
            rec = make_record(
                id=f"{SOURCE}/{dicom}",
                image=image_path(image_dir, subject, study, dicom, image_ext),
                source=SOURCE,
                task="report",
                split=splits[dicom] if splits is not None else normalize_split(split),
                text=text,
                labels=lab,
            )
            conv.records.append(validate_record(rec, where))
    finally:
        store.close()
    return conv
