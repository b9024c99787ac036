"""``gradatim manifest ...``: convert public chest X-ray datasets to manifests, check manifests.

Subcommands: ``from-iu-xray``, ``from-vindr``, ``from-nih``, ``from-mimic-cxr``, ``from-ms-cxr``,
``from-padchest-gr``, ``from-chest-imagenome`` (each writes JSONL, or Parquet with ``--parquet``
or a ``.parquet`` name), ``validate`` and ``pack`` (a packed ``.arrow`` manifest). They print
counts only: never report text, never an identifier. A bad input file exits with status 2 and a
message naming the file, line and field.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from gradatim import cli_paths
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
from gradatim.manifest.packed import pack_manifest

__all__ = ["CONVERTERS", "add_parser"]


def _write(conv: Conversion, args: argparse.Namespace) -> int:
    out = write_manifest(conv.records, args.out, parquet=True if args.parquet else None)
    print(conv.summary())
    print(f"wrote {len(conv.records)} records to {out}")
    return 0


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


@dataclass(frozen=True)
class _Opt:
    """One command-line argument of a converter: its flags, the ``convert`` parameter it fills
    (the argparse ``dest``; a positional when ``flags`` is one bare name) and argparse's other
    keywords."""

    flags: tuple[str, ...]
    param: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def positional(self) -> bool:
        """Whether this is a positional argument (a bare name, no leading dash)."""
        return not self.flags[0].startswith("-")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Register this argument on ``parser``; its value lands in ``args.<param>``."""
        if self.positional:
            parser.add_argument(self.param, **self.kwargs)
            return
        kwargs = {"dest": self.param, **self.kwargs}
        name = self.flags[0].lstrip("-").replace("-", "_")
        if self.param != name and "action" not in kwargs:
            kwargs["metavar"] = name.upper()  # help shows the flag's name, not the parameter's
        parser.add_argument(*self.flags, **kwargs)


def _opt(*flags: str, param: str | None = None, **kwargs: Any) -> _Opt:
    """An argument filling ``convert``'s ``param`` (default: the flag's name, as argparse's)."""
    name = flags[0].lstrip("-").replace("-", "_")
    return _Opt(flags, param or name, kwargs)


@dataclass(frozen=True)
class _Converter:
    """A ``from-...`` subcommand: the converter module and the arguments of its ``convert``
    (besides ``split`` and ``on_error``, which every converter takes from :func:`_common`)."""

    command: str
    help: str
    module: ModuleType
    opts: tuple[_Opt, ...]

    def run(self, args: argparse.Namespace) -> int:
        """Call the converter with the parsed arguments and write its manifest."""
        positional = [getattr(args, o.param) for o in self.opts if o.positional]
        keywords = {o.param: getattr(args, o.param) for o in self.opts if not o.positional}
        conv = self.module.convert(
            *positional, **keywords, split=args.split, on_error=args.on_error
        )
        return _write(conv, args)


_LABELS_CSV = "mimic-cxr-2.0.0-chexpert.csv(.gz)"

