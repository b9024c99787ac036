"""The bench's OpenCV baseline against the core: given the same decisions it must do the same
work, so the rules it keeps for itself (crop rounding, which resize, box mapping, flip) cannot
drift from the core's, and the rules it takes from the core (the reduced-decode scale, the
centred affine) are the core's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gradatim as ga
from gradatim import _core, bench, image

cv2 = pytest.importorskip("cv2")


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 127 + 60 * np.sin(xx / 7.0) * np.cos(yy / 5.0)
    return np.clip(smooth + rng.normal(0, 25, (h, w)), 0, 255).astype(np.uint8)


def _random_plan(rng: np.random.Generator, w: int, h: int) -> dict:
    plan: dict = {"crop": None, "clahe": None, "affine": None, "flip": bool(rng.random() < 0.5)}
    if rng.random() < 0.7:
        fw, fh = rng.uniform(0.05, 1.0, 2)
        plan["crop"] = [rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh), fw, fh]
    if rng.random() < 0.5:
        plan["clahe"] = (
            float(rng.uniform(0.5, 4.0)),
            int(rng.integers(1, 5)),
            int(rng.integers(1, 5)),
        )
    if rng.random() < 0.7:
        plan["affine"] = image.centred_affine(
            rng.uniform(-30, 30),
            rng.uniform(0.8, 1.2),
            rng.uniform(-10, 10),
            rng.uniform(-0.1, 0.1) * w,
            rng.uniform(-0.1, 0.1) * h,
            w / 2,
            h / 2,
        )
    return plan


# gradatim's warp is OpenCV 5.0's, the locked oracle; with 5.1 installed, the documented difference
OPENCV_51 = tuple(int(v) for v in cv2.__version__.split(".")[:2]) >= (5, 1)


def test_apply_plan_equals_the_core_given_the_same_decisions() -> None:
    rng = np.random.default_rng(20240610)
    kinds = set()
    for case in range(150):
        ih, iw = (int(v) for v in rng.integers(8, 160, 2))
        w, h = (int(v) for v in rng.integers(8, 120, 2))
        img = _texture(rng, ih, iw)
        scale = float(rng.choice([1.0, 0.5, 0.25]))
        x1 = rng.uniform(-5, iw / scale, 6)
        y1 = rng.uniform(-5, ih / scale, 6)
        boxes = np.stack([x1, y1, x1 + rng.uniform(1, 60, 6), y1 + rng.uniform(1, 60, 6)], 1)
        plan = _random_plan(rng, w, h)
        min_visible = float(rng.uniform(0, 1))
        ours, ours_boxes, keep = _core.apply_augment_plan(
            img,
            w,
            h,
            boxes,
            decoded_scale=(scale, scale),
            crop=plan["crop"],
            clahe=plan["clahe"],
            affine=None if plan["affine"] is None else plan["affine"].tolist(),
            flip=plan["flip"],
            min_visible=min_visible,
        )
        clahe_op = None
        if plan["clahe"] is not None:
            clip, tx, ty = plan["clahe"]
            clahe_op = cv2.createCLAHE(clip, (tx, ty))
        theirs, theirs_boxes = bench.apply_plan(
            img,
            scale,
            boxes,
            (w, h),
            crop=plan["crop"],
            clahe_op=clahe_op,
            affine=plan["affine"],
            flip=plan["flip"],
            min_visible=min_visible,
        )
        where = f"case {case}: {iw}x{ih} -> {w}x{h}, {plan}"
        if OPENCV_51 and plan["affine"] is not None:
            # OpenCV >= 5.1's warp: docs/image.md, "Which OpenCV" (1 level, rare)
            diff = np.abs(theirs.astype(int) - ours.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, where
        else:
            np.testing.assert_array_equal(theirs, ours, err_msg=where)
        assert theirs_boxes.shape == (int(keep.sum()), 4), where
        np.testing.assert_allclose(theirs_boxes, ours_boxes, atol=1e-3, err_msg=where)
        x0, y0, cw, ch = bench.crop_pixels(plan["crop"], iw, ih)
        kinds.add(("shrink" if cw >= w and ch >= h else "enlarge", plan["crop"] is None))
        kinds.add(("dropped", bool((~keep).any())))
    # the cases covered both resize kernels, crops and whole images, dropped and kept boxes
    assert {("shrink", False), ("enlarge", False), ("shrink", True), ("enlarge", True)} <= kinds
    assert ("dropped", True) in kinds and ("dropped", False) in kinds


def test_crop_rounding_is_the_cores_at_ties() -> None:
    # 0.5 of a pixel rounds away from zero in the core (Rust's f64::round): an 8x8 image
    # cropped at x0 = 2.5 px, width 3.5 -> 4 px; Python's round() would give 2 and 4.
    assert bench.crop_pixels([2.5 / 8, 0.0, 3.5 / 8, 1.0], 8, 8) == (3, 0, 4, 8)
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    ours, _, _ = _core.apply_augment_plan(img, 4, 8, crop=[2.5 / 8, 0.0, 3.5 / 8, 1.0])
    theirs, _ = bench.apply_plan(img, 1.0, np.zeros((0, 4)), (4, 8), crop=[2.5 / 8, 0, 3.5 / 8, 1])
    np.testing.assert_array_equal(theirs, ours)
    np.testing.assert_array_equal(ours, img[:, 3:7])
    assert bench.crop_pixels(None, 5, 7) == (0, 0, 5, 7)


def test_rules_taken_from_the_core() -> None:
    assert bench.centred_affine is image.centred_affine
    assert bench.reduction_denominator is image.reduction_denominator
    for angle, scale in [(0.0, 1.0), (30.0, 1.0), (-12.5, 0.9)]:
        m = image.centred_affine(angle, scale, 0.0, 0.0, 0.0, 50.0, 40.0)
        np.testing.assert_allclose(m, cv2.getRotationMatrix2D((50, 40), angle, scale), atol=1e-12)
    m = image.centred_affine(0.0, 1.0, 0.0, 3.0, -2.0, 10.0, 10.0)
    np.testing.assert_allclose(m, [[1, 0, 3], [0, 1, -2]], atol=1e-12)
    jpeg = image.encode_jpeg(np.zeros((777, 1001), np.uint8), 90)
    for target in [(64, 64), (125, 98), (126, 98), (300, 200), (2000, 10), None]:
        d = image.reduction_denominator(1001, 777, target)
        assert image.decode(jpeg, reduce_to=target).shape == (-(-777 // d), -(-1001 // d))


def test_baseline_decodes_at_the_loaders_scale_when_crops_are_configured(tmp_path: Path) -> None:
    """With crops configured (here never applied, p=0) both decode no smaller than the smallest
    crop needs: 1600x1200 -> 150x112 with crop scale >= 0.25 decodes at 1/4, not 1/8, and then
    only the reduced decode and the area resize make the pixels - equal within decoder
    rounding. Decoding at 1/8 instead gives visibly other pixels (the control)."""
    rng = np.random.default_rng(3)
    img = _texture(rng, 1200, 1600)
    (tmp_path / "a.jpg").write_bytes(image.encode_jpeg(img, 95))
    record = {"id": "a", "image": "a.jpg", "source": "s", "task": "report", "split": "train",
              "text": "x."}  # fmt: skip
    (tmp_path / "m.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    augment = ga.Augment(crop={"scale": (0.25, 1.0), "p": 0.0}, clahe=None, affine=None, flip=None)
    ds = ga.ManifestDataset(tmp_path / "m.jsonl", image_size=(150, 112), augment=augment)
    baseline = bench.OpenCVDataset(ds)
    assert baseline.reduce_to == (300, 224)
    ours = ds[0]["pixel_values"].numpy()[0]
    theirs = baseline[0]["pixel_values"].numpy()[0]
    assert np.abs(ours - theirs).max() <= 2 / 255 + 1e-6
    eighth = cv2.imdecode(
        np.frombuffer((tmp_path / "a.jpg").read_bytes(), np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8
    )
    other = cv2.resize(eighth, (150, 112), interpolation=cv2.INTER_AREA) / np.float32(255)
    assert np.abs(ours - other).max() > 4 / 255
