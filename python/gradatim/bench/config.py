"""What ``gradatim bench`` measures: the kinds of loader, the exit codes, the validated
configuration both loaders are built from, and the :class:`gradatim.ManifestDataset` it names."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_BELOW_THRESHOLD",
    "EXIT_FAILED",
    "GRADATIM",
    "LABELS",
    "SCHEMA",
    "TORCH_OPENCV",
    "bench_config",
    "make_dataset",
]

SCHEMA = "gradatim.bench/1"
GRADATIM = "gradatim"
TORCH_OPENCV = "torch+opencv"
LABELS = {
    GRADATIM: "gradatim.DataLoader (Rust threads)",
    TORCH_OPENCV: "torch DataLoader + OpenCV (reduced decode, ops at output size)",
}
EXIT_BELOW_THRESHOLD = 2
EXIT_FAILED = 1


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON-able configuration both loaders are built from (validated)."""
    from gradatim.data.augment import Augment

    if args.augment is None:
        augment = Augment()
    else:
        text = Path(args.augment).read_text(encoding="utf-8")
        augment = Augment.from_dict(json.loads(text))
    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"gradatim bench: manifest {manifest} does not exist")
    for name in ("batch_size", "epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"gradatim bench: --{name.replace('_', '-')} must be >= 1")
    if args.workers < 0 or args.warmup_batches < 0 or args.step_ms < 0:
        raise ValueError("gradatim bench: --workers, --warmup-batches, --step-ms must be >= 0")
    if args.limit is not None and args.limit < 1:
        raise ValueError("gradatim bench: --limit must be >= 1")
    w, h = (int(v) for v in args.image_size)
    return {
        "manifest": str(manifest.resolve()),
        "root": str(Path(args.root).resolve()) if args.root else None,
        "allow_outside_root": bool(args.allow_outside_root),
        "limit": args.limit,
        "image_size": [w, h],
        "channels": int(args.channels),
        "augment": augment.to_dict(),
        "batch_size": int(args.batch_size),
        "workers": int(args.workers),
        "epochs": int(args.epochs),
        "warmup_batches": int(args.warmup_batches),
        "step_ms": float(args.step_ms),
        "seed": int(args.seed),
    }


def _records_and_root(config: Mapping[str, Any]) -> tuple[Any, str | None]:
    """What to hand :class:`ManifestDataset`: the manifest path, or its first ``limit`` records
    (then with the manifest's folder as root, so relative paths resolve the same way)."""
    manifest, root = config["manifest"], config.get("root")
    if not config.get("limit"):
        return manifest, root
    from gradatim.manifest.common import read_manifest

    records = read_manifest(manifest)[: int(config["limit"])]
    return records, root or str(Path(manifest).resolve().parent)


def make_dataset(config: Mapping[str, Any]) -> Any:
    """The :class:`gradatim.ManifestDataset` of ``config`` (validates the manifest)."""
    from gradatim.data.augment import Augment
    from gradatim.data.dataset import ManifestDataset

    manifest, root = _records_and_root(config)
    return ManifestDataset(
        manifest,
        root=root,
        image_size=tuple(config["image_size"]),
        augment=Augment.from_dict(dict(config["augment"])),
        channels=int(config["channels"]),
        allow_outside_root=bool(config.get("allow_outside_root", False)),
        seed=int(config["seed"]),
        cache=config.get("cache"),
    )
