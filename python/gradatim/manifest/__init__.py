"""Manifests: the one-record-per-sample index the loader reads, and converters that build one
from the public chest X-ray datasets (docs/manifest.md).

- :mod:`~gradatim.manifest.common`: the record builder, the schema check
  (:func:`validate_record`), the JSONL / Parquet writer and reader;
- :mod:`~gradatim.manifest.packed`: packed manifests (Arrow columns, memory-mapped), for
  manifests of hundreds of thousands of records: :func:`pack_manifest`;
- :mod:`~gradatim.manifest.classes`: the 14 CheXpert labels and RRGCL's
  :func:`sample_classes`;
- :mod:`~gradatim.manifest.label_csv`: CheXpert-format label files -> ``labels`` dicts;
- :mod:`~gradatim.manifest.anatomy`: Chest ImaGenome's 29 region names;
- one converter per dataset: :mod:`~gradatim.manifest.iu_xray`, :mod:`~gradatim.manifest.vindr`,
  :mod:`~gradatim.manifest.nih`, :mod:`~gradatim.manifest.mimic_cxr`,
  :mod:`~gradatim.manifest.ms_cxr`, :mod:`~gradatim.manifest.padchest_gr`,
  :mod:`~gradatim.manifest.chest_imagenome`; each has ``convert(...) -> Conversion``.
"""

from __future__ import annotations

from gradatim.manifest.anatomy import ANATOMY_REGIONS, is_anatomy_region
from gradatim.manifest.classes import CHEXPERT_LABELS, sample_classes
from gradatim.manifest.common import (
    FIELDS,
    TASKS,
    Conversion,
    Where,
    is_packed,
    join_report,
    make_box,
    make_record,
    read_manifest,
    validate_record,
    write_manifest,
)
from gradatim.manifest.packed import pack_manifest

__all__ = [
    "ANATOMY_REGIONS",
    "CHEXPERT_LABELS",
    "FIELDS",
    "TASKS",
    "Conversion",
    "Where",
    "is_anatomy_region",
    "is_packed",
    "join_report",
    "make_box",
    "make_record",
    "pack_manifest",
    "read_manifest",
    "sample_classes",
    "validate_record",
    "write_manifest",
]
