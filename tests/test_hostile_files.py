"""Hostile files and faults: a decoder panic becomes a DecodeError naming the file (and, in the
loader, the sample), handled by on_error; only regular files are read (a FIFO cannot hang the
loader, /dev/zero cannot fill memory); file contents never appear in an error; Ctrl-C reaches
Python while the loader waits."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

import gradatim as ga
from gradatim.errors import DecodeError, UnsupportedFormatError
from gradatim.image import encode_png


def _rle_mutants(n: int = 400) -> list[bytes]:
    """MR_small_RLE.dcm with bytes of its RLE segment header (segment count and offsets) changed:
    well-formed DICOM (element lengths intact, so they pass the length walk) whose RLE data sends
    the decoder out of bounds; every tenth one is also cut short."""
    data = Path(get_testdata_file("MR_small_RLE.dcm")).read_bytes()
    pixel_data = data.index(b"\xe0\x7f\x10\x00")
    offsets_item = pixel_data + 12  # the Basic Offset Table item, then the first fragment
    first_fragment = (
        offsets_item + 8 + int.from_bytes(data[offsets_item + 4 : offsets_item + 8], "little")
    )
    header = first_fragment + 8  # the fragment's 64-byte RLE header
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(header, header + 64))] = int(rng.integers(0, 256))
        if k % 10 == 9:
            b = b[: int(rng.integers(200, len(b)))]
        out.append(bytes(b))
    return out


def test_a_decoder_panic_is_a_decode_error_naming_the_file(tmp_path: Path) -> None:
    """Mutated RLE Lossless DICOMs: the RLE decoder indexes out of bounds on some of them; each
    must come back as an ordinary exception (never pyo3's PanicException, a BaseException)."""
    panics = 0
    for k, data in enumerate(_rle_mutants()):
        path = tmp_path / f"m{k}.dcm"
        path.write_bytes(data)
        try:
            ga.image.decode(path)
        except (DecodeError, UnsupportedFormatError) as e:
            assert str(path) in str(e)
            panics += "the decoder failed on malformed data" in str(e)
    assert panics > 0  # the mutants do reach the decoder's panic


def _write_manifest(tmp: Path, images: list[str]) -> Path:
    records = [
        {"id": f"r{i}", "image": name, "source": "s", "task": "report", "split": "train",
         "text": "Normal chest."}
        for i, name in enumerate(images)
    ]  # fmt: skip
    path = tmp / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_panicking_file_in_the_loader_is_skipped_or_named(tmp_path: Path) -> None:
    bad = next(
        d for d in _rle_mutants() if "malformed data" in _error(lambda d=d: ga.image.decode(d))
    )
    (tmp_path / "bad.dcm").write_bytes(bad)
    (tmp_path / "good.png").write_bytes(encode_png(np.full((40, 40), 90, np.uint8)))
    manifest = _write_manifest(tmp_path, ["good.png", "bad.dcm", "good.png"])
    ds = ga.ManifestDataset(manifest, image_size=(16, 16))
    with pytest.raises(DecodeError, match=r"sample 1 \(id \"r1\", .*m\.jsonl line 2\).*bad\.dcm"):
        ds.load_batch([0, 1, 2])
    skip = ga.ManifestDataset(manifest, image_size=(16, 16), on_error="skip")
    batch = skip.load_batch([0, 1, 2])
    assert 1 not in batch["index"].tolist() and len(batch["skipped"]) >= 1


def _error(f) -> str:  # noqa: ANN001
    try:
        f()
    except Exception as e:  # noqa: BLE001 - the message is what is checked
        return str(e)
    return ""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_special_files_are_refused_before_they_are_opened(tmp_path: Path) -> None:
    """A FIFO would block open() forever; /dev/zero would be read until memory runs out; a
    symlink to a text file must not put its bytes into the error. Run in a child with a deadline
    so a regression fails instead of hanging the suite."""
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:the contents of a private file\n")
    (tmp_path / "text.png").symlink_to(secret)
    manifest = _write_manifest(tmp_path, ["fifo.png", "zero.png", "text.png"])
    code = textwrap.dedent(f"""
        import gradatim as ga
        for allow in (False, True):
            ds = ga.ManifestDataset({str(manifest)!r}, image_size=(16, 16),
                                    allow_outside_root=allow)
            for i in range(3):
                try:
                    ds.load_batch([i])
                except Exception as e:
                    print(type(e).__name__, "|", e)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    assert len(out) == 6
    assert out[0].startswith("DecodeError") and "fifo.png" in out[0]
    assert "not a regular file" in out[0]
    # /dev/zero: outside the root through the link; allowed, still not a regular file
    assert out[1].startswith("DecodeError") and "outside the manifest root" in out[1]
    assert out[4].startswith("DecodeError") and "not a regular file" in out[4]
    assert out[2].startswith("UnsupportedFormatError") and "text.png" in out[2]
    assert "root:x" not in out[2] and "72 6f 6f 74" not in out[2]


def test_symlinks_are_held_to_the_root_like_absolute_paths(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    png = encode_png(np.full((20, 20), 7, np.uint8))
    (elsewhere / "x.png").write_bytes(png)
    (root / "sub" / "inside.png").write_bytes(png)
    (root / "out.png").symlink_to(elsewhere / "x.png")  # a file link leaving the root
    (root / "dir").symlink_to(elsewhere)  # a folder link leaving the root
    (root / "in.png").symlink_to(root / "sub" / "inside.png")  # a link staying inside
    manifest = _write_manifest(root, ["out.png", "dir/x.png", "in.png"])
    ds = ga.ManifestDataset(manifest, image_size=(8, 8))
    for i, name in ((0, "out.png"), (1, "dir/x.png")):
        with pytest.raises(DecodeError, match=rf"{name}: the path resolves .*outside the manifest"):
            ds.load_batch([i])
    assert ds.load_batch([2])["index"].tolist() == [2]
    opened = ga.ManifestDataset(manifest, image_size=(8, 8), allow_outside_root=True)
    assert opened.load_batch([0, 1, 2])["index"].tolist() == [0, 1, 2]


def test_ctrl_c_reaches_python_while_the_loader_waits(tmp_path: Path) -> None:
    """A worker thread busy with a slow batch; SIGINT must raise KeyboardInterrupt in the
    consumer within about a second, and closing the iterator must return."""
    big = np.tile(np.arange(6000, dtype=np.uint16).reshape(1, -1) % 256, (6000, 1))
    (tmp_path / "big.png").write_bytes(encode_png(big.astype(np.uint8)))
    manifest = _write_manifest(tmp_path, ["big.png"] * 64)
    code = textwrap.dedent(f"""
        import signal, sys, time
        import gradatim as ga
        # Python's own handler whatever this process inherited (a shell's background job
        # starts with SIGINT ignored, and then Python installs none)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ds = ga.ManifestDataset({str(manifest)!r}, image_size=(16, 16))
        loader = ga.DataLoader(ds, batch_size=64, num_workers=1)
        it = iter(loader)
        print("ready", flush=True)
        try:
            next(it)
            print("finished", flush=True)
        except KeyboardInterrupt:
            got = time.monotonic()
            del it
            print(f"interrupted {{got}} closed {{time.monotonic()}}", flush=True)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().split()
        child.wait(timeout=60)
    assert line[0] == "interrupted", line
    got, closed = float(line[1]), float(line[3])
    assert got - sent < 1.5  # the wait checks signals every 100 ms
    assert closed - got < 3.0  # close waits at most the grace period for the busy worker


def test_skip_accounting_counts_samples_and_names_each_file_once(tmp_path: Path) -> None:
    good = encode_png(np.full((40, 40), 90, np.uint8))
    names = []
    for i in range(30):
        name = f"img{i}.png"
        (tmp_path / name).write_bytes(good[:30] if i % 3 == 0 else good)  # 10 corrupt files
        names.append(name)
    manifest = _write_manifest(tmp_path, names)
    ds = ga.ManifestDataset(manifest, image_size=(16, 16), on_error="skip")
    loader = ga.DataLoader(ds, batch_size=6, num_workers=2)
    with pytest.warns(RuntimeWarning, match="10 sample"):
        seen = [i for b in loader for i in b["index"].tolist()]
    assert len(seen) == 30 and all(i % 3 for i in seen)  # corrupt ones replaced by good ones
    stats = loader.stats()
    assert stats["skipped"] == 10
    assert sorted(i for i, _ in stats["skipped_samples"]) == list(range(0, 30, 3))
    for index, reason in stats["skipped_samples"]:
        assert f"img{index}.png" in reason  # its own file's error, not another one's
    # every file corrupt: the replacements run out, and the error says so
    for name in names:
        (tmp_path / name).write_bytes(good[:30])
    bad = ga.ManifestDataset(manifest, image_size=(16, 16), on_error="skip")
    with pytest.raises(DecodeError, match=r"nor any of its 16 replacement draws.*img0\.png"):
        bad.load_batch([0])


def _progressive_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8))
    img.save(buf, "JPEG", progressive=True, quality=90)
    return buf.getvalue()


