"""The baseline: ``torch.utils.data.DataLoader`` over :class:`OpenCVDataset`, gradatim's
per-sample work done with OpenCV and NumPy (reduced JPEG decode, random resized crop, area
resize, CLAHE, ``warpAffine`` with boxes, flip, normalise), in worker processes.

The pixel work is OpenCV's, so the comparison stays fair; the rules that only decide what to do
are gradatim's own: the DCT scale to decode at (:func:`gradatim.image.reduction_denominator`) and
the affine matrix (:func:`gradatim.image.centred_affine`) come from the core. The baseline draws
its random decisions with its own NumPy generator; :func:`apply_plan`, which carries them out,
is checked against the core's augmentation given the same decisions (tests/test_bench_baseline.py:
same pixels, same boxes), so its crop rounding, resize choice and box mapping cannot drift."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradatim.bench.config import make_dataset
from gradatim.image import centred_affine, reduction_denominator

__all__ = [
    "OpenCVDataset",
    "apply_plan",
    "centred_affine",
    "crop_pixels",
    "image_header_size",
    "make_torch_opencv_loader",
    "opencv_worker_init",
    "random_crop_fractions",
    "reduction_denominator",
]


def image_header_size(data: bytes) -> tuple[int, int] | None:
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
        size = image_header_size(data[:65536])
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
        colour = "GRAYSCALE" if grey else "COLOR"
        if denom == 1:
            flag = getattr(cv2, f"IMREAD_{colour}") | cv2.IMREAD_ANYDEPTH
        else:  # IMREAD_REDUCED_{GRAYSCALE,COLOR}_{2,4,8}
            flag = getattr(cv2, f"IMREAD_REDUCED_{colour}_{denom}")
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
        # the random decisions, drawn in the order the operations run
        crop = None
        if self.crop is not None and _happens(rng, float(self.crop.get("p", 1.0))):
            crop = random_crop_fractions(rng, self.crop)
        clahe_op = None
        if self._clahe_op is not None and img.ndim == 2:
            if _happens(rng, float(self.clahe.get("p", 1.0))):  # type: ignore[union-attr]
                clahe_op = self._clahe_op
        m = None
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
        flip = self.flip
        flip_it = (
            flip is not None and self.flippable[index] and _happens(rng, float(flip.get("p", 0.5)))
        )
        img, boxes = apply_plan(
            img,
            scale,
            self.boxes[index],
            (w, h),
            crop=crop,
            clahe_op=clahe_op,
            affine=m,
            flip=flip_it,
            min_visible=self.min_visible,
        )
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


def random_crop_fractions(
    rng: np.random.Generator, crop: Mapping[str, Any]
) -> tuple[float, float, float, float] | None:
    """torchvision's RandomResizedCrop rule (10 tries, else None: the whole image), drawn with
    the baseline's generator: ``(x0, y0, w, h)`` as fractions of the image, as the core plans."""
    lo, hi = (float(v) for v in crop.get("scale", (0.9, 1.0)))
    r_lo, r_hi = (float(v) for v in crop.get("ratio", (0.75, 4 / 3)))
    for _ in range(10):
        area = rng.uniform(lo, hi)
        ratio = math.exp(rng.uniform(math.log(r_lo), math.log(r_hi)))
        fw, fh = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if fw <= 1.0 and fh <= 1.0:
            return rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh), fw, fh
    return None


def _round_half_up(v: float) -> int:
    """``v >= 0`` rounded half away from zero (Rust's ``f64::round``), exactly."""
    whole = math.floor(v)
    return whole + (1 if v - whole >= 0.5 else 0)


def crop_pixels(fractions: Sequence[float] | None, iw: int, ih: int) -> tuple[int, int, int, int]:
    """A crop given as fractions ``(x0, y0, w, h)`` in whole pixels of a ``iw`` x ``ih`` image
    (at least 1 x 1, inside the image); None is the whole image."""
    if fractions is None:
        return 0, 0, iw, ih
    fx, fy, fw, fh = fractions
    cw = min(max(_round_half_up(fw * iw), 1), iw)
    ch = min(max(_round_half_up(fh * ih), 1), ih)
    return min(_round_half_up(fx * iw), iw - cw), min(_round_half_up(fy * ih), ih - ch), cw, ch


def apply_plan(
    img: np.ndarray,
    scale: float,
    boxes: np.ndarray,
    size: tuple[int, int],
    *,
    crop: Sequence[float] | None = None,
    clahe_op: Any = None,
    affine: np.ndarray | None = None,
    flip: bool = False,
    min_visible: float = 0.25,
) -> tuple[np.ndarray, np.ndarray]:
    """One sample's augmentation with OpenCV, given its decisions: crop (fractions, see
    :func:`crop_pixels`), resize to ``size`` (``INTER_AREA`` when shrinking along both axes,
    else ``INTER_LINEAR``), CLAHE (``clahe_op``, a ``cv2.CLAHE``, grey images only), the
    forward 2x3 ``affine`` (``warpAffine``, bilinear, constant 0 border), horizontal flip.
    ``boxes`` (N x 4, source pixels; ``scale`` decoded pixels per source pixel) go through the
    same transforms; returns the image and the kept boxes (float32)."""
    import cv2

    w, h = size
    ih, iw = img.shape[:2]
    # source px -> decoded px -> crop -> output px, as one 3x3 matrix for the boxes
    x0, y0, cw, ch = crop_pixels(crop, iw, ih)
    if (x0, y0, cw, ch) != (0, 0, iw, ih):
        img = img[y0 : y0 + ch, x0 : x0 + cw]
    if (cw, ch) != (w, h):
        shrink = cw >= w and ch >= h
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        img = cv2.resize(img, (w, h), interpolation=interp)
    sx, sy = w / cw, h / ch
    total = np.array([[scale * sx, 0.0, -x0 * sx], [0.0, scale * sy, -y0 * sy], [0, 0, 1.0]])
    if clahe_op is not None and img.ndim == 2:
        img = clahe_op.apply(img)
    if affine is not None:
        img = cv2.warpAffine(
            img, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        total = np.vstack([affine, [0, 0, 1.0]]) @ total
    mapped = _map_boxes(boxes, total, w, h, min_visible)
    if flip:
        img = cv2.flip(img, 1)
        mapped[:, [0, 2]] = w - mapped[:, [2, 0]]
    return img, mapped


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


def opencv_worker_init(_worker: int) -> None:
    """``worker_init_fn`` of the baseline's DataLoaders: OpenCV single-threaded per worker."""
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
        worker_init_fn=opencv_worker_init,
        generator=torch.Generator().manual_seed(int(config["seed"])),
    )
