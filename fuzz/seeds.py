"""Seed corpora for the fuzz targets, from real files installed on this machine (never committed):
libjxl-testdata's JPEG variants (progressive, 4:2:0 / 4:2:2 / 4:4:4, grey), PNGs of every colour
type and depth written by Pillow, pydicom-data's DICOMs (native, RLE, JPEG baseline / extended /
lossless, JPEG 2000), manifest lines of the phantom generator (and those lines packed), and box
texts of every format.

    python fuzz/seeds.py fuzz/corpus     # then: cargo +nightly fuzz run TARGET fuzz/corpus/TARGET
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import sys
from pathlib import Path

MAX_SEED_BYTES = 256 * 1024  # larger seeds slow every mutation down


def _put(folder: Path, data: bytes) -> None:
    if 0 < len(data) <= MAX_SEED_BYTES:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def jpegs(folder: Path) -> None:
    for path in sorted(glob.glob("/usr/share/libjxl-testdata/**/*.jp*g", recursive=True)):
        _put(folder, Path(path).read_bytes())


def pngs(folder: Path) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    rgb = np.dstack([grey, grey[::-1], grey[:, ::-1]])
    for img in (
        Image.fromarray(grey),
        Image.fromarray(grey.astype(np.uint16) * 257),  # 16-bit grey
        Image.fromarray(rgb),
        Image.fromarray(np.dstack([rgb, grey])),  # RGBA
        Image.fromarray(grey).convert("LA"),
    ):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        _put(folder, buf.getvalue())
    for mode in ("P", "1"):
        buf = io.BytesIO()
        Image.fromarray(grey).convert(mode).save(buf, "PNG")
        _put(folder, buf.getvalue())


def dicoms(folder: Path) -> None:
    from pydicom.data import get_testdata_files

    for path in get_testdata_files("*.dcm"):
        _put(folder, Path(path).read_bytes())


def manifests(folder: Path, tmp: Path) -> None:
    from gradatim.datasets import phantom

    lines = phantom.generate(tmp, n=6, size=(64, 64)).read_text().splitlines()
    for k in range(0, len(lines), 3):
        _put(folder, ("\n".join(lines[k : k + 3]) + "\n").encode())
    _put(folder, json.dumps({"id": "a", "image": "x.png"}).encode())


def packed_manifests(folder: Path, tmp: Path) -> None:
    from gradatim.manifest import pack_manifest

    lines = (tmp / "manifest.jsonl").read_text().splitlines()  # written by manifests()
    for k in range(0, len(lines), 4):
        manifest = tmp / f"part{k}.jsonl"
        manifest.write_text("\n".join(lines[k : k + 4]) + "\n")
        pack_manifest(manifest, tmp / "part.arrow")
        _put(folder, (tmp / "part.arrow").read_bytes())


def box_texts(folder: Path) -> None:
    from gradatim.data import render_boxes

    boxes = [[0.1, 0.2, 0.35, 0.6], [0.5, 0.05, 0.95, 0.99]]
    for fmt in ("cure", "maira2", "loc", "xyxy"):
        _put(folder, f"Left effusion {render_boxes(boxes, fmt)}.".encode())  # type: ignore[arg-type]


def main(out: str) -> int:
    import tempfile

    root = Path(out)
    makers = {"decode_jpeg": jpegs, "decode_png": pngs, "decode_dicom": dicoms,
              "box_text": box_texts}  # fmt: skip
    for target, make in makers.items():
        (root / target).mkdir(parents=True, exist_ok=True)
        make(root / target)
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    (root / "manifest_packed").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        manifests(root / "manifest", Path(tmp))
        packed_manifests(root / "manifest_packed", Path(tmp))
    for target in sorted(p.name for p in root.iterdir()):
        print(f"{target}: {sum(1 for _ in (root / target).iterdir())} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus"))
