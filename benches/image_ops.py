"""Per-operation speed of gradatim's image kernels against OpenCV, one thread each, in one run.

Images: the real chest radiograph of ``pydicom-data`` (RG1_UNCR.dcm, 1955x1841 as rows x cols),
windowed to 8 bits, and the same radiograph resized to 2048x2048; each is also JPEG-encoded at
quality 92 for the decode rows. Prints a table (ms per image, median of repeats; ratio =
OpenCV time / gradatim time, so > 1 means gradatim is faster) and writes
``benches/results/image_ops.json``.

"DICOM J2K RG1_J2KR full vs reduce_to=512": the lossless JPEG 2000 twin of the radiograph,
decoded by gradatim from the file (DICOM parse, OpenJPEG's Rust port, MONOCHROME1 and rescale)
at full size and with ``reduce_to=(512, 512)`` (1/2: one wavelet level skipped), against
OpenJPEG (C, through Pillow) decoding the bare codestream at full size and with ``reduce = 1``;
ratio = OpenJPEG time / gradatim time, and each side's full / reduced speed-up.

    python benches/image_ops.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gradatim import image
from gradatim.bench import machine_info

RESULTS = Path(__file__).parent / "results" / "image_ops.json"


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm caches and lazy initialisation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def radiograph_u8() -> np.ndarray:
    import pydicom.data

    img = image.decode(pydicom.data.get_testdata_file("RG1_UNCR.dcm"))
    lo, hi = np.percentile(img, [0.5, 99.5])
    return ((np.clip(img, lo, hi) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def affine_matrix(w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
    """Rotate 10 deg, scale 1.05 about the centre, shift 3 %, then fit into the output size."""
    a = math.radians(10.0)
    s = 1.05 * out_w / w
    cos, sin = s * math.cos(a), s * math.sin(a)
    cx, cy = w / 2, h / 2
    return np.array(
        [
            [cos, sin, out_w / 2 - cos * cx - sin * cy + 0.03 * out_w],
            [-sin, cos, out_h / 2 + sin * cx - cos * cy - 0.03 * out_h],
        ]
    )


def cases(img: np.ndarray, label: str) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    h, w = img.shape
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    jpeg_np = np.frombuffer(jpeg, np.uint8)
    denom = max(d for d in (1, 2, 4, 8) if -(-w // d) >= 512 and -(-h // d) >= 512)
    reduced_flag = {
        1: cv2.IMREAD_GRAYSCALE,
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    }[denom]
    small = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA)
    m_full = affine_matrix(w, h, w, h)
    m_512 = affine_matrix(w, h, 512, 512)
    cl = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))
    box = np.array([[0.3 * w, 0.45 * h, 0.75 * w, 0.85 * h]])
    mean, std = 0.5, 0.25
    return [
        (
            f"decode JPEG q92 {label}",
            lambda: image.decode(jpeg, mode="gray"),
            lambda: cv2.imdecode(jpeg_np, cv2.IMREAD_GRAYSCALE),
        ),
        (
            f"decode JPEG q92 {label} -> >=512 (1/{denom})",
            lambda: image.decode(jpeg, mode="gray", reduce_to=(512, 512)),
            lambda: cv2.imdecode(jpeg_np, reduced_flag),
        ),
        (f"CLAHE clip 2 8x8 {label}", lambda: image.clahe(img, 2.0, (8, 8)), lambda: cl.apply(img)),
        (
            "CLAHE clip 2 8x8 512x512",
            lambda: image.clahe(small, 2.0, (8, 8)),
            lambda: cl.apply(small),
        ),
        (
            f"warp affine {label} -> same size",
            lambda: image.warp_affine(img, m_full, (w, h), box),
            lambda: cv2.warpAffine(
                img,
                m_full,
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            ),
        ),
        (
            f"warp affine {label} -> 512x512",
            lambda: image.warp_affine(img, m_512, (512, 512), box),
            lambda: cv2.warpAffine(
                img,
                m_512,
                (512, 512),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            ),
        ),
        (
            f"resize area {label} -> 512x512",
            lambda: image.resize(img, (512, 512), "area"),
            lambda: cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA),
        ),
        (
            f"resize bilinear {label} -> 512x512",
            lambda: image.resize(img, (512, 512), "bilinear"),
            lambda: cv2.resize(img, (512, 512), interpolation=cv2.INTER_LINEAR),
        ),
        (
            "normalize 512x512 -> float32",
            lambda: image.normalize(small, mean, std),
            lambda: small.astype(np.float32) * np.float32(1 / (255 * std)) - np.float32(mean / std),
        ),
    ]


def dicom_j2k_rows(repeats: int) -> list[dict[str, Any]]:
    """gradatim's DICOM JPEG 2000 decode, full and reduced, against OpenJPEG via Pillow."""
    from io import BytesIO

    import pydicom
    from PIL import Image
    from pydicom.encaps import generate_fragmented_frames

    path = pydicom.data.get_testdata_file("RG1_J2KR.dcm")
    ds = pydicom.dcmread(path)
    codestream = b"".join(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1)))
    data = Path(path).read_bytes()

    def openjpeg(k: int) -> np.ndarray:
        im = Image.open(BytesIO(codestream))
        im.reduce = k
        return np.asarray(im)

    shape = image.decode(data, reduce_to=(512, 512)).shape
    label = "DICOM J2K RG1_J2KR"
    cases = [
        (f"{label} full", lambda: image.decode(data), lambda: openjpeg(0)),
        (
            f"{label} reduce_to=512 ({shape[1]}x{shape[0]})",
            lambda: image.decode(data, reduce_to=(512, 512)),
            lambda: openjpeg(1),
        ),
    ]
    rows = []
    for name, ours, theirs in cases:
        g, o = median_ms(ours, repeats), median_ms(theirs, repeats)
        rows.append({"operation": name, "gradatim_ms": g, "openjpeg_pillow_ms": o, "ratio": o / g})
        print(f"{name:<44} {g:12.2f} {o:10.2f} {o / g:7.2f}   (baseline: OpenJPEG via Pillow)")
    full, red = rows
    print(
        f"{label} full vs reduce_to=512: gradatim "
        f"{full['gradatim_ms'] / red['gradatim_ms']:.2f}x faster reduced, OpenJPEG via Pillow "
        f"{full['openjpeg_pillow_ms'] / red['openjpeg_pillow_ms']:.2f}x"
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    base = radiograph_u8()
    images = {"1955x1841": base, "2048x2048": cv2.resize(base, (2048, 2048), cv2.INTER_CUBIC)}
    rows = []
    print(f"{'operation':<44} {'gradatim ms':>12} {'OpenCV ms':>10} {'ratio':>7}")
    for label, img in images.items():
        for name, ours, theirs in cases(img, label):
            g, o = median_ms(ours, args.repeats), median_ms(theirs, args.repeats)
            rows.append({"operation": name, "gradatim_ms": g, "opencv_ms": o, "ratio": o / g})
            print(f"{name:<44} {g:12.2f} {o:10.2f} {o / g:7.2f}")
    speedups = {}
    for label in images:
        full = next(r for r in rows if r["operation"] == f"decode JPEG q92 {label}")
        red = next(r for r in rows if r["operation"].startswith(f"decode JPEG q92 {label} ->"))
        speedups[label] = full["gradatim_ms"] / red["gradatim_ms"]
        print(f"reduced decode speed-up over full decode ({label}): {speedups[label]:.2f}x")
    j2k = dicom_j2k_rows(max(3, args.repeats // 6))
    speedups["dicom_j2k_RG1_J2KR"] = j2k[0]["gradatim_ms"] / j2k[1]["gradatim_ms"]
    rows += j2k
    machine = {
        **machine_info(),
        "threads": 1,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": machine, "rows": rows, "reduced_decode_speedup": speedups}, indent=2)
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