def test_a_jpeg_with_a_thousand_scans_is_refused_at_once() -> None:
    """CPU bomb: decoding time linear in the number of (repeated) scans; refused past 100."""
    jpg = _progressive_jpeg()
    scans = [i for i in range(len(jpg) - 1) if jpg[i : i + 2] == b"\xff\xda"]
    assert 2 < len(scans) < 20 and ga.image.decode(jpg).shape == (64, 64)
    last = jpg[scans[-1] : -2]  # the last scan, without EOI
    bomb = jpg[:-2] + last * 1000 + b"\xff\xd9"
    start = time.perf_counter()
    with pytest.raises(DecodeError, match="more than 100 scans"):
        ga.image.decode(bomb)
    assert time.perf_counter() - start < 1.0


def test_small_jpeg_faults_have_plain_messages() -> None:
    from PIL import Image

    jpg = _progressive_jpeg()
    with pytest.raises(DecodeError, match="no valid frame header") as e:
        ga.image.decode(jpg[:40])
    assert "overflowed" not in str(e.value)
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(buf, "JPEG")
    for mode in ("unchanged", "gray", "rgb"):  # one class whatever the mode
        with pytest.raises(UnsupportedFormatError, match="CMYK"):
            ga.image.decode(buf.getvalue(), mode=mode)


