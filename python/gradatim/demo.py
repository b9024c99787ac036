"""``gradatim demo``: the loader on the embedded phantom data, then the image pipeline on a real
chest radiograph, step by step; with ``--train-out`` the mission end to end (difficulty, CURE and
RRGCL training runs of a tiny model, evaluation, plots; ``gradatim.demo_training``).

Part 1 writes a SYNTHETIC phantom data set (``gradatim.datasets.phantom``: chest-like images,
templated reports, boxes, several sources and tasks), and runs one epoch of ``gradatim.DataLoader``
over it with CURE's training augmentation and 2 Rust worker threads, printing what a training step
receives. Part 2 uses ``RG1_UNCR.dcm`` from the ``pydicom-data`` package (a real PA chest
radiograph, 1841x1955, 16-bit, MONOCHROME1) and its JPEG 2000 twin; ``--image`` takes any JPEG,
PNG or DICOM.
It prints what each step did and how long it took, and writes the augmented image with its box
overlay as a PNG.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from gradatim import cli_paths, image


def find_radiograph(name: str = "RG1_UNCR.dcm") -> Path | None:
    """Locate a file of the ``pydicom-data`` package (module ``data_store``) without pydicom."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    return path if path.is_file() else None


def write_png(path: Path, img: np.ndarray) -> None:
    """Write a grey uint8 image as PNG (zlib only; the demo needs no imaging library)."""
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    path.write_bytes(png + chunk(b"IEND", b""))


def affine(rotate_deg: float, scale: float, tx: float, ty: float, center: tuple[float, float]):
    """Forward 2x3 matrix: rotate and scale about ``center``, then translate (OpenCV convention)."""
    a = math.radians(rotate_deg)
    cos, sin = scale * math.cos(a), scale * math.sin(a)
    cx, cy = center
    return np.array(
        [[cos, sin, (1 - cos) * cx - sin * cy + tx], [-sin, cos, sin * cx + (1 - cos) * cy + ty]]
    )


def _timed(label: str, rows: list[tuple[str, float, str]], fn: Any, *args: Any, **kw: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    ms = (time.perf_counter() - t0) * 1e3
    first = out[0] if isinstance(out, tuple) else out
    rows.append((label, ms, f"{first.dtype} {tuple(first.shape)}"))
    return out


def run(path: Path, out: Path, size: int = 512) -> int:
    """Run decode -> CLAHE -> affine (with a box) -> area resize -> normalise -> overlay."""
    rows: list[tuple[str, float, str]] = []
    img = _timed(f"decode {path.name}", rows, image.decode, path, mode="gray")
    twin = find_radiograph("RG1_J2KR.dcm") if path.name == "RG1_UNCR.dcm" else None
    if twin is not None:
        j2k = _timed("decode JPEG 2000 twin", rows, image.decode, twin)
        same = np.array_equal(img, j2k)
        print(f"JPEG 2000 lossless twin identical to the uncompressed file: {same}")
    if img.dtype == np.uint16:  # window the stored range to 8 bits (vectorised, once)
        lo, hi = np.percentile(img, [0.5, 99.5])
        img = ((np.clip(img, lo, hi) - lo) * (255.0 / max(hi - lo, 1))).astype(np.uint8)
    h, w = img.shape
    eq = _timed("CLAHE clip 4.0, 8x8 tiles (CURE)", rows, image.clahe, img, 4.0, (8, 8))
    box = np.array([[0.30 * w, 0.45 * h, 0.75 * w, 0.85 * h]])  # roughly the cardiac silhouette
    m = affine(10.0, 1.05, 0.04 * w, -0.03 * h, (w / 2, h / 2))
    warped, boxes, keep = _timed(
        "affine: rotate 10, scale 1.05, shift", rows, image.warp_affine, eq, m, (w, h), boxes=box
    )
    small = _timed(f"area resize to {size}x{size}", rows, image.resize, warped, (size, size))
    sx, sy = size / w, size / h
    boxes_small = boxes * np.array([sx, sy, sx, sy])
    x = _timed("normalise to float32", rows, image.normalize, small, 0.5, 0.25)
    overlay = _timed("box overlay (MedCLM Easy stage)", rows, image.draw_boxes, small, boxes_small)
    print()
    print(f"{'step':<40} {'ms':>8}  output")
    for label, ms, what in rows:
        print(f"{label:<40} {ms:8.2f}  {what}")
    print()
    print(
        f"box {np.round(box[0]).tolist()} -> {np.round(boxes_small[0], 1).tolist()} "
        f"at {size}x{size} (kept: {keep.tolist()})"
    )
    print(f"float32 batch-ready pixels: mean {x.mean():+.3f}, std {x.std():.3f}")
    write_png(out, overlay)
    print(f"wrote {out}")
    return 0


def run_loader(out_dir: Path, n: int, size: int) -> None:
    """One epoch of the drop-in DataLoader over a freshly generated phantom data set."""
    import torch

    from gradatim.data import Augment, DataLoader, ManifestDataset
    from gradatim.datasets import phantom

    t0 = time.perf_counter()
    manifest = phantom.generate(out_dir, n=n, seed=0, size=(size, size))
    print(f"phantom data (synthetic): {n} studies -> {manifest} ({time.perf_counter() - t0:.1f} s)")
    ds = ManifestDataset(manifest, image_size=(size, size), augment=Augment.cure_train())
    loader = DataLoader(
        ds, batch_size=16, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    for k, batch in enumerate(loader):
        if k == 0:
            px = batch["pixel_values"]
            print(
                f"batch: pixel_values {tuple(px.shape)} {px.dtype}, boxes "
                f"{tuple(batch['boxes'].shape)}, tasks {sorted(set(batch['task']))}"
            )
            for task, prompt, target in list(
                zip(batch["task"], batch["prompt"], batch["target"], strict=True)
            )[:4]:
                print(f"  [{task}] {prompt!r} -> {target[:90]!r}")
    st = loader.stats()
    print(
        f"epoch: {st['batches']} batches, {st['samples']} images, "
        f"{st['images_per_s']:.0f} images/s, consumer stalled {st['stall_s']:.2f} s"
    )
    print()


def main(args: argparse.Namespace) -> int:
    if args.phantom > 0:
        run_loader(Path(args.out).with_suffix("") / "phantom", args.phantom, args.size)
    path = args.image or find_radiograph()
    if path is None:
        print("no image: install pydicom-data (pip install pydicom-data) or pass --image PATH")
        return 2
    code = run(Path(path), Path(args.out), args.size)
    if code == 0 and args.train_out:
        from gradatim.demo_training import run_training

        print()
        print("training: phantom data -> difficulty -> CURE and RRGCL runs -> evaluation")
        run_training(Path(args.train_out))
    return code


def add_parser(sub: Any) -> None:
    """Register ``gradatim demo``."""
    p = sub.add_parser(
        "demo", help="the loader on phantom data, the image pipeline on a radiograph"
    )
    p.add_argument("--image", help="JPEG, PNG or DICOM file (default: pydicom-data's RG1_UNCR.dcm)")
    p.add_argument("--out", default="gradatim-demo.png", help="where to write the overlay PNG")
    p.add_argument("--size", type=int, default=512, help="output side length")
    p.add_argument(
        "--phantom", type=int, default=96, help="phantom studies for the loader part (0: skip it)"
    )
    p.add_argument(
        "--train-out",
        default="",
        help="also run the training part (difficulty, CURE and RRGCL runs of a tiny model, "
        "evaluation, plots) and write its results here",
    )
    p.set_defaults(func=main)
    cli_paths.declare(p, inputs=["image"], outputs=["out"], output_dirs=["train_out"])
