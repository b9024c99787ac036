"""IU X-ray (Open-i, Indiana University chest X-ray collection) -> ``report`` records.

Input: the report archive ``NLMCXR_reports.tgz`` (read in place with :mod:`tarfile`) or a folder
of its XML files (``ecgen-radiology/<n>.xml``). Each XML holds one report:
``<AbstractText Label="FINDINGS">`` and ``Label="IMPRESSION"``, MeSH terms, and one
``<parentImage id="CXR1_1_IM-0001-3001">`` per image; the images of ``NLMCXR_png.tgz`` are named
``<parentImage id>.png``.

Output: one ``report`` record per image (frontal and lateral views alike: the XML does not say
which is which), ``id = "iu-xray/<parentImage id>"``, ``text`` = findings + impression
(:func:`gradatim.manifest.common.join_report`; the collection's de-identification token "XXXX"
is kept as it is). Skipped, and counted: reports whose findings and impression are both empty,
and reports without images.

Labels: IU X-ray has no CheXpert labels. A report whose MeSH major terms are exactly "normal"
gets ``{"No Finding": 1}``; every other report gets ``{}`` (RRGCL class ``unlabeled``) unless a
CheXpert-format label CSV (e.g. CheXbert run on these reports) is given, keyed by the report's
``uId`` (``"CXR1"``).
"""

from __future__ import annotations

import os
import re
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gradatim.errors import ManifestError
from gradatim.manifest.classes import NO_FINDING
from gradatim.manifest.common import (
    Conversion,
    Where,
    _check_on_error,
    join_image,
    join_report,
    make_record,
    splitter,
    validate_record,
)
from gradatim.manifest.label_csv import read_label_csv

__all__ = ["SOURCE", "convert", "iter_reports", "parse_report"]

SOURCE = "iu-xray"

_NUMBER = re.compile(r"(\d+)")


def _sort_key(name: str) -> tuple[int, str]:
    m = _NUMBER.search(os.path.basename(name))
    return (int(m.group(1)) if m else -1, name)


def iter_reports(path: str | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """``(name, xml_bytes)`` of every ``*.xml`` in a ``.tgz``/``.tar`` archive or a folder, in
    report-number order; ``name`` is ``"<archive>:<member>"`` or the file path."""
    p = Path(path)
    if p.is_dir():
        for f in sorted((str(x) for x in p.rglob("*.xml")), key=_sort_key):
            yield f, Path(f).read_bytes()
        return
    with tarfile.open(p, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".xml")]
        for m in sorted(members, key=lambda m: _sort_key(m.name)):
            member = tar.extractfile(m)
            if member is not None:
                yield f"{p}:{m.name}", member.read()


def parse_report(name: str, data: bytes) -> dict[str, object]:
    """The fields of one report XML: ``uid``, ``findings``, ``impression``, ``images`` (parentImage
    ids, in order) and ``mesh_major`` (MeSH major terms). Raises ``ManifestError`` naming the file
    for XML that does not parse or has no ``uId``."""
    where = Where(name, None)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise Where(name, exc.position[0]).error(None, f"invalid XML: {exc}") from None
    uid_el = root.find("uId")
    uid = uid_el.get("id") if uid_el is not None else None
    if not uid:
        raise where.error("uId", "missing report id")
    sections: dict[str, str] = {}
    for el in root.iter("AbstractText"):
        label = (el.get("Label") or "").upper()
        sections[label] = "".join(el.itertext())
    images = [el.get("id") or "" for el in root.iter("parentImage")]
    if any(not i for i in images):
        raise where.error("parentImage", "image without an id")
    mesh = [(el.text or "").strip() for el in root.iter("major")]
    return {
        "uid": uid,
        "findings": sections.get("FINDINGS", ""),
        "impression": sections.get("IMPRESSION", ""),
        "images": images,
        "mesh_major": mesh,
    }


def convert(
    reports: str | os.PathLike[str],
    *,
    image_dir: str = "images",
    image_ext: str = ".png",
    split: str = "train",
    labels_csv: str | os.PathLike[str] | None = None,
    labels_key: str = "uId",
    on_error: str = "raise",
) -> Conversion:
    """Convert the IU X-ray report XMLs (archive or folder) to ``report`` records.

    ``image`` = ``<image_dir>/<parentImage id><image_ext>``. ``split``: a split name for all, or
    ``"hash:0.7,0.1,0.2"`` to assign train/validate/test deterministically by report (IU X-ray
    has no official split). ``labels_csv``: optional CheXpert-format labels keyed by the column
    ``labels_key`` holding the report ``uId``. ``on_error="skip"`` counts bad reports instead of
    raising.
    """
    conv = Conversion(SOURCE, on_error=_check_on_error(on_error))
    split_of = splitter(split)
    extra: Mapping[Any, dict[str, int | None]] = (
        read_label_csv(labels_csv, labels_key) if labels_csv is not None else {}
    )
    for name, data in iter_reports(reports):
        conv.inputs += 1
        try:
            rep = parse_report(name, data)
        except ManifestError as exc:
            conv.reject(exc)
            continue
        text = join_report(str(rep["findings"]), str(rep["impression"]))
        images = list(rep["images"])  # type: ignore[call-overload]
        if not text:
            conv.skipped["no findings or impression"] += 1
            continue
        if not images:
            conv.skipped["no images"] += 1
            continue
        uid = str(rep["uid"])
        if uid in extra:
            labels = dict(extra[uid])
        elif rep["mesh_major"] == ["normal"]:
            labels = {NO_FINDING: 1}
        else:
            labels = {}
        sp = split_of(uid)
        for image_id in images:
            rec = make_record(
                id=f"{SOURCE}/{image_id}",
                image=join_image(image_dir, f"{image_id}{image_ext}"),
                source=SOURCE,
                task="report",
                split=sp,
                text=text,
                labels=labels,
            )
            conv.records.append(validate_record(rec, Where(name, None)))
    return conv
