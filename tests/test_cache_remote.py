"""A pre-decoded cache in an object store: a real S3-compatible server (moto's, on 127.0.0.1)
behind a proxy that injects faults. A cache built to ``s3://`` (staged locally, then uploaded)
gives the batches of a local cache and of decoding; an upload killed part way finishes when run
again, keeping what was uploaded; 5xx answers to the ranged reads are retried; a missing or
truncated shard is an error naming its URL and byte range, decoded instead with
``cache_fallback``; a store serving shifted ranges is caught by the pixels' checksums (decoded
instead, counted); a cache of another manifest is refused as a local one is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import gradatim as ga
from gradatim.data.cache import build_cache
from gradatim.errors import DecodeError, InvalidArgumentError
from gradatim.image import encode_png

sys.path.insert(0, str(Path(__file__).parent))
import test_cache  # noqa: E402
from s3_local import S3Server, s3_server  # noqa: E402

Batches = list[tuple[list[str], np.ndarray]]


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with s3_server() as s:
        s.client().create_bucket(Bucket="caches")
        yield s


@pytest.fixture
def proxy(server: S3Server) -> Iterator[S3Server]:
    yield server
    server.proxy.latency, server.proxy.fail_next, server.proxy.shift = 0.0, 0, 0


# the cache tests' manifest (phantom JPEGs + 16-bit PNGs, one record each) and data set
manifest = test_cache.manifest
_dataset = test_cache._dataset


def _batches(ds: ga.ManifestDataset, workers: int, epochs: int = 2) -> Batches:
    loader = ga.DataLoader(ds, batch_size=5, shuffle=True, num_workers=workers,
                           generator=torch.Generator().manual_seed(11))  # fmt: skip
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        out += [(b["id"], b["pixel_values"].numpy().copy()) for b in loader]
    return out


def _same(a: Batches, b: Batches) -> None:
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def local_cache(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "cache"
    build_cache(_dataset(manifest), out, threads=2, progress=False)
    return out


@pytest.fixture(scope="module")
def remote_cache(manifest: Path, server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = "s3://caches/main"
    staging = tmp_path_factory.mktemp("staging") / "main"
    report = build_cache(_dataset(manifest), url, threads=2, progress=False, staging=staging)
    assert report["records"] == report["decoded"] == len(_dataset(manifest))
    upload = report["upload"]
    # two shards (two threads), the index and cache.json; nothing to keep
    assert (upload["uploaded"], upload["kept"]) == (4, 0), upload
    assert upload["staging"] == str(staging) and not upload["staging_removed"]
    assert (staging / "cache.json").exists()  # an explicit staging folder stays: a local cache
    keys = {o["Key"] for o in server.client().list_objects_v2(Bucket="caches")["Contents"]}
    assert keys == {f"main/{n}" for n in ("cache.json", "index.bin", "shard-000.bin",
                                          "shard-001.bin")}  # fmt: skip
    return url


@pytest.mark.parametrize("workers", [0, 2])
def test_a_cache_in_s3_gives_the_batches_of_a_local_cache_and_of_decoding(
    manifest: Path, local_cache: Path, remote_cache: str, proxy: S3Server, workers: int
) -> None:
    decoded = _batches(_dataset(manifest), workers)
    local = _batches(_dataset(manifest, cache=local_cache), workers)
    # no fallback: every cached read must succeed for the batches to come
    remote_ds = _dataset(manifest, cache=remote_cache, cache_fallback=False)
    assert remote_ds._core.cache_dir == remote_cache
    before = proxy.proxy.requests
    remote = _batches(remote_ds, workers)
    # the images are local files: every request is a ranged read of a cached image
    assert proxy.proxy.requests - before >= 2 * len(remote_ds)
    _same(local, decoded)
    _same(remote, decoded)
    assert any(i.startswith("wide-") for ids, _ in remote for i in ids)


def test_a_second_build_to_the_store_is_a_no_op(
    manifest: Path, remote_cache: str, proxy: S3Server
) -> None:
    report = build_cache(_dataset(manifest), remote_cache, progress=False)
    assert report["decoded"] == 0 and report["upload"]["uploaded"] == 0


def test_injected_5xx_answers_to_ranged_reads_are_retried(
    manifest: Path, remote_cache: str, proxy: S3Server
) -> None:
    reference = _batches(_dataset(manifest), 2, epochs=1)
    ds = _dataset(manifest, cache=remote_cache, cache_fallback=False)  # opened: no faults yet
    failed = proxy.proxy.failed
    proxy.proxy.fail_next = 12
    _same(_batches(ds, 2, epochs=1), reference)
    assert proxy.proxy.failed - failed == 12  # every injected failure was met and retried


def test_a_missing_or_truncated_shard_names_its_url_and_range(
    manifest: Path, proxy: S3Server, tmp_path: Path
) -> None:
    url = "s3://caches/broken"
    build_cache(_dataset(manifest), url, threads=1, progress=False)  # one shard, manifest order
    s3 = proxy.client()
    shard = s3.get_object(Bucket="caches", Key="broken/shard-000.bin")["Body"].read()
    s3.put_object(Bucket="caches", Key="broken/shard-000.bin", Body=shard[: len(shard) // 2])
    plain = _dataset(manifest)
    last = len(plain) - 1  # its pixels lie in the lost half
    strict = _dataset(manifest, cache=url, cache_fallback=False)
    shard_url = f"{url}/shard-000.bin"
    with pytest.raises(OSError, match=rf"{shard_url}: bytes \d+\.\.\d+") as e:
        strict[last]
    assert e.value.filename == shard_url
    np.testing.assert_array_equal(strict[0]["pixel_values"], plain[0]["pixel_values"])
    # cache_fallback: the image is decoded instead, the same pixels
    lenient = _dataset(manifest, cache=url)
    assert lenient.cache_read_failures() == (0, None)
    np.testing.assert_array_equal(lenient[last]["pixel_values"], plain[last]["pixel_values"])
    count, first = lenient.cache_read_failures()  # counted, not silent
    assert count == 1 and first is not None and shard_url in first
    # on_error="skip" handles it as any sample error, naming the shard
    skipping = _dataset(manifest, cache=url, cache_fallback=False, on_error="skip")
    loader = ga.DataLoader(skipping, batch_size=6)
    with pytest.warns(RuntimeWarning, match="sample"):
        seen = [i for b in loader for i in b["id"]]
    assert len(seen) == len(plain) and plain.record(last)["id"] not in seen
    assert shard_url in json.dumps(loader.stats()["skipped_samples"])

    # the same rule for a local cache: the shard file and the range are named
    folder = tmp_path / "local"
    build_cache(_dataset(manifest), folder, threads=1, progress=False)
    local_shard = folder / "shard-000.bin"
    local_shard.write_bytes(local_shard.read_bytes()[: len(shard) // 2])
    with pytest.raises(ga.DecodeError, match=rf"{local_shard}: bytes \d+\.\.\d+: missing"):
        _dataset(manifest, cache=folder, cache_fallback=False)[last]
    local_lenient = _dataset(manifest, cache=folder)
    np.testing.assert_array_equal(local_lenient[last]["pixel_values"], plain[last]["pixel_values"])
    assert local_lenient.cache_read_failures()[0] == 1

    s3.delete_object(Bucket="caches", Key="broken/shard-000.bin")
    with pytest.raises(FileNotFoundError, match=rf"{shard_url}: bytes 0\.\.\d+") as e:
        strict[0]
    assert e.value.filename == shard_url
    np.testing.assert_array_equal(lenient[0]["pixel_values"], plain[0]["pixel_values"])


def test_a_store_serving_shifted_ranges_is_caught_by_the_checksums(
    manifest: Path, remote_cache: str, proxy: S3Server
) -> None:
    plain = _dataset(manifest)
    lenient = _dataset(manifest, cache=remote_cache)  # opened (index read) before the fault
    strict = _dataset(manifest, cache=remote_cache, cache_fallback=False)
    proxy.proxy.shift = 64  # one image's bytes start 64 bytes on: every ranged read is wrong
    n = len(plain)
    for i in range(n):
        a, b = lenient[i], plain[i]
        np.testing.assert_array_equal(a["pixel_values"], b["pixel_values"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
    count, first = lenient.cache_read_failures()
    assert count == n and first is not None  # every read decoded instead, and counted
    # unchecked (verify=False, for measuring only), the shifted bytes would be the samples
    unchecked = _dataset(manifest)._core.with_cache(remote_cache, True, False)
    wrong = sum(
        not np.array_equal(unchecked.batch([i], 0, 5)["pixel_values"],
                           plain._core.batch([i], 0, 5)["pixel_values"])
        for i in range(n)
    )  # fmt: skip
    assert wrong >= n - 2, (wrong, n)
    errors: list[Exception] = []
    for i in range(n):
        with pytest.raises((DecodeError, OSError)) as e:
            strict[i]
        errors.append(e.value)
    # the shifted bytes fail their checksum (an image at a shard's end comes back short)
    bad = [str(e) for e in errors if "do not match their checksum" in str(e)]
    assert len(bad) >= n - 2, [str(e) for e in errors]
    assert all(f"{remote_cache}/shard-00" in t and "(cache entry " in t for t in bad), bad
    proxy.proxy.shift = 0
    np.testing.assert_array_equal(strict[0]["pixel_values"], plain[0]["pixel_values"])


def test_a_remote_cache_of_another_manifest_is_refused_as_a_local_one(
    manifest: Path, local_cache: Path, remote_cache: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(manifest.read_text().splitlines()[:10]) + "\n")
    for kw in ({"root": manifest.parent}, {"root": manifest.parent, "image_size": (128, 96)}):
        with pytest.raises(InvalidArgumentError) as here:
            _dataset(other, cache=local_cache, **kw)
        with pytest.raises(InvalidArgumentError) as there:
            _dataset(other, cache=remote_cache, **kw)
        assert str(local_cache) in str(here.value) and remote_cache in str(there.value)
        assert str(here.value).replace(str(local_cache), "CACHE") == str(there.value).replace(
            remote_cache, "CACHE"
        )
    with pytest.raises(FileNotFoundError, match="s3://caches/nothing-here/cache.json"):
        _dataset(manifest, cache="s3://caches/nothing-here")


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten noise PNGs of 1536 x 1536 (decoded whole: 2.25 MiB each): with two build threads,
    each shard is above the 8 MiB part size, so both go up as multipart uploads."""
    folder = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(2)
    rows = []
    for i in range(10):
        img = rng.integers(0, 256, (1536, 1536), dtype=np.uint8)
        (folder / f"n{i}.png").write_bytes(encode_png(img))
        rows.append({"id": f"n{i}", "image": f"n{i}.png", "source": "noise", "task": "report",
                     "split": "train", "text": "noise"})  # fmt: skip
    m = folder / "large.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_a_killed_upload_finishes_when_run_again(
    large: Path, proxy: S3Server, tmp_path: Path
) -> None:
    url = "s3://caches/killed"
    temp = tmp_path / "tmp"  # the default staging folder goes here
    temp.mkdir()
    env = {**os.environ, **proxy.env(), "TMPDIR": str(temp)}
    cmd = [sys.executable, "-m", "gradatim", "cache", "build", str(large), "-o", url,
           "--size", "64x48", "--augment", "fast_train", "--threads", "2", "--quiet"]  # fmt: skip
    s3 = proxy.client()

    def there(key: str) -> int | None:
        try:
            return int(s3.head_object(Bucket="caches", Key=f"killed/{key}")["ContentLength"])
        except s3.exceptions.ClientError:
            return None

    proxy.proxy.latency = 0.3  # every request to the store is slow: the upload takes seconds
    child = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if there("shard-000.bin") is not None:  # one shard is up, the rest is not
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
    proxy.proxy.latency = 0.0
    assert there("shard-000.bin") is not None and there("cache.json") is None, (
        f"the kill did not land mid-upload: {err}"
    )
    assert there("build.json") is not None
    with pytest.raises(InvalidArgumentError, match=f"{url} holds an unfinished cache build"):
        _dataset(large, cache=url)
    staged = list(temp.glob("gradatim-cache-*"))
    assert len(staged) == 1 and (staged[0] / "cache.json").exists()  # built, not uploaded

    report_path = tmp_path / "report.json"
    done = subprocess.run(cmd + ["--report", str(report_path)], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["decoded"] == 0  # the staged build was found, not decoded again
    upload = report["upload"]
    assert upload["kept"] >= 1 and upload["staging_removed"], upload
    assert "uploaded" in done.stderr and "kept" in done.stderr
    assert list(temp.glob("gradatim-cache-*")) == []
    assert there("build.json") is None and there("cache.json") is not None
    sizes = [there(f"shard-00{k}.bin") or 0 for k in range(2)]
    assert min(sizes) > 8 << 20, sizes  # multipart uploads
    reference = _batches(_dataset(large), 0, epochs=1)
    _same(_batches(_dataset(large, cache=url, cache_fallback=False), 0, epochs=1), reference)