def _png_header_only(width: int, height: int, bit_depth: int, color_type: int) -> bytes:
    """A PNG whose IHDR declares the size; its one IDAT holds a few zero rows only: anything that
    allocates from the header before refusing shows up in the process's peak memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _peak_rss_mb(code: str) -> tuple[str, float]:
    """Run ``code`` in a child; its output and peak resident memory (MB)."""
    # VmHWM: this process image's own peak (ru_maxrss would carry the forking parent's over exec)
    peak = "[l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]"
    wrapped = code + f"\nprint({peak})"
    out = subprocess.run(
        [sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    return "\n".join(out[:-2]), float(out[-2]) / 1024


def test_memory_bombs_are_refused_from_their_headers(tmp_path: Path) -> None:
    """A 16384 x 16384 16-bit RGBA PNG is within the pixel limit but would decode to 2 GiB; a
    tiny DICOM declares a 4 GB Pixel Data element. Both are refused in bounded memory."""
    png = tmp_path / "bomb.png"
    png.write_bytes(_png_header_only(16384, 16384, 16, 6))
    assert png.stat().st_size < 2000
    dcm = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    at = dcm.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010) Pixel Data, explicit VR: OW 00 00 len
    assert dcm[at + 4 : at + 6] == b"OW"
    forged = tmp_path / "forged.dcm"
    forged.write_bytes(dcm[: at + 8] + (0xFFFFFFF0).to_bytes(4, "little") + dcm[at + 12 :])
    code = textwrap.dedent(f"""
        import gradatim as ga
        for path in ({str(png)!r}, {str(forged)!r}):
            try:
                ga.image.decode(path)
            except Exception as e:
                print(type(e).__name__, "|", e)
    """)
    out, peak = _peak_rss_mb(code)
    lines = out.splitlines()
    assert lines[0].startswith("ImageTooLargeError") and "raise max_bytes" in lines[0]
    assert "16384x16384 with 4 channel(s) of 16 bits" in lines[0]
    assert lines[1].startswith("DecodeError") and "declares 4294967280 bytes" in lines[1]
    assert peak < 600, f"peak RSS {peak:.0f} MB"
    # the limit is the caller's: a smaller image under a smaller limit
    small = tmp_path / "small.png"
    small.write_bytes(encode_png(np.zeros((100, 100), np.uint16)))
    assert ga.image.decode(small).shape == (100, 100)
    with pytest.raises(ga.errors.ImageTooLargeError, match="20000 bytes"):
        ga.image.decode(small, max_bytes=19_999)
    ds = ga.ManifestDataset(
        _write_manifest(tmp_path, ["small.png"]), image_size=(8, 8), max_bytes=19_999
    )
    with pytest.raises(ga.errors.ImageTooLargeError, match=r"sample 0 .*small\.png"):
        ds.load_batch([0])


def test_spawned_workers_rebuild_the_dataset_from_its_configuration(tmp_path: Path) -> None:
    """multiprocessing 'spawn' (macOS's default; forkserver is similar) pickles the dataset: it
    travels as its manifest path and configuration and rebuilds itself in the worker; a stage
    scheduler travels as its JSON-able state."""
    import pickle

    import torch

    from gradatim.curriculum import StageScheduler
    from gradatim.datasets import phantom

    manifest = phantom.generate(tmp_path, n=6, size=(64, 64))
    sources = sorted(set(ga.ManifestDataset(manifest, image_size=(8, 8)).column("source")))
    ds = ga.ManifestDataset(manifest, image_size=(16, 16), stages=StageScheduler(sources))
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # configuration, not pixels
    copy = pickle.loads(blob)
    a, b = ds.load_batch([0, 1, 2], epoch=2), copy.load_batch([0, 1, 2], epoch=2)
    assert (
        torch.equal(a["pixel_values"], b["pixel_values"])
        and a["stage"].tolist() == b["stage"].tolist()
    )
    serial = [x["id"] for x in torch.utils.data.DataLoader(ds, batch_size=4)]
    spawned = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, multiprocessing_context="spawn"
    )
    assert [x["id"] for x in spawned] == serial
    ours = ga.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert sorted(i for x in ours for i in x["id"]) == sorted(i for x in serial for i in x)


def test_manifest_bytes_errors_are_manifest_errors(tmp_path: Path) -> None:
    from gradatim.errors import ManifestError
    from gradatim.manifest.common import read_manifest

    (tmp_path / "x.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    rec = {"id": "a", "image": "x.png", "source": "s", "task": "report", "split": "train",
           "text": "Normal."}  # fmt: skip
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec).encode() + b"\n")
    assert len(ga.ManifestDataset(bom, image_size=(8, 8))) == 1  # a BOM is dropped
    assert read_manifest(bom)[0]["id"] == "a"
    latin = tmp_path / "latin.jsonl"
    second = json.dumps({**rec, "id": "b"}).encode().replace(b"Normal", b"Norm\xe9l")
    latin.write_bytes(json.dumps(rec).encode() + b"\n" + second + b"\n")
    for read in (lambda p: ga.ManifestDataset(p, image_size=(8, 8)), read_manifest):
        with pytest.raises(ManifestError, match=r"latin\.jsonl line 2: not UTF-8 text") as e:
            read(latin)
        assert e.value.row == 2 and e.value.path == str(latin)


def test_no_worker_process_warning_on_the_thread_fast_path(tmp_path: Path) -> None:
    import warnings as w

    import torch

    (tmp_path / "x.png").write_bytes(encode_png(np.zeros((8, 8), np.uint8)))
    ds = ga.ManifestDataset(_write_manifest(tmp_path, ["x.png"] * 4), image_size=(8, 8))
    many = 4 * (os.cpu_count() or 1)
    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        loader = ga.DataLoader(ds, batch_size=2, num_workers=many)
        assert len(list(loader)) == 2
    assert not [c for c in caught if "worker processes" in str(c.message)]
    with pytest.warns(UserWarning, match="worker processes"):  # torch's own loader still warns
        torch.utils.data.DataLoader(ds, batch_size=2, num_workers=many)
