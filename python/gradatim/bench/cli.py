"""``gradatim bench``: the command line - measure, print the table, write the JSON, check the
thresholds (exit status 2 below them, 1 when a loader fails)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from typing import Any

from gradatim import cli_paths
from gradatim.bench.config import (
    EXIT_BELOW_THRESHOLD,
    EXIT_FAILED,
    GRADATIM,
    SCHEMA,
    TORCH_OPENCV,
    bench_config,
    make_dataset,
)
from gradatim.bench.machine import machine_info
from gradatim.bench.report import format_table, write_json
from gradatim.bench.runner import paired_ratios, run_bench

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """``gradatim bench``: measure, print the table, write JSON, check the thresholds."""
    if args.no_baseline and args.min_ratio is not None:
        print("gradatim bench: --min-ratio needs the baseline; drop --no-baseline", file=sys.stderr)
        return EXIT_BELOW_THRESHOLD
    try:
        config = bench_config(args)
        n = len(make_dataset(config))  # validates the manifest and augmentation up front
    except (OSError, ValueError) as exc:
        cli_paths.report("bench", exc)
        return EXIT_FAILED
    kinds = [GRADATIM]
    notes: list[str] = []
    if not args.no_baseline:
        if importlib.util.find_spec("cv2") is None:
            notes.append(
                "OpenCV (cv2) is not installed, so the torch DataLoader baseline cannot run; "
                "measuring gradatim only (pip install opencv-python-headless for the comparison)"
            )
        else:
            kinds.append(TORCH_OPENCV)
    w, h = config["image_size"]
    print(
        f"gradatim bench: {n} samples -> {w}x{h}, batch {config['batch_size']}, "
        f"{config['workers']} workers, {config['warmup_batches']} warm-up batches + "
        f"{config['epochs']} epochs, {args.repeats} run(s) each"
    )
    for note in notes:
        print(f"note: {note}")
    try:
        results = run_bench(config, kinds, repeats=args.repeats, max_others=args.max_others)
    except RuntimeError as exc:
        print(f"gradatim bench: {exc}", file=sys.stderr)
        return EXIT_FAILED
    g = results[GRADATIM]["images_per_s"]
    ratio = paired_ratios(results).get(TORCH_OPENCV)
    print()
    print(format_table(results, ratios=paired_ratios(results)))
    print()
    if ratio is not None:
        print(f"ratio gradatim / torch+opencv: {ratio:.2f}x")
    failures = []
    if args.min_images_per_s is not None and g < args.min_images_per_s:
        failures.append(f"{g:.1f} images/s is below --min-images-per-s {args.min_images_per_s:g}")
    if args.min_ratio is not None:
        if ratio is None:
            failures.append("--min-ratio cannot be checked: the baseline did not run (no OpenCV)")
        elif ratio < args.min_ratio:
            failures.append(f"ratio {ratio:.2f} is below --min-ratio {args.min_ratio:g}")
    payload = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "config": {**config, "repeats": args.repeats, "samples": n, "max_others": args.max_others},
        "results": results,
        "ratios": {"gradatim/torch+opencv": ratio},
        "thresholds": {"min_ratio": args.min_ratio, "min_images_per_s": args.min_images_per_s},
        "notes": notes,
        "passed": not failures,
        "failures": failures,
    }
    write_json(args.json, payload)
    for f in failures:
        print(f"gradatim bench: FAILED: {f}", file=sys.stderr)
    return EXIT_BELOW_THRESHOLD if failures else 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gradatim bench`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="throughput of gradatim vs a torch DataLoader baseline on your own manifest",
        description=(
            "Measure gradatim.DataLoader and a torch.utils.data.DataLoader + OpenCV baseline "
            "doing the same work on MANIFEST (each in a fresh subprocess); print a table, write "
            "JSON; exit 2 below --min-ratio / --min-images-per-s."
        ),
    )
    p.add_argument("manifest", metavar="MANIFEST", help="JSONL or Parquet manifest")
    p.add_argument("--augment", metavar="CONFIG", help="Augment as JSON (default: Augment())")
    p.add_argument("--image-size", nargs=2, type=int, default=(512, 512), metavar=("W", "H"))
    p.add_argument("--channels", type=int, choices=(1, 3), default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="threads (gradatim) / processes (torch)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after the warm-up")
    p.add_argument("--warmup-batches", type=int, default=2, metavar="N")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N samples only")
    p.add_argument("--root", default=None, help="image root (default: the manifest's folder)")
    p.add_argument("--allow-outside-root", action="store_true")
    p.add_argument("--step-ms", type=float, default=0.0, help="simulated training step per batch")
    p.add_argument("--repeats", type=int, default=1, help="runs per loader; the median is kept")
    p.add_argument(
        "--max-others",
        type=float,
        default=None,
        metavar="SHARE",
        help="re-measure a run (up to 3 times) when other processes took more than this share "
        "of the CPUs meanwhile (e.g. 0.1 on a shared CI runner)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="gradatim-bench.json", metavar="OUT", help="'-': stdout")
    p.add_argument("--min-ratio", type=float, default=None, metavar="X")
    p.add_argument("--min-images-per-s", type=float, default=None, metavar="Y")
    p.add_argument("--no-baseline", action="store_true", help="measure gradatim only")
    p.set_defaults(func=run)
    cli_paths.declare(p, inputs=["manifest", "root"], outputs=["json"])
    return p
