"""``gradatim bench``: measure your own data and augmentation with gradatim's loader against a
strong ``torch.utils.data.DataLoader`` baseline doing the same work, and guard it in CI.

    gradatim bench train.jsonl --augment augment.json --image-size 512 512 \\
        --batch-size 16 --workers 2 --epochs 2 --json bench.json --min-ratio 1.0

What is compared (both read the same manifest, same output size, batch size and worker count):

- ``gradatim``: :class:`gradatim.DataLoader` over :class:`gradatim.ManifestDataset` (Rust threads:
  reduced JPEG decode, crop/area resize, CLAHE, affine warp with boxes, normalise, one batch
  buffer; also renders the box-aware prompt/target text, which the baseline does not).
- ``torch+opencv``: ``torch.utils.data.DataLoader`` (worker *processes*, persistent, prefetch 2)
  over :class:`OpenCVDataset`, a deliberately strong baseline: the file is decoded by OpenCV at the
  same reduced JPEG scale (``IMREAD_REDUCED_GRAYSCALE_k``), then the same operations run with
  OpenCV at the output size (random resized crop, area resize, CLAHE, ``warpAffine`` with a random
  matrix drawn from the same distributions, boxes through the same matrix, flip, normalise to
  float32 CHW). OpenCV runs one thread per worker, so neither side oversubscribes the cores.

How it is measured: each loader runs in a fresh Python subprocess, so start-up, imports and peak
memory are its own. The first ``--warmup-batches`` batches are not timed (worker start-up, page
cache, allocator); the clock starts when the last of them arrives and runs through the rest of
that epoch plus ``--epochs`` further full epochs. ``images/s`` = timed samples / timed wall
time (with ``--repeats`` the runs interleave, each loader's median run is shown and the ratio is
the median of per-repeat ratios); ``stall`` = time the consumer waited inside ``next()`` (with
``--step-ms`` it simulates a training step per batch, so stall shows whether the loader keeps
up).

Peak memory, per loader (Linux; elsewhere only ``ru_maxrss``): while the timed epochs run, the
parent reads every process's ``VmHWM`` (peak RSS) every 0.1 s - the main process's, taken together
with its own ``ru_maxrss`` (which can miss a peak that glibc returned with ``madvise``), and each
worker process's (torch's workers are processes; gradatim's are threads). ``RSS total`` sums them,
counting pages shared between forked workers and their parent once per process, as ``ps`` would.
The fair total is the proportional set size (PSS) of the tree; reading it costs ~10 ms per process
that imported torch, so it is read only during one more, untimed epoch after the timed ones
(``memory_pass``). ``rss_after_imports_mb`` says how much was there before the loader was built
(torch alone is ~0.5 GB). ``RUSAGE_CHILDREN`` is not used: a helper that an import spawns
(``ldconfig -p`` from ``ctypes.util``) is charged the parent's whole RSS there.

Exit status: 0, or 2 when gradatim is below ``--min-ratio`` (its images/s divided by the
baseline's) or ``--min-images-per-s`` (1 when a loader fails).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SCHEMA",
    "OpenCVDataset",
    "add_parser",
    "child_main",
    "format_table",
    "machine_info",
    "measure_loader",
    "measure_subprocess",
    "run",
    "run_bench",
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

# ----------------------------------------------------------------------------------------------
# configuration


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
    from gradatim.data.dataset import read_manifest_lines

    lines = [ln for ln in read_manifest_lines(manifest).splitlines() if ln.strip()]
    records = [json.loads(ln) for ln in lines[: int(config["limit"])]]
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
    )


# ----------------------------------------------------------------------------------------------
# the baseline: torch DataLoader over OpenCV, doing the same work


def _image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's SOF or a PNG's IHDR header, without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # standalone markers
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(data[i + 5 : i + 7], "big")
            w = int.from_bytes(data[i + 7 : i + 9], "big")
            return w, h
        i += 2 + length
    return None


def reduction_denominator(width: int, height: int, target: tuple[int, int]) -> int:
    """Largest JPEG DCT scale 1/d (d in 8, 4, 2) whose output is still at least ``target``
    (gradatim's and OpenCV's ``IMREAD_REDUCED_*`` rule: the output is ``ceil(size / d)``)."""
    tw, th = target
    for d in (8, 4, 2):
        if -(-width // d) >= tw and -(-height // d) >= th:
            return d
    return 1


def centred_affine(
    angle: float, scale: float, shear: float, tx: float, ty: float, cx: float, cy: float
) -> np.ndarray:
    """Forward 2x3 matrix about ``(cx, cy)``: scale, shear, rotate ``angle`` degrees (OpenCV's
    ``getRotationMatrix2D`` sense), translate - the same construction as gradatim's plans."""
    s, c = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    k = math.tan(math.radians(shear))
    a = [[c * scale, (c * k + s) * scale], [-s * scale, (-s * k + c) * scale]]
    return np.array(
        [
            [a[0][0], a[0][1], cx + tx - a[0][0] * cx - a[0][1] * cy],
            [a[1][0], a[1][1], cy + ty - a[1][0] * cx - a[1][1] * cy],
        ]
    )


