"""The pre-decoded cache: built once (``gradatim cache build``), it gives exactly the batches of
decoding (8-bit JPEGs and 16-bit PNGs), refuses a cache of another manifest or decode size saying
what differs, notices a changed source file, and a build killed part way resumes to the same
cache."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gradatim as ga
from gradatim.data.cache import build_cache
from gradatim.datasets import phantom
from gradatim.errors import DecodeError, InvalidArgumentError
from gradatim.image import encode_png


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom JPEGs plus 16-bit PNGs (a uint16 cache entry), one record each."""
    m = phantom.generate(tmp_path_factory.mktemp("cache"), n=20, size=(160, 128))
    rows = [json.loads(line) for line in m.read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    for i in range(4):
        img = (rng.integers(0, 4096, (90, 120)) * 16).astype(np.uint16)
        (m.parent / f"wide{i}.png").write_bytes(encode_png(img))
        rows.append({**rows[i], "id": f"wide-{i}", "image": f"wide{i}.png"})
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def _dataset(manifest: Path, **kw: object) -> ga.ManifestDataset:
    kw.setdefault("image_size", (64, 48))
    return ga.ManifestDataset(manifest, augment=ga.Augment.fast_train(), **kw)  # type: ignore[arg-type]


def _batches(ds: ga.ManifestDataset, workers: int) -> list[tuple[list[str], np.ndarray]]:
    loader = ga.DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers,
                           generator=torch.Generator().manual_seed(11))  # fmt: skip
    out = []
    for epoch in range(2):  # a second epoch: other augmentations of the same cached pixels
        loader.set_epoch(epoch)
        out += [(b["id"], b["pixel_values"].numpy().copy()) for b in loader]
    return out


@pytest.fixture(scope="module")
def cache(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "cache"
    ds = _dataset(manifest)
    report = build_cache(ds, out, threads=2, progress=False)
    assert report["records"] == report["decoded"] == len(ds) and report["failed"] == []
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_batches_equal_decoded_batches(manifest: Path, cache: Path, workers: int) -> None:
    plain, cached = _dataset(manifest), _dataset(manifest, cache=cache)
    assert cached._core.cache_dir == str(cache)
    a, b = _batches(plain, workers), _batches(cached, workers)
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(i.startswith("wide-") for ids, _ in a for i in ids)


def test_a_second_build_is_a_no_op(manifest: Path, cache: Path) -> None:
    report = build_cache(_dataset(manifest), cache, progress=False)
    assert report["decoded"] == 0 and report["records"] == len(_dataset(manifest))


def test_a_cache_of_other_settings_is_refused_saying_what_differs(
    manifest: Path, cache: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"decoded to cover 68x51.*cover 135x102"):
        _dataset(manifest, image_size=(128, 96), cache=cache)
    with pytest.raises(InvalidArgumentError, match="holds gray images, this data set reads rgb"):
        _dataset(manifest, channels=3, cache=cache)
    rows = manifest.read_text().splitlines()[:10]
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(rows) + "\n")
    n = len(_dataset(manifest))
    with pytest.raises(InvalidArgumentError, match=rf"built from manifest .*\({n} records\)"):
        _dataset(other, root=manifest.parent, cache=cache)
    with pytest.raises(OSError, match="cache.json"):
        _dataset(manifest, cache=tmp_path / "nothing-here")


def test_a_changed_source_file_is_noticed(manifest: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in manifest.parent.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
        else:
            import shutil

            shutil.copytree(f, folder / f.name)
    m = folder / manifest.name
    build_cache(_dataset(m), folder / "cache", progress=False)
    changed = folder / "wide2.png"
    changed.write_bytes(encode_png(np.zeros((90, 120), np.uint16)))
    ds = _dataset(m, cache=folder / "cache")
    index = ds._core.column("id").index("wide-2")
    with pytest.raises(DecodeError, match=r"wide2\.png.*changed since the cache"):
        ds[index]


def test_a_record_the_build_could_not_decode(manifest: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rows[3] = {**rows[3], "image": str(tmp_path / "broken.png")}
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = {"root": manifest.parent, "allow_outside_root": True}
    report = build_cache(_dataset(m, **kw), tmp_path / "c", progress=False)
    assert [i for i, _ in report["failed"]] == [3] and "broken.png" in report["failed"][0][1]
    with pytest.raises(DecodeError, match="broken.png"):  # decoded again: the decoder's error
        _dataset(m, cache=tmp_path / "c", **kw)[3]
    with pytest.raises(InvalidArgumentError, match="does not hold this image"):
        _dataset(m, cache=tmp_path / "c", cache_fallback=False, **kw)[3]


def test_a_killed_build_resumes_to_the_same_cache(manifest: Path, tmp_path: Path) -> None:
    # 600 records over the same files: long enough a build to kill part way
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    many = [{**rows[i % len(rows)], "id": f"r{i}"} for i in range(600)]
    m = manifest.parent / "many.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in many))
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "gradatim", "cache", "build", str(m), "-o", str(out),
           "--size", "64x48", "--augment", "fast_train", "--threads", "1", "--quiet"]  # fmt: skip
    child = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    journal = out / "shard-000.entries"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if journal.exists() and journal.stat().st_size >= 5 * 80:  # a few images in
            break
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert not (out / "cache.json").exists(), "the build finished before the kill"
    done = subprocess.run(cmd + ["--report", str(tmp_path / "r.json")], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert 0 < report["decoded"] < 600  # the rest came from the killed run
    assert "KiB per image" in done.stderr
    clean = tmp_path / "clean"
    build_cache(_dataset(m), clean, threads=2, progress=False)
    a = _batches(_dataset(m, cache=clean), 0)
    b = _batches(_dataset(m, cache=out), 0)
    for (ia, x), (ib, y) in zip(a, b, strict=True):
        assert ia == ib
        np.testing.assert_array_equal(x, y)
