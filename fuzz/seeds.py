"""Seed corpora for the fuzz targets, from real files installed on this machine (never committed):
libjxl-testdata's JPEG variants (progressive, 4:2:0 / 4:2:2 / 4:4:4, grey), PNGs of every colour
type and depth written by Pillow, pydicom-data's DICOMs (native, RLE, JPEG baseline / extended /
lossless, JPEG 2000) and the first frames of its JPEG-LS and JPEG 2000 ones, with small JPEG 2000
codestreams written by Pillow (for the targets that fuzz a codestream inside DICOM), manifest
lines of the phantom generator (and those lines packed), box texts of every format, and real
pre-decoded caches (index and shard) of the cache target's records.

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


JPEG_LS_SYNTAXES = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")  # fmt: skip


def dicom_frames(folder: Path, syntaxes: tuple[str, ...], max_bytes: int = MAX_SEED_BYTES) -> None:
    """The first frame's codestream of each pydicom-data file in one of ``syntaxes``, behind the
    flags byte of the targets that fuzz a codestream inside DICOM (fuzz_targets/encapsulated.rs):
    0 (the DICOM header follows the codestream's) and 1, 3, 7 (a fixed header: 1 or 3 samples,
    8 or 16 bits); frames larger than ``max_bytes`` are left out."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files
    from pydicom.encaps import generate_frames

    for path in get_testdata_files("*.dcm"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path)
                if str(ds.file_meta.TransferSyntaxUID) not in syntaxes:
                    continue
                n = int(ds.get("NumberOfFrames", 1) or 1)
                frame = next(generate_frames(ds.PixelData, number_of_frames=n))
        except Exception:  # noqa: BLE001, S112 - a file pydicom cannot split is no seed
            continue
        if len(frame) > max_bytes:
            continue
        for flags in (0, 1, 3, 7):
            _put(folder, bytes([flags]) + frame)


def small_j2k_frames(folder: Path) -> None:
    """Small JPEG 2000 codestreams written by Pillow (OpenJPEG): grey 8 and 16 bits and RGB,
    lossless and lossy, tiled, other progression orders and resolution counts; pydicom-data's
    frames are large (tens to hundreds of KB), these keep the fuzzer's inputs fast."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    grey = (rng.random((37, 53)) * 255).astype(np.uint8)
    images = [
        Image.fromarray(grey),
        Image.fromarray(grey.astype(np.uint16) * 97),  # 16-bit grey
        Image.fromarray(np.dstack([grey, grey[::-1], grey[:, ::-1]])),
    ]
    options = [
        {},
        {"irreversible": True, "quality_mode": "rates", "quality_layers": [20]},
        {"tile_size": (16, 16)},
        {"progression": "RPCL", "num_resolutions": 3},
        {"progression": "CPRL", "num_resolutions": 2, "quality_layers": [40, 10]},
    ]
    for img in images:
        for kw in options:
            buf = io.BytesIO()
            img.save(buf, "JPEG2000", no_jp2=True, **kw)
            for flags in (0, 1):
                _put(folder, bytes([flags]) + buf.getvalue())


def j2k_frames(folder: Path) -> None:
    # OpenJPEG takes ~0.1 s on a 100 KB frame under the fuzzer's sanitizer: small frames only
    dicom_frames(folder, J2K_SYNTAXES, max_bytes=32 * 1024)
    small_j2k_frames(folder)


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


def caches(folder: Path, tmp: Path) -> None:
    """Real pre-decoded caches of the four records the ``cache_index`` target builds at start (a
    96 x 80 JPEG decoded at 1/2, an 8-bit and a 16-bit PNG, a broken file), read as the target
    reads them (32 x 24 output, ``fast_train`` without CLAHE), in its input layout:
    ``[flags][index length, u32 LE][index.bin][shard-000.bin]``, once per flag combination."""
    import struct

    import numpy as np

    import gradatim as ga
    from gradatim.data.cache import build_cache
    from gradatim.image import encode_jpeg, encode_png

    def gradient(w: int, h: int, k: int) -> np.ndarray:
        p = np.arange(w * h)
        return (((p % w) * 200 // w + (p // w) * 3 + k * 17) % 256).astype(np.uint8).reshape(h, w)

    root = tmp / "cache-images"
    root.mkdir()
    (root / "r0.jpg").write_bytes(encode_jpeg(gradient(96, 80, 0), 90))
    (root / "r1.png").write_bytes(encode_png(gradient(50, 40, 1)))
    (root / "r2.png").write_bytes(encode_png(gradient(60, 44, 2).astype(np.uint16) * 257))
    (root / "r3.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rows = [{"id": f"r{i}", "image": name, "source": "fuzz", "split": "train",
             "task": "phrase_grounding", "text": "Small left effusion.",
             "boxes": [{"box": [4, 6, 30, 28], "phrase": "left effusion"}]}
            for i, name in enumerate(["r0.jpg", "r1.png", "r2.png", "r3.png"])]  # fmt: skip
    manifest = root / "fuzz.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    augment = {**ga.Augment.fast_train().to_dict(), "clahe": None, "eval": None}  # as the target
    ds = ga.ManifestDataset(manifest, image_size=(32, 24), augment=ga.Augment.from_dict(augment))
    build_cache(ds, tmp / "cache", threads=1, progress=False)
    index = (tmp / "cache" / "index.bin").read_bytes()
    shard = (tmp / "cache" / "shard-000.bin").read_bytes()
    for flags in range(8):
        _put(folder, bytes([flags]) + struct.pack("<I", len(index)) + index + shard)


def main(out: str) -> int:
    import tempfile

    root = Path(out)
    makers = {"decode_jpeg": jpegs, "decode_png": pngs, "decode_dicom": dicoms,
              "decode_dicom_jpegls": lambda f: dicom_frames(f, JPEG_LS_SYNTAXES),
              "decode_dicom_j2k": j2k_frames,
              "box_text": box_texts}  # fmt: skip
    for target, make in makers.items():
        (root / target).mkdir(parents=True, exist_ok=True)
        make(root / target)
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    (root / "manifest_packed").mkdir(parents=True, exist_ok=True)
    (root / "cache_index").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        manifests(root / "manifest", Path(tmp))
        packed_manifests(root / "manifest_packed", Path(tmp))
        caches(root / "cache_index", Path(tmp))
    for target in sorted(p.name for p in root.iterdir()):
        print(f"{target}: {sum(1 for _ in (root / target).iterdir())} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "fuzz/corpus"))
