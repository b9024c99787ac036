"""Images and manifests in an object store: a real S3-compatible server (moto's, on 127.0.0.1)
behind a proxy that injects faults. The loader reads ``s3://`` manifests and images with the
core's object_store client and gives the same batches as from local files, through 5xx answers,
slow answers and the server going away mid-epoch; a kill and a resume deliver the uninterrupted
stream; a missing object is an error naming its URL that ``on_error`` handles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import gradatim as ga
from gradatim import _core
from gradatim.datasets import phantom

sys.path.insert(0, str(Path(__file__).parent))
from s3_local import FaultProxy, S3Server, s3_server  # noqa: E402
from test_stress import CHILD, _rows  # noqa: E402


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom.generate(tmp_path_factory.mktemp("store"), n=24, size=(96, 96))


@pytest.fixture(scope="module")
def server(local: Path) -> Iterator[S3Server]:
    with s3_server() as s:
        s.upload_dir(local.parent, "cxr", "phantom")
        yield s


@pytest.fixture
def proxy(server: S3Server) -> Iterator[S3Server]:
    yield server
    server.proxy.latency, server.proxy.fail_next = 0.0, 0


def _remote_manifest(local: Path) -> str:
    return f"s3://cxr/phantom/{local.name}"


def _batches(
    manifest: str | Path, faults: FaultProxy | None = None, fail: int = 0, **kw: object
) -> list[tuple[list[str], np.ndarray]]:
    outside = bool(kw.pop("allow_outside_root", False))
    ds = ga.ManifestDataset(manifest, image_size=(48, 48), augment=ga.Augment.cure_train(),
                            allow_outside_root=outside)  # fmt: skip
    if faults is not None:  # the next `fail` requests, image reads, are answered 503
        faults.fail_next = fail
    loader = ga.DataLoader(ds, batch_size=5, shuffle=True,
                           generator=torch.Generator().manual_seed(3), **kw)  # fmt: skip
    return [(b["id"], b["pixel_values"].numpy().copy()) for b in loader]


def _same(a: list[tuple[list[str], np.ndarray]], b: list[tuple[list[str], np.ndarray]]) -> None:
    assert [ids for ids, _ in a] == [ids for ids, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_urls_are_told_from_paths() -> None:
    assert _core.is_remote("s3://b/k.jpg") and _core.is_remote("https://h/x.png")
    assert not _core.is_remote("data/x.png") and not _core.is_remote("file:///x.png")


def test_s3_manifest_and_images_give_the_batches_of_local_files(
    local: Path, proxy: S3Server
) -> None:
    remote = _remote_manifest(local)
    ds = ga.ManifestDataset(remote)
    assert ds.record(0)["image"].startswith("s3://cxr/phantom/")
    for workers in (0, 2):
        _same(_batches(remote, num_workers=workers), _batches(local, num_workers=workers))


def test_decode_path_and_read_bytes_take_urls(local: Path, proxy: S3Server) -> None:
    image = ga.ManifestDataset(local).record(0)["image"]
    url = "s3://cxr/phantom/" + str(Path(image).relative_to(local.parent))
    assert _core.read_bytes(url) == Path(image).read_bytes()
    np.testing.assert_array_equal(ga.image.decode(url), ga.image.decode(image))


def test_a_manifest_with_url_images_read_from_a_local_file(
    local: Path, proxy: S3Server, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
    for r in rows:
        r["image"] = f"s3://cxr/phantom/{r['image']}"
    path = tmp_path / "urls.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # a URL in a local manifest lies outside its root: refused unless allowed
    with pytest.raises(ga.ManifestError, match="outside the manifest root") as e:
        ga.ManifestDataset(path)
    assert e.value.field == "image" and e.value.row == 1
    _same(_batches(path, allow_outside_root=True), _batches(local))


def test_injected_5xx_answers_are_retried(local: Path, proxy: S3Server) -> None:
    reference = _batches(local)
    failed = proxy.proxy.failed
    _same(_batches(_remote_manifest(local), proxy.proxy, 12, num_workers=2), reference)
    assert proxy.proxy.failed - failed == 12  # every injected failure was met and retried


def test_slow_answers_change_nothing(local: Path, proxy: S3Server) -> None:
    proxy.proxy.latency = 0.05
    _same(_batches(_remote_manifest(local), num_workers=2), _batches(local))


def test_server_stopped_mid_epoch_and_restarted(local: Path, proxy: S3Server) -> None:
    reference = _batches(local)
    ds = ga.ManifestDataset(_remote_manifest(local), image_size=(48, 48),
                            augment=ga.Augment.cure_train())  # fmt: skip
    loader = ga.DataLoader(ds, batch_size=5, shuffle=True, num_workers=2,
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    got = []
    restart = threading.Timer(1.0, proxy.proxy.start)
    for i, b in enumerate(loader):
        got.append((b["id"], b["pixel_values"].numpy().copy()))
        if i == 1:  # the store goes away for a second with batches still to read
            proxy.proxy.stop()
            restart.start()
    restart.join()
    _same(got, reference)


def test_a_missing_object_names_its_url_and_on_error_skips_it(
    local: Path, proxy: S3Server, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in local.read_text().splitlines() if line.strip()]
    rows[2]["image"] = "s3://cxr/phantom/no-such-image.png"  # outside a local root: allowed below
    path = tmp_path / "missing.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kw = {"root": local.parent, "allow_outside_root": True}
    strict = ga.ManifestDataset(path, image_size=(32, 32), **kw)
    with pytest.raises(FileNotFoundError, match="s3://cxr/phantom/no-such-image.png") as e:
        strict[2]
    assert e.value.filename == "s3://cxr/phantom/no-such-image.png"
    lenient = ga.ManifestDataset(path, image_size=(32, 32), on_error="skip", **kw)
    loader = ga.DataLoader(lenient, batch_size=4)
    with pytest.warns(RuntimeWarning, match="1 sample"):
        seen = [i for b in loader for i in b["id"]]
    assert rows[2]["id"] not in seen and len(seen) == len(rows)
    stats = loader.stats()
    assert stats["skipped"] == 1, stats
    assert "s3://cxr/phantom/no-such-image.png" in json.dumps(stats["skipped_samples"])


def test_kill_and_resume_from_s3_is_the_uninterrupted_stream(
    local: Path, proxy: S3Server, tmp_path: Path
) -> None:
    env = {**os.environ, **proxy.env()}
    remote = _remote_manifest(local)
    ref_log = tmp_path / "ref.jsonl"
    subprocess.run([sys.executable, "-c", CHILD, str(local), str(ref_log), "1"],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    reference = [(r["ids"], r["pixels"]) for r in _rows(ref_log)]
    log = tmp_path / "killed.jsonl"
    for kill in (True, True, False):
        cmd = [sys.executable, "-c", CHILD, remote, str(log), "1"]
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)  # fmt: skip
        if kill:
            before = len(_rows(log)) if log.exists() else 0
            deadline = time.monotonic() + 120
            while child.poll() is None and time.monotonic() < deadline:
                if log.exists() and len(_rows(log)) > before + 1:
                    break
                time.sleep(0.01)
            child.kill()
            child.communicate()
            continue
        out, err = child.communicate(timeout=300)
        assert "done" in out, err
    assert [(r["ids"], r["pixels"]) for r in _rows(log)] == reference


def test_a_packed_manifest_in_a_store_gives_the_batches_of_the_local_one(
    local: Path, proxy: S3Server, tmp_path: Path
) -> None:
    """A packed manifest at a URL is read whole (it cannot be memory-mapped) and resolves its
    images under its own folder in the store."""
    from gradatim.manifest import pack_manifest

    packed = tmp_path / "packed.arrow"
    pack_manifest(local, packed)
    proxy.client().upload_file(str(packed), "cxr", "phantom/packed.arrow")
    remote = "s3://cxr/phantom/packed.arrow"
    assert ga.ManifestDataset(remote).record(0)["image"].startswith("s3://cxr/phantom/")
    _same(_batches(remote, num_workers=2), _batches(local, num_workers=2))