def _happens(rng: np.random.Generator, p: float) -> bool:
    return p >= 1.0 or (p > 0.0 and rng.random() < p)


class OpenCVDataset:
    """A map-style dataset for ``torch.utils.data.DataLoader``: gradatim's per-sample work done
    with OpenCV and NumPy.

    Built from a :class:`gradatim.ManifestDataset` (its resolved image paths, boxes and
    laterality flags) and the same augmentation. Per sample: read the file, decode with OpenCV at
    the reduced JPEG scale gradatim would use (``IMREAD_REDUCED_{GRAYSCALE,COLOR}_k``), random
    resized crop, resize to the output size (``INTER_AREA`` when shrinking, ``INTER_LINEAR``
    otherwise), CLAHE (grey), ``warpAffine`` (bilinear, constant 0 border) with a random matrix,
    the boxes through the same transforms, flip, and ``(v / max - mean) / std`` as float32 CHW.
    Returns ``pixel_values`` ``[C, H, W]``, ``boxes`` ``[max_boxes, 4]``, ``box_count``, ``index``
    (torch's default collate stacks them). Randomness comes from a per-process NumPy generator
    seeded from ``torch.initial_seed()`` (torch seeds each worker differently).
    """

    def __init__(self, dataset: Any, *, mean: float = 0.0, std: float = 1.0) -> None:
        n = len(dataset)
        records = [dataset.record(i) for i in range(n)]
        self.paths: list[str] = [r["image"] for r in records]
        self.boxes: list[np.ndarray] = [
            np.asarray([b["box"] for b in r["boxes"]], dtype=np.float64).reshape(-1, 4)
            for r in records
        ]
        self.flippable = [not r["laterality_sensitive"] for r in records]
        self.max_boxes = max(1, max(len(b) for b in self.boxes))
        self.size: tuple[int, int] = tuple(dataset.image_size)  # type: ignore[assignment]
        self.channels = int(dataset.channels)
        aug = dataset.augment
        self.clahe, self.affine, self.crop, self.flip = aug.clahe, aug.affine, aug.crop, aug.flip
        self.min_visible = float(aug.min_visible)
        crop_min = float(self.crop["scale"][0]) if self.crop else 1.0
        grow = 1.0 / math.sqrt(crop_min)
        self.reduce_to = (math.ceil(self.size[0] * grow), math.ceil(self.size[1] * grow))
        self.mean, self.std = float(mean), float(std)
        self._rng: np.random.Generator | None = None
        self._clahe_op: Any = None

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, path: str) -> tuple[np.ndarray, float]:
        import cv2

        with open(path, "rb") as f:
            data = f.read()
        buf = np.frombuffer(data, np.uint8)
        size = _image_size(data[:65536])
        grey = self.channels == 1
        if path.lower().endswith(".dcm") or data[128:132] == b"DICM":
            img = _decode_dicom(path)
            if grey and img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
            elif not grey and img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            return img, 1.0
        denom = 1
        if data[:2] == b"\xff\xd8" and size is not None:
            denom = reduction_denominator(size[0], size[1], self.reduce_to)
        if grey:
            flag = {
                1: cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH,
                2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
            }[denom]
        else:
            flag = {
                1: cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH,
                2: cv2.IMREAD_REDUCED_COLOR_2,
                4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8,
            }[denom]
        img = cv2.imdecode(buf, flag)
        if img is None:
            raise ValueError(f"OpenCV could not decode {path}")
        if not grey:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return img, 1.0 / denom

    def __getitem__(self, index: int) -> dict[str, Any]:
        import cv2
        import torch

        if self._rng is None:
            self._rng = np.random.default_rng(torch.initial_seed())
        if self._clahe_op is None and self.clahe is not None:
            tiles = tuple(int(t) for t in self.clahe["tile_grid"])
            self._clahe_op = cv2.createCLAHE(float(self.clahe["clip_limit"]), tiles)
        rng = self._rng
        w, h = self.size
        img, scale = self._decode(self.paths[index])
        ih, iw = img.shape[:2]
        # source px -> decoded px -> crop -> output px, as one 3x3 matrix for the boxes
        x0, y0, cw, ch = 0, 0, iw, ih
        if self.crop is not None and _happens(rng, float(self.crop.get("p", 1.0))):
            x0, y0, cw, ch = _random_crop(rng, self.crop, iw, ih)
            img = img[y0 : y0 + ch, x0 : x0 + cw]
        if (cw, ch) != (w, h):
            shrink = cw >= w and ch >= h
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            img = cv2.resize(img, (w, h), interpolation=interp)
        sx, sy = w / cw, h / ch
        total = np.array([[scale * sx, 0.0, -x0 * sx], [0.0, scale * sy, -y0 * sy], [0, 0, 1.0]])
        if self._clahe_op is not None and img.ndim == 2:
            if _happens(rng, float(self.clahe.get("p", 1.0))):  # type: ignore[union-attr]
                img = self._clahe_op.apply(img)
        a = self.affine
        if a is not None and _happens(rng, float(a.get("p", 1.0))):
            scale_lo, scale_hi = (float(v) for v in a.get("scale", (1.0, 1.0)))
            m = centred_affine(
                rng.uniform(-a.get("rotate", 0.0), a.get("rotate", 0.0)),
                rng.uniform(scale_lo, scale_hi),
                rng.uniform(-a.get("shear", 0.0), a.get("shear", 0.0)),
                rng.uniform(-a.get("translate", 0.0), a.get("translate", 0.0)) * w,
                rng.uniform(-a.get("translate", 0.0), a.get("translate", 0.0)) * h,
                w / 2,
                h / 2,
            )
            img = cv2.warpAffine(
                img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            total = np.vstack([m, [0, 0, 1.0]]) @ total
        boxes = _map_boxes(self.boxes[index], total, w, h, self.min_visible)
        flip = self.flip
        if flip is not None and self.flippable[index] and _happens(rng, float(flip.get("p", 0.5))):
            img = cv2.flip(img, 1)
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        maxv = 255.0 if img.dtype == np.uint8 else float(np.iinfo(img.dtype).max)
        k, b = np.float32(1.0 / (maxv * self.std)), np.float32(-self.mean / self.std)
        pix = img.astype(np.float32)
        pix *= k
        pix += b
        chw = pix[None] if pix.ndim == 2 else np.ascontiguousarray(pix.transpose(2, 0, 1))
        padded = np.zeros((self.max_boxes, 4), dtype=np.float32)
        padded[: len(boxes)] = boxes
        return {
            "pixel_values": torch.from_numpy(chw),
            "boxes": torch.from_numpy(padded),
            "box_count": len(boxes),
            "index": index,
        }


def _random_crop(
    rng: np.random.Generator, crop: Mapping[str, Any], iw: int, ih: int
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop rule (10 tries, else the whole image), in pixels."""
    lo, hi = (float(v) for v in crop.get("scale", (0.9, 1.0)))
    r_lo, r_hi = (float(v) for v in crop.get("ratio", (0.75, 4 / 3)))
    for _ in range(10):
        area = rng.uniform(lo, hi)
        ratio = math.exp(rng.uniform(math.log(r_lo), math.log(r_hi)))
        fw, fh = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if fw <= 1.0 and fh <= 1.0:
            fx, fy = rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh)
            cw = min(max(round(fw * iw), 1), iw)
            ch = min(max(round(fh * ih), 1), ih)
            return min(round(fx * iw), iw - cw), min(round(fy * ih), ih - ch), cw, ch
    return 0, 0, iw, ih


def _map_boxes(boxes: np.ndarray, m: np.ndarray, w: int, h: int, min_visible: float) -> np.ndarray:
    """Map box corners through ``m`` (3x3), enclose, clip to the output, drop boxes keeping
    less than ``min_visible`` of their mapped area."""
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])  # 4 x 2 x N
    xs = m[0, 0] * corners[:, 0] + m[0, 1] * corners[:, 1] + m[0, 2]
    ys = m[1, 0] * corners[:, 0] + m[1, 1] * corners[:, 1] + m[1, 2]
    mapped = np.stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)], axis=1)
    clipped = np.clip(mapped, 0, [w, h, w, h])
    area = (mapped[:, 2] - mapped[:, 0]) * (mapped[:, 3] - mapped[:, 1])
    kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (area > 0) & (kept >= min_visible * area)
    return clipped[keep].astype(np.float32)


def _decode_dicom(path: str) -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RuntimeError("the OpenCV baseline reads DICOM through pydicom") from exc
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind == "u" else arr.max() - arr
    return np.ascontiguousarray(arr)


def _opencv_worker_init(_worker: int) -> None:
    import cv2

    cv2.setNumThreads(1)


def make_torch_opencv_loader(config: Mapping[str, Any]) -> Any:
    """``torch.utils.data.DataLoader`` over :class:`OpenCVDataset`: shuffled, persistent worker
    processes, prefetch factor 2, OpenCV single-threaded in each worker."""
    import cv2
    import torch
    import torch.utils.data as tud

    cv2.setNumThreads(1)
    ds = OpenCVDataset(make_dataset(config))
    workers = int(config["workers"])
    return tud.DataLoader(
        ds,
        batch_size=int(config["batch_size"]),
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=_opencv_worker_init,
        generator=torch.Generator().manual_seed(int(config["seed"])),
    )


def make_gradatim_loader(config: Mapping[str, Any]) -> Any:
    """:class:`gradatim.DataLoader` over the manifest (fast path), shuffled."""
    import torch

    from gradatim.data.loader import DataLoader

    loader = DataLoader(
        make_dataset(config),
        batch_size=int(config["batch_size"]),
        shuffle=True,
        num_workers=int(config["workers"]),
        generator=torch.Generator().manual_seed(int(config["seed"])),
    )
    if not loader.fast_path:  # pragma: no cover - a ManifestDataset always takes it
        raise RuntimeError("gradatim.DataLoader did not take the fast path")
    return loader


# ----------------------------------------------------------------------------------------------
# measuring (inside the child process)


def _mb_from_ru(value: int) -> float:
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


def peak_rss_mb() -> float | None:
    """``ru_maxrss`` of this process (its peak resident set size), in MiB."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    return _mb_from_ru(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


_MARKERS: Path | None = None


def mark(phase: str) -> None:
    """Tell the watching parent that a phase starts: ``"timed"`` (it samples each process's
    RSS, cheaply) or ``"memory"`` (it also reads the tree's PSS, which costs ~10 ms a read for a
    process that imported torch, so only in the untimed memory pass)."""
    if _MARKERS is not None:
        (_MARKERS / phase).touch()


def memory_pass(loader: Iterable[Any], min_seconds: float = 1.5) -> None:
    """Untimed: iterate ``loader`` (at least one epoch and ``min_seconds``) while the parent
    reads the process tree's PSS."""
    mark("memory")
    t0 = time.perf_counter()
    while True:
        for _ in loader:
            pass
        if time.perf_counter() - t0 >= min_seconds:
            break


def measure_loader(
    loader: Iterable[Any], *, epochs: int, warmup_batches: int, step_ms: float = 0.0
) -> dict[str, Any]:
    """Iterate ``loader`` and time it: the first ``warmup_batches`` batches are untimed, then the
    rest of that epoch and ``epochs`` further epochs are (``epochs`` epochs if no warm-up)."""
    n_batches = len(loader)  # type: ignore[arg-type]
    warmup = min(int(warmup_batches), n_batches)
    total_epochs = epochs + (1 if warmup > 0 else 0)
    step_s = step_ms / 1e3
    seen = samples = batches = 0
    stall = 0.0
    shape: list[int] | None = None
    dtype = ""
    t_begin = time.perf_counter()
    t_start = t_begin if warmup == 0 else None
    first_batch_s: float | None = None
    mark("timed")
    for _ in range(total_epochs):
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            t1 = time.perf_counter()
            if batch is None:
                break
            if first_batch_s is None:
                first_batch_s = t1 - t_begin
            pixels = batch["pixel_values"]
            if shape is None:
                shape, dtype = list(pixels.shape), str(pixels.dtype).replace("torch.", "")
            seen += 1
            if t_start is not None:
                stall += t1 - t0
                samples += int(pixels.shape[0])
                batches += 1
            elif seen >= warmup:
                t_start = t1
            if step_s:
                time.sleep(step_s)
        del it
    t_end = time.perf_counter()
    wall = t_end - (t_start if t_start is not None else t_end)
    return {
        "images_per_s": samples / wall if wall > 0 else 0.0,
        "ms_per_batch": wall / batches * 1e3 if batches else None,
        "wall_s": wall,
        "stall_s": stall,
        "batches": batches,
        "samples": samples,
        "first_batch_s": first_batch_s,
        "epochs_iterated": total_epochs,
        "warmup_batches": warmup,
        "output": {"shape": shape, "dtype": dtype},
    }


def _run_loader_kind(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    import gc

    make = {GRADATIM: make_gradatim_loader, TORCH_OPENCV: make_torch_opencv_loader}[kind]
    loader = make(config)
    result = measure_loader(
        loader,
        epochs=int(config["epochs"]),
        warmup_batches=int(config["warmup_batches"]),
        step_ms=float(config.get("step_ms", 0.0)),
    )
    if kind == GRADATIM:
        stats = loader.stats()
        result["last_epoch_stats"] = {k: v for k, v in stats.items() if k != "skipped_samples"}
    memory_pass(loader)
    del loader  # stops torch's persistent workers
    gc.collect()
    return result


ChildKinds = Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]]


def child_main(argv: Sequence[str], kinds: ChildKinds | None = None) -> int:
    """Entry point of a measuring subprocess: ``argv = [REQUEST_JSON_PATH]``; the request holds
    ``kind``, ``config``, ``out`` (where the result JSON goes) and ``markers`` (a folder for
    :func:`mark`). ``kinds`` adds measurement kinds (name -> function(config) -> result dict) to
    the built-in loaders; a loader kind calls :func:`measure_loader` then :func:`memory_pass`."""
    global _MARKERS
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    kind, config = request["kind"], request["config"]
    _MARKERS = Path(request["markers"]) if request.get("markers") else None
    import torch  # noqa: F401  - every kind needs it: count it as "imports"

    import gradatim.data  # noqa: F401

    if importlib.util.find_spec("cv2") is not None:
        import cv2  # noqa: F401
    rss_imports = peak_rss_mb()
    table: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
        GRADATIM: lambda c: _run_loader_kind(GRADATIM, c),
        TORCH_OPENCV: lambda c: _run_loader_kind(TORCH_OPENCV, c),
    }
    table.update(kinds or {})
    result = table[kind](config)
    result["rss_peak_mb"] = peak_rss_mb()
    result["rss_after_imports_mb"] = rss_imports
    Path(request["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0


# ----------------------------------------------------------------------------------------------
# the parent: subprocesses, memory sampling, table, JSON, thresholds


def _descendants(root: int) -> list[int]:
    """``root`` and its descendant processes (Linux ``/proc``; just ``root`` elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _proc_kb(path: str, key: bytes) -> int:
    """A ``kB`` field of a ``/proc`` file (0 when the process is gone)."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _TreeMemory:
    """Watches a process tree from a background thread (Linux ``/proc``): once the child marks
    ``timed``, every ``interval`` s each process's RSS peak (``VmHWM``, which also covers the
    current RSS; cheap to read); once it marks ``memory``, also the tree's total PSS."""

    def __init__(self, pid: int, markers: Path, interval: float = 0.1) -> None:
        self.pid, self.markers, self.interval = pid, markers, interval
        self.pss_peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.supported = os.path.exists(f"/proc/{pid}/status")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _TreeMemory:
        if self.supported:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.supported:
            self._thread.join()

    @property
    def root_hwm_kb(self) -> int:
        return self.hwm_kb.get(self.pid, 0)

    @property
    def worker_hwm_kb(self) -> list[int]:
        return [kb for pid, kb in self.hwm_kb.items() if pid != self.pid and kb > 0]

    def _loop(self) -> None:
        pids, rescan = [self.pid], 0.0
        while not self._stop.wait(self.interval):
            if not (self.markers / "timed").exists():
                continue
            now = time.monotonic()
            if now >= rescan:  # worker processes come and go rarely
                pids, rescan = _descendants(self.pid), now + 0.5
            alive = []
            for pid in pids:
                hwm = _proc_kb(f"/proc/{pid}/status", b"VmHWM:")
                if not hwm:
                    continue
                alive.append(pid)
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
                if pid not in self.names:
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
                        self.names[pid] = f.read().strip()
            if (self.markers / "memory").exists():
                pss = sum(_proc_kb(f"/proc/{pid}/smaps_rollup", b"Pss:") for pid in alive)
                self.pss_peak_kb = max(self.pss_peak_kb, pss)


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(all CPUs' capacity, busy time, this process's + reaped children's CPU) in seconds."""
    try:
        import resource

        with open("/proc/stat", encoding="utf-8") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (ImportError, OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        own += ru.ru_utime + ru.ru_stime
    return sum(vals) / hz, (sum(vals) - idle) / hz, own


def _others_share(before: tuple[float, float, float] | None) -> float | None:
    """Share of the machine's CPU capacity used by *other* processes since ``before``."""
    after = _cpu_seconds()
    if before is None or after is None or after[0] <= before[0]:
        return None
    capacity, busy, own = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, busy - own) / capacity


def measure_subprocess(
    kind: str,
    config: Mapping[str, Any],
    command: Sequence[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh Python process (``command`` + the request path; default
    ``python -m gradatim.bench --child``) and return its result with the memory figures the
    parent watched (``rss_peak_mb``, ``workers_rss_peak_mb``, ``rss_total_mb``, ``pss_peak_mb``)
    and ``others_cpu_share`` (the CPU share other processes took meanwhile) added. Raises
    ``RuntimeError`` with the child's stderr when it fails."""
    cmd = list(command or [sys.executable, "-m", "gradatim.bench", "--child"])
    with tempfile.TemporaryDirectory(prefix="gradatim-bench-") as tmp:
        req, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        markers = Path(tmp) / "markers"
        markers.mkdir()
        request = {"kind": kind, "config": dict(config), "out": str(out), "markers": str(markers)}
        req.write_text(json.dumps(request), encoding="utf-8")
        cpu0 = _cpu_seconds()
        proc = subprocess.Popen([*cmd, str(req)], stderr=subprocess.PIPE, text=True)
        with _TreeMemory(proc.pid, markers) as mem:
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                raise RuntimeError(f"{kind}: timed out after {timeout} s") from None
        others = _others_share(cpu0)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((err or "").strip().splitlines()[-15:])
            raise RuntimeError(f"{kind}: measuring process failed (exit {proc.returncode})\n{tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
    result["kind"] = kind
    result["others_cpu_share"] = others
    # ru_maxrss can miss a peak that was freed without the kernel noting its high-water mark
    # (glibc trims with madvise); VmHWM read while it runs covers the RSS at each reading
    own = result.get("rss_peak_mb")
    if mem.root_hwm_kb:
        own = max(own or 0.0, mem.root_hwm_kb / 1024)
        result["rss_peak_mb"] = own
    workers = [kb / 1024 for kb in mem.worker_hwm_kb]
    result["worker_processes"] = len(workers) if mem.root_hwm_kb else None
    result["worker_process_names"] = sorted(
        {mem.names.get(p, "?") for p in mem.hwm_kb if p != proc.pid}
    )
    result["workers_rss_peak_mb"] = max(workers) if workers else None
    result["rss_total_mb"] = own + sum(workers) if own is not None else None
    result["pss_peak_mb"] = mem.pss_peak_kb / 1024 if mem.pss_peak_kb else None
    return result


def _version(module: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = __import__(module)
    except Exception:  # pragma: no cover - a broken installation
        return None
    return str(getattr(mod, "__version__", "?"))


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, memory, load, library versions."""
    from gradatim import __version__

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="utf-8") as f:
        mem_gb = round(int(f.readline().split()[1]) / 1024**2, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": mem_gb,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": {
            "gradatim": __version__,
            "torch": _version("torch"),
            "numpy": np.__version__,
            "opencv": _version("cv2"),
        },
    }


def paired_ratios(results: Mapping[str, Mapping[str, Any]], reference: str = GRADATIM) -> dict:
    """``reference``'s images/s over each other kind's, per repeat (runs next to each other in
    time, so machine drift cancels), and the median of those: ``{kind: median}``."""
    ref = results[reference]["repeats"]
    out = {}
    for kind, r in results.items():
        if kind != reference and r.get("repeats"):
            out[kind] = float(np.median([a / b for a, b in zip(ref, r["repeats"], strict=True)]))
    return out


def _median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s (all runs' images/s kept in ``repeats``)."""
    ordered = sorted(runs, key=lambda r: r["images_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["repeats"] = [r["images_per_s"] for r in runs]
    chosen["repeats_others_cpu_share"] = [r.get("others_cpu_share") for r in runs]
    return chosen


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next ``seconds`` (None off Linux)."""
    before = _cpu_seconds()
    time.sleep(seconds)
    after = _cpu_seconds()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def wait_until_quiet(max_busy: float, timeout: float) -> float | None:
    """Wait (up to ``timeout`` s) until the CPUs are less than ``max_busy`` busy over a second;
    returns the last busy fraction seen."""
    end = time.monotonic() + timeout
    busy = cpu_busy()
    while busy is not None and busy >= max_busy and time.monotonic() < end:
        busy = cpu_busy()
    return busy


def run_bench(
    config: Mapping[str, Any],
    kinds: Sequence[str],
    *,
    repeats: int = 1,
    command: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    max_others: float | None = None,
    retries: int = 3,
    quiet_timeout: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Measure each kind ``repeats`` times (interleaved, each in a fresh subprocess) and keep the
    median run of each. With ``max_others``, a run during which other processes took more than
    that share of the CPUs is measured again (after waiting up to ``quiet_timeout`` s for a quiet
    machine), up to ``retries`` times; a run still disturbed is kept with ``noisy: true``."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(repeats):
        for kind in kinds:
            for attempt in range(retries + 1):
                res = measure_subprocess(kind, config, command)
                share = res.get("others_cpu_share")
                res["noisy"] = max_others is not None and share is not None and share > max_others
                log(
                    f"  {kind:<24} run {r + 1}/{repeats}: {res.get('images_per_s', 0):8.1f} "
                    f"images/s (others took {_fmt(share, '.0%')} of the CPUs)"
                )
                if not res["noisy"] or attempt == retries:
                    break
                log(f"  {kind:<24} too noisy, measuring again once the machine is quiet")
                wait_until_quiet(max_others or 0.0, quiet_timeout)
            runs[kind].append(res)
    return {k: _median_result(v) for k, v in runs.items()}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(
    results: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    reference: str = GRADATIM,
    ratios: Mapping[str, float] | None = None,
) -> str:
    """A plain-text table: images/s, ms/batch, stall, first batch, peak memory (RSS of the main
    process, RSS summed over main + worker processes, PSS of the tree), the CPU share other
    processes took meanwhile (noise), and ``reference``'s images/s divided by each row's (or the
    given ``ratios``)."""
    labels = {**LABELS, **(labels or {})}
    ref = results.get(reference, {}).get("images_per_s")
    head = (
        f"{'loader':<56} {'images/s':>8} {'ms/batch':>8} {'stall s':>7} {'1st s':>6} "
        f"{'RSS MB main/all':>15} {'PSS MB':>6} {'others':>6} {'gradatim x':>10}"
    )
    lines = [head, "-" * len(head)]
    for kind, r in results.items():
        ips = r.get("images_per_s")
        rss = f"{_fmt(r.get('rss_peak_mb'), '.0f')}/{_fmt(r.get('rss_total_mb'), '.0f')}"
        ratio = ref / ips if ref and ips else None
        if ratios is not None and kind in ratios:
            ratio = ratios[kind]
        lines.append(
            f"{labels.get(kind, kind)[:56]:<56} {_fmt(ips, '8.1f')} "
            f"{_fmt(r.get('ms_per_batch'), '8.1f')} {_fmt(r.get('stall_s'), '7.2f')} "
            f"{_fmt(r.get('first_batch_s'), '6.2f')} {rss:>15} "
            f"{_fmt(r.get('pss_peak_mb'), '6.0f')} {_fmt(r.get('others_cpu_share'), '6.0%')} "
            f"{_fmt(ratio, '10.2f')}"
        )
    return "\n".join(lines)


def _write_json(path: str, payload: Mapping[str, Any]) -> None:
    if path == "-":
        print(json.dumps(payload, indent=2))
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")


def run(args: argparse.Namespace) -> int:
    """``gradatim bench``: measure, print the table, write JSON, check the thresholds."""
    if args.no_baseline and args.min_ratio is not None:
        print("gradatim bench: --min-ratio needs the baseline; drop --no-baseline", file=sys.stderr)
        return EXIT_BELOW_THRESHOLD
    try:
        config = bench_config(args)
        n = len(make_dataset(config))  # validates the manifest and augmentation up front
    except (OSError, ValueError) as exc:
        print(f"gradatim bench: {exc}", file=sys.stderr)
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
    _write_json(args.json, payload)
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
    return p


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        raise SystemExit(child_main(sys.argv[2:]))
    raise SystemExit("usage: gradatim bench ... (python -m gradatim bench)")
