"""Packed manifests (``gradatim manifest pack``, docs/manifest.md): a manifest packed into Arrow
columns gives the records, columns and batches of the manifest it was packed from (JSONL and
Parquet), works with the pre-decoded cache and in a rebuilt (spawned) copy, and bytes that are not
a packed manifest (truncated, mutated, another Arrow file) are refused with an error naming the
file, never a crash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

import gradatim as ga
from gradatim.data.cache import build_cache
from gradatim.datasets import phantom
from gradatim.errors import ManifestError
from gradatim.manifest import pack_manifest, read_manifest, write_manifest

COLUMNS = ("id", "image", "source", "task", "split", "text", "line")


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phantom studies (every task: reports, grounding, VQA; labels, boxes, anatomy)."""
    return phantom.generate(tmp_path_factory.mktemp("packed"), n=24, size=(160, 128))


@pytest.fixture(scope="module")
def packed(jsonl: Path) -> Path:
    out = jsonl.with_suffix(".arrow")
    assert pack_manifest(jsonl, out) == len(read_manifest(jsonl))
    return out


def _dataset(manifest: Path, **kw: object) -> ga.ManifestDataset:
    return ga.ManifestDataset(manifest, image_size=(64, 48), augment=ga.Augment.cure_train(),
                              **kw)  # type: ignore[arg-type]  # fmt: skip


def _batches(ds: ga.ManifestDataset, workers: int) -> list[dict]:
    loader = ga.DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    out = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        for b in loader:
            out.append({k: v.numpy().copy() if isinstance(v, torch.Tensor) else v
                        for k, v in b.items() if k != "work_ns"})  # fmt: skip
    return out


def _same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], np.ndarray):
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)
            else:
                assert x[k] == y[k], k


def test_packed_records_and_columns_are_the_manifests(jsonl: Path, packed: Path) -> None:
    assert read_manifest(packed) == read_manifest(jsonl)
    a, b = _dataset(jsonl), _dataset(packed)
    assert len(a) == len(b) and a._core.max_boxes == b._core.max_boxes
    for name in COLUMNS[:-1]:
        assert a.column(name) == b.column(name), name
    assert b.column("line") == list(range(1, len(b) + 1))  # rows of the packed file
    for i in range(len(a)):
        ra, rb = a.record(i), b.record(i)
        ra.pop("line"), rb.pop("line")
        assert ra == rb


@pytest.mark.parametrize("workers", [0, 2])
def test_packed_batches_are_the_manifests(jsonl: Path, packed: Path, workers: int) -> None:
    """Same seed, same batches: ids, pixels, boxes, prompts, targets, target boxes, categories."""
    _same(_batches(_dataset(jsonl), workers), _batches(_dataset(packed), workers))


def test_a_parquet_manifest_packs_to_the_same_records(jsonl: Path, tmp_path: Path) -> None:
    parquet = write_manifest(read_manifest(jsonl), tmp_path / "m.parquet")
    out = tmp_path / "m.arrow"
    pack_manifest(parquet, out)
    assert read_manifest(out) == read_manifest(jsonl)


def test_a_packed_manifest_reads_the_cache_and_rebuilds_itself(
    jsonl: Path, packed: Path, tmp_path: Path
) -> None:
    """A cache built from the JSONL fits the packed manifest (same ids, same order); a copy
    rebuilt from its state (as a spawned worker does) gives the same batches."""
    cache = tmp_path / "cache"
    build_cache(_dataset(jsonl), cache, threads=2, progress=False)
    cached = _dataset(packed, cache=cache)
    copy = ga.ManifestDataset.__new__(ga.ManifestDataset)
    copy.__setstate__(cached.__getstate__())
    want = _batches(_dataset(jsonl), 0)
    _same(want, _batches(cached, 0))
    _same(want, _batches(copy, 0))


def test_the_command_line_packs(jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.arrow"
    run = subprocess.run([sys.executable, "-m", "gradatim", "manifest", "pack", str(jsonl),
                          "-o", str(out)], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"packed {len(read_manifest(jsonl))} records" in run.stdout
    assert read_manifest(out) == read_manifest(jsonl)
    bad = tmp_path / "m.jsonl"
    bad.write_text(jsonl.read_text().replace('"labels"', '"lables"', 1))
    argv = ["manifest", "pack", str(bad), "-o", str(tmp_path / "bad.arrow")]
    run = subprocess.run([sys.executable, "-m", "gradatim", *argv], capture_output=True, text=True)
    assert run.returncode == 2 and "line 1" in run.stderr and "lables" in run.stderr
    assert not (tmp_path / "bad.arrow").exists()


def _refused(path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        ga.ManifestDataset(path, image_size=(8, 8))
    assert info.value.path == str(path)


def test_bytes_that_are_no_packed_manifest_are_refused(packed: Path, tmp_path: Path) -> None:
    """Every truncation (every 97th length), 300 random byte mutations, a JSONL file and another
    Arrow file under an .arrow name: an error naming the file, or (for a mutation inside text) a
    manifest that opens; never a crash."""
    data = packed.read_bytes()
    path = tmp_path / "bad.arrow"
    for n in range(0, len(data), 97):
        path.write_bytes(data[:n])
        _refused(path)
    rng = np.random.default_rng(0)
    opened = 0
    for _ in range(300):
        mutated = bytearray(data)
        for at in rng.integers(0, len(data), int(rng.integers(1, 4))):
            mutated[at] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            ga.ManifestDataset(path, image_size=(8, 8))
            opened += 1
        except ManifestError as e:
            assert e.path == str(path)
    assert opened < 300
    path.write_text(json.dumps({"id": "a"}) + "\n")
    _refused(path)
    with pa.ipc.new_file(path, pa.schema([("id", pa.string())])) as w:
        w.write_table(pa.table({"id": ["a"]}))
    with pytest.raises(ManifestError, match="not a packed gradatim manifest"):
        ga.ManifestDataset(path, image_size=(8, 8))
