"""``gradatim manifest ...``: convert public chest X-ray datasets to manifests, check manifests.

Subcommands: ``from-iu-xray``, ``from-vindr``, ``from-nih``, ``from-mimic-cxr``, ``from-ms-cxr``,
``from-padchest-gr``, ``from-chest-imagenome`` (each writes JSONL, or Parquet with ``--parquet``
or a ``.parquet`` name) and ``validate``. They print counts only: never report text, never an
identifier. A bad input file exits with status 2 and a message naming the file, line and field.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from gradatim.errors import ManifestError
from gradatim.manifest import (
    chest_imagenome,
    iu_xray,
    mimic_cxr,
    ms_cxr,
    nih,
    padchest_gr,
    vindr,
)
from gradatim.manifest.classes import sample_classes
from gradatim.manifest.common import Conversion, read_manifest, write_manifest

__all__ = ["add_parser"]


def _write(conv: Conversion, args: argparse.Namespace) -> int:
    out = write_manifest(conv.records, args.out, parquet=True if args.parquet else None)
    print(conv.summary())
    print(f"wrote {len(conv.records)} records to {out}")
    return 0


def _guarded(run: Any) -> Any:
    def main(args: argparse.Namespace) -> int:
        """Run the subcommand; a ManifestError becomes a message and exit status 2."""
        try:
            return int(run(args))
        except ManifestError as exc:
            print(f"gradatim manifest: error: {exc}", file=sys.stderr)
            return 2

    return main


def _common(p: argparse.ArgumentParser, split_help: str = "") -> None:
    p.add_argument("-o", "--out", required=True, help="manifest to write (.jsonl or .parquet)")
    p.add_argument("--parquet", action="store_true", help="write Parquet whatever the name")
    p.add_argument(
        "--split",
        default="train",
        help="split for samples the input does not place: a name, or hash:TRAIN,VAL,TEST "
        "fractions for a deterministic split (default: train)" + split_help,
    )
    p.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="stop at the first bad input (default) or skip and count it",
    )


def _iu(args: argparse.Namespace) -> int:
    return _write(
        iu_xray.convert(
            args.reports,
            image_dir=args.image_dir,
            image_ext=args.image_ext,
            split=args.split,
            labels_csv=args.labels,
            labels_key=args.labels_key,
            on_error=args.on_error,
        ),
        args,
    )


def _vindr(args: argparse.Namespace) -> int:
    return _write(
        vindr.convert(
            args.annotations,
            image_dir=args.image_dir,
            image_ext=args.image_ext,
            split=args.split,
            include_normal=not args.skip_normal,
            on_error=args.on_error,
        ),
        args,
    )


def _nih(args: argparse.Namespace) -> int:
    return _write(
        nih.convert(
            args.bbox_list,
            image_dir=args.image_dir,
            data_entry=args.data_entry,
            test_list=args.test_list,
            split=args.split,
            on_error=args.on_error,
        ),
        args,
    )


def _mimic(args: argparse.Namespace) -> int:
    return _write(
        mimic_cxr.convert(
            args.metadata,
            args.reports,
            split_csv=args.split_csv,
            labels_csv=args.labels,
            views=args.views,
            image_dir=args.image_dir,
            image_ext=args.image_ext,
            split=args.split,
            on_error=args.on_error,
        ),
        args,
    )


def _ms_cxr(args: argparse.Namespace) -> int:
    return _write(
        ms_cxr.convert(
            args.annotations,
            image_dir=args.image_dir,
            image_ext=args.image_ext,
            labels_csv=args.labels,
            split=args.split,
            on_error=args.on_error,
        ),
        args,
    )


def _padchest(args: argparse.Namespace) -> int:
    return _write(
        padchest_gr.convert(
            args.reports_json,
            master_table=args.master_table,
            image_sizes=args.image_sizes,
            root=args.root,
            image_dir=args.image_dir,
            language=args.language,
            reader=args.reader,
            box_units=args.box_units,
            split=args.split,
            on_error=args.on_error,
        ),
        args,
    )


def _imagenome(args: argparse.Namespace) -> int:
    return _write(
        chest_imagenome.convert(
            args.scene_graphs,
            splits=args.splits,
            labels_csv=args.labels,
            image_dir=args.image_dir,
            image_ext=args.image_ext,
            split=args.split,
            all_regions=args.all_regions,
            descriptions=args.descriptions,
            on_error=args.on_error,
        ),
        args,
    )


def _validate(args: argparse.Namespace) -> int:
    for path in args.manifests:
        records = read_manifest(path)
        print(f"{path}: {len(records)} valid records")
        for key in ("source", "task", "split"):
            counts = Counter(r[key] for r in records)
            print(f"  {key}: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        classes = Counter(c for r in records for c in sample_classes(r["labels"]))
        print("  classes: " + ", ".join(f"{k} {n}" for k, n in sorted(classes.items())))
        print(f"  boxes: {sum(len(r['boxes']) for r in records)}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``gradatim manifest`` and its subcommands."""
    p = sub.add_parser("manifest", help="convert datasets to gradatim manifests; validate them")
    msub = p.add_subparsers(dest="manifest_command", required=True, metavar="SUBCOMMAND")

    q = msub.add_parser("from-iu-xray", help="IU X-ray / Open-i report XMLs -> report records")
    q.add_argument("reports", type=Path, help="NLMCXR_reports.tgz or a folder of report XMLs")
    q.add_argument("--image-dir", default="images", help="image folder under the root")
    q.add_argument("--image-ext", default=".png", help="image file extension (default .png)")
    q.add_argument("--labels", type=Path, help="CheXpert-format label CSV keyed by report uId")
    q.add_argument("--labels-key", default="uId", help="its key column (default uId)")
    _common(q)
    q.set_defaults(func=_guarded(_iu))

    q = msub.add_parser("from-vindr", help="VinDr-CXR annotation CSV -> phrase grounding")
    q.add_argument("annotations", type=Path, help="annotations_train.csv (or .csv.gz)")
    q.add_argument("--image-dir", default="train", help="image folder under the root")
    q.add_argument("--image-ext", default=".dicom", help="image extension (default .dicom)")
    q.add_argument("--skip-normal", action="store_true", help="drop images without boxes")
    _common(q)
    q.set_defaults(func=_guarded(_vindr))

    q = msub.add_parser("from-nih", help="NIH ChestX-ray14 BBox_List_2017.csv -> phrase grounding")
    q.add_argument("bbox_list", type=Path, help="BBox_List_2017.csv (or .csv.gz)")
    q.add_argument("--image-dir", default="images", help="image folder under the root")
    q.add_argument("--data-entry", type=Path, help="Data_Entry_2017*.csv for complete labels")
    q.add_argument("--test-list", type=Path, help="test_list.txt: these images get split test")
    _common(q)
    q.set_defaults(func=_guarded(_nih))

    q = msub.add_parser("from-mimic-cxr", help="MIMIC-CXR-JPG + reports -> report records")
    q.add_argument("metadata", type=Path, help="mimic-cxr-2.0.0-metadata.csv(.gz)")
    q.add_argument("reports", type=Path, help="mimic-cxr-reports.zip or its extracted folder")
    q.add_argument("--split-csv", type=Path, help="mimic-cxr-2.0.0-split.csv(.gz)")
    q.add_argument("--labels", type=Path, help="mimic-cxr-2.0.0-chexpert.csv(.gz)")
    q.add_argument("--views", nargs="+", help="keep these ViewPosition values (e.g. PA AP)")
    q.add_argument("--image-dir", default="files", help="image folder under the root")
    q.add_argument("--image-ext", default=".jpg", help="image extension (default .jpg)")
    _common(q)
    q.set_defaults(func=_guarded(_mimic))

    q = msub.add_parser("from-ms-cxr", help="MS-CXR CSV -> phrase grounding records")
    q.add_argument("annotations", type=Path, help="MS_CXR_Local_Alignment_v1.x.csv")
    q.add_argument("--image-dir", default="", help="prefix for the CSV's image paths")
    q.add_argument("--image-ext", help="replace the image extension (e.g. .jpg for MIMIC-JPG)")
    q.add_argument("--labels", type=Path, help="mimic-cxr-2.0.0-chexpert.csv(.gz)")
    _common(q)
    q.set_defaults(func=_guarded(_ms_cxr))

    q = msub.add_parser("from-padchest-gr", help="PadChest-GR JSON -> grounded report records")
    q.add_argument("reports_json", type=Path, help="grounded_reports_<date>.json")
    q.add_argument("--master-table", type=Path, help="master_table.csv (splits)")
    q.add_argument("--image-sizes", type=Path, help="CSV ImageID,width,height")
    q.add_argument("--root", type=Path, help="manifest root, to read sizes from PNG headers")
    q.add_argument("--image-dir", default="", help="image folder under the root")
    q.add_argument("--language", choices=("en", "es"), default="en")
    q.add_argument("--reader", choices=("first", "second", "both"), default="first")
    q.add_argument("--box-units", choices=("normalized", "pixel"), default="normalized")
    _common(q)
    q.set_defaults(func=_guarded(_padchest))

    q = msub.add_parser(
        "from-chest-imagenome", help="Chest ImaGenome scene graphs -> anatomy-grounded records"
    )
    q.add_argument("scene_graphs", type=Path, help="folder or zip of *_SceneGraph.json")
    q.add_argument("--splits", type=Path, help="CSV dicom_id,split or folder of train/valid/test")
    q.add_argument("--labels", type=Path, help="mimic-cxr-2.0.0-chexpert.csv(.gz)")
    q.add_argument("--image-dir", default="files", help="MIMIC-CXR-JPG image folder")
    q.add_argument("--image-ext", default=".jpg")
    q.add_argument("--all-regions", action="store_true", help="keep regions beyond the 29")
    q.add_argument("--descriptions", choices=("positive", "all"), default="positive")
    _common(q)
    q.set_defaults(func=_guarded(_imagenome))

    q = msub.add_parser("validate", help="check manifests against the schema; print counts")
    q.add_argument("manifests", nargs="+", type=Path, help="JSONL or Parquet manifests")
    q.set_defaults(func=_guarded(_validate))