CONVERTERS: tuple[_Converter, ...] = (
    _Converter(
        "from-iu-xray",
        "IU X-ray / Open-i report XMLs -> report records",
        iu_xray,
        (
            _opt("reports", type=Path, help="NLMCXR_reports.tgz or a folder of report XMLs"),
            _opt("--image-dir", default="images", help="image folder under the root"),
            _opt("--image-ext", default=".png", help="image file extension (default .png)"),
            _opt(
                "--labels",
                param="labels_csv",
                type=Path,
                help="CheXpert-format label CSV keyed by report uId",
            ),
            _opt("--labels-key", default="uId", help="its key column (default uId)"),
        ),
    ),
    _Converter(
        "from-vindr",
        "VinDr-CXR annotation CSV -> phrase grounding",
        vindr,
        (
            _opt("annotations", type=Path, help="annotations_train.csv (or .csv.gz)"),
            _opt("--image-dir", default="train", help="image folder under the root"),
            _opt("--image-ext", default=".dicom", help="image extension (default .dicom)"),
            _opt(
                "--skip-normal",
                param="include_normal",
                action="store_false",
                help="drop images without boxes",
            ),
        ),
    ),
    _Converter(
        "from-nih",
        "NIH ChestX-ray14 BBox_List_2017.csv -> phrase grounding",
        nih,
        (
            _opt("bbox_list", type=Path, help="BBox_List_2017.csv (or .csv.gz)"),
            _opt("--image-dir", default="images", help="image folder under the root"),
            _opt("--data-entry", type=Path, help="Data_Entry_2017*.csv for complete labels"),
            _opt("--test-list", type=Path, help="test_list.txt: these images get split test"),
        ),
    ),
    _Converter(
        "from-mimic-cxr",
        "MIMIC-CXR-JPG + reports -> report records",
        mimic_cxr,
        (
            _opt("metadata", type=Path, help="mimic-cxr-2.0.0-metadata.csv(.gz)"),
            _opt("reports", type=Path, help="mimic-cxr-reports.zip or its extracted folder"),
            _opt("--split-csv", type=Path, help="mimic-cxr-2.0.0-split.csv(.gz)"),
            _opt("--labels", param="labels_csv", type=Path, help=_LABELS_CSV),
            _opt("--views", nargs="+", help="keep these ViewPosition values (e.g. PA AP)"),
            _opt("--image-dir", default="files", help="image folder under the root"),
            _opt("--image-ext", default=".jpg", help="image extension (default .jpg)"),
        ),
    ),
    _Converter(
        "from-ms-cxr",
        "MS-CXR CSV -> phrase grounding records",
        ms_cxr,
        (
            _opt("annotations", type=Path, help="MS_CXR_Local_Alignment_v1.x.csv"),
            _opt("--image-dir", default="", help="prefix for the CSV's image paths"),
            _opt("--image-ext", help="replace the image extension (e.g. .jpg for MIMIC-JPG)"),
            _opt("--labels", param="labels_csv", type=Path, help=_LABELS_CSV),
        ),
    ),
    _Converter(
        "from-padchest-gr",
        "PadChest-GR JSON -> grounded report records",
        padchest_gr,
        (
            _opt("reports_json", type=Path, help="grounded_reports_<date>.json"),
            _opt("--master-table", type=Path, help="master_table.csv (splits)"),
            _opt("--image-sizes", type=Path, help="CSV ImageID,width,height"),
            _opt("--root", type=Path, help="manifest root, to read sizes from PNG headers"),
            _opt("--image-dir", default="", help="image folder under the root"),
            _opt("--language", choices=("en", "es"), default="en"),
            _opt("--reader", choices=("first", "second", "both"), default="first"),
            _opt("--box-units", choices=("normalized", "pixel"), default="normalized"),
        ),
    ),
    _Converter(
        "from-chest-imagenome",
        "Chest ImaGenome scene graphs -> anatomy-grounded records",
        chest_imagenome,
        (
            _opt("scene_graphs", type=Path, help="folder or zip of *_SceneGraph.json"),
            _opt("--splits", type=Path, help="CSV dicom_id,split or folder of train/valid/test"),
            _opt("--labels", param="labels_csv", type=Path, help=_LABELS_CSV),
            _opt("--image-dir", default="files", help="MIMIC-CXR-JPG image folder"),
            _opt("--image-ext", default=".jpg"),
            _opt("--all-regions", action="store_true", help="keep regions beyond the 29"),
            _opt("--descriptions", choices=("positive", "all"), default="positive"),
        ),
    ),
)
"""Every ``gradatim manifest from-...`` subcommand, in ``--help`` order."""


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


def _pack(args: argparse.Namespace) -> int:
    count = pack_manifest(args.manifest, args.out)
    print(f"packed {count} records into {args.out}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``gradatim manifest`` and its subcommands."""
    p = sub.add_parser("manifest", help="convert datasets to gradatim manifests; validate them")
    msub = p.add_subparsers(dest="manifest_command", required=True, metavar="SUBCOMMAND")

    for conv in CONVERTERS:
        q = msub.add_parser(conv.command, help=conv.help)
        for o in conv.opts:
            o.add_to(q)
        _common(q)
        q.set_defaults(func=conv.run)
        inputs = [o.param for o in conv.opts if o.positional or o.kwargs.get("type") is Path]
        cli_paths.declare(q, inputs=inputs, outputs=["out"])

    q = msub.add_parser("validate", help="check manifests against the schema; print counts")
    q.add_argument("manifests", nargs="+", type=Path, help="JSONL, Parquet or packed manifests")
    q.set_defaults(func=_validate)
    cli_paths.declare(q, inputs=["manifests"])

    q = msub.add_parser(
        "pack", help="validate a manifest and write it packed (Arrow columns, memory-mapped)"
    )
    q.add_argument("manifest", type=Path, help="JSONL or Parquet manifest")
    q.add_argument("-o", "--out", required=True, type=Path, help="packed manifest (.arrow)")
    q.set_defaults(func=_pack)
    cli_paths.declare(q, inputs=["manifest"], outputs=["out"])
