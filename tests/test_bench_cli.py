"""``gradatim bench``: runs end to end on a tiny manifest, writes the JSON it promises, and its
thresholds set the exit status; the OpenCV baseline does the same pixel work as gradatim."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gradatim import bench, image
from gradatim.cli import main

FAST = ["--image-size", "48", "40", "--batch-size", "2", "--workers", "1", "--epochs", "1"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small grey JPEGs (different content) with one box each."""
    folder = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:120, 0:160]
    lines = []
    for i in range(6):
        img = (xx * (1 + i) + yy * 2 + rng.integers(0, 20, xx.shape)) % 256
        (folder / f"img{i}.jpg").write_bytes(image.encode_jpeg(img.astype(np.uint8), 90))
        record = {
            "id": f"s{i}",
            "image": f"img{i}.jpg",
            "source": "bench",
            "task": "phrase_grounding",
            "split": "train",
            "text": "Opacity in the left lower lobe.",
            "boxes": [{"box": [20, 30, 90 + i, 100], "phrase": "opacity"}],
        }
        lines.append(json.dumps(record))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bench_writes_json_and_passes_min_ratio_zero(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cv2")
    out = tmp_path / "bench.json"
    code = main(["bench", str(manifest), *FAST, "--json", str(out), "--min-ratio", "0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "images/s" in printed and "ratio gradatim / torch+opencv" in printed
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["schema"] == bench.SCHEMA
    for key in ("created", "machine", "config", "results", "ratios", "thresholds", "passed"):
        assert key in data
    assert data["passed"] is True and data["failures"] == []
    assert data["machine"]["versions"]["gradatim"]
    assert data["config"]["samples"] == 6 and data["config"]["image_size"] == [48, 40]
    assert set(data["results"]) == {bench.GRADATIM, bench.TORCH_OPENCV}
    for result in data["results"].values():
        assert result["images_per_s"] > 0 and result["samples"] > 0
        assert result["output"] == {"shape": [2, 1, 40, 48], "dtype": "float32"}
        assert result["rss_peak_mb"] is None or result["rss_peak_mb"] > 0
    assert data["ratios"]["gradatim/torch+opencv"] > 0
    if sys.platform == "linux":  # the parent watched the process trees
        assert data["results"][bench.GRADATIM]["worker_processes"] == 0  # threads
        assert data["results"][bench.TORCH_OPENCV]["worker_processes"] == 1
        for result in data["results"].values():
            assert result["rss_total_mb"] >= result["rss_peak_mb"] > 0
            assert result["pss_peak_mb"] > 0


def test_bench_below_min_images_per_s_exits_2(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", str(manifest), *FAST, "--limit", "4", "--no-baseline", "--json", str(out)]
    assert main([*argv, "--min-images-per-s", "1e9"]) == 2
    assert "FAILED" in capsys.readouterr().err
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["passed"] is False and "min-images-per-s" in data["failures"][0]
    assert list(data["results"]) == [bench.GRADATIM]
    assert data["config"]["samples"] == 4


def test_min_ratio_without_opencv_is_a_failure_not_a_pass(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cv2" else real(name)
    )
    out = tmp_path / "bench.json"
    argv = ["bench", str(manifest), *FAST, "--limit", "2", "--json", str(out), "--min-ratio", "1"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "OpenCV (cv2) is not installed" in captured.out
    assert "cannot be checked" in captured.err


def test_bad_arguments_fail_cleanly(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(manifest.with_name("missing.jsonl"))]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl: no such file" in err and err.count("gradatim bench:") == 1
    assert main(["bench", str(manifest), "--no-baseline", "--min-ratio", "1"]) == 2


def test_jpeg_header_size_and_reduction_match_gradatim(tmp_path: Path) -> None:
    img = np.zeros((777, 1001), np.uint8)
    data = image.encode_jpeg(img, 90)
    assert bench.image_header_size(data) == (1001, 777)
    png = image.encode_png(img)
    assert bench.image_header_size(png) == (1001, 777)
    for target in [(64, 64), (125, 98), (126, 98), (300, 200), (2000, 10)]:
        d = bench.reduction_denominator(1001, 777, target)
        assert image.decode(data, reduce_to=target).shape == (-(-777 // d), -(-1001 // d))


def test_opencv_baseline_does_the_same_pixel_work(manifest: Path) -> None:
    """Without augmentation both pipelines are decode (same reduced scale) -> area resize ->
    normalise: the baseline's pixels match gradatim's within JPEG-decoder rounding."""
    pytest.importorskip("cv2")
    import gradatim as ga

    ds = ga.ManifestDataset(manifest, image_size=(40, 30), augment=None, mean=0.5, std=0.25)
    baseline = bench.OpenCVDataset(ds, mean=0.5, std=0.25)
    for i in range(len(ds)):
        ours = ds[i]["pixel_values"].numpy()
        theirs = baseline[i]["pixel_values"].numpy()
        assert theirs.shape == ours.shape == (1, 30, 40)
        assert np.abs(ours - theirs).max() <= 2 / 255 / 0.25 + 1e-6
        assert baseline[i]["box_count"] == 1


def test_opencv_baseline_augments_and_keeps_boxes(manifest: Path) -> None:
    pytest.importorskip("cv2")
    import gradatim as ga

    ds = ga.ManifestDataset(manifest, image_size=(48, 40), augment=ga.Augment())
    item = bench.OpenCVDataset(ds)[0]
    assert item["pixel_values"].shape == (1, 40, 48)
    assert item["box_count"] == 1
    x1, y1, x2, y2 = item["boxes"][0].tolist()
    assert 0 <= x1 < x2 <= 48 and 0 <= y1 < y2 <= 40
