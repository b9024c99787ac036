"""`Augment.cure_train()` / `cure_eval()` (the ``"cure"`` pipeline) against its oracle:
albumentations 2.0.8 composed as CURE's code composes it (``ConfigurableAlbumentations`` in
``vlm_research_kit/data/transforms_factory.py`` of PabloMessina/CURE at 9365333), run on OpenCV
5.0, given the same draws.

Each transform gets gradatim's draws through a scripted ``py_random`` (``uniform(a, b)``
returns ``a + (b - a) * u`` for the random resized crop's unit draws, the drawn value itself for
CLAHE's clip and Affine's parameters), so albumentations' own code turns them into crop
rectangles, matrices, pixels and boxes. With OpenCV's IPP disabled (``cv2.resize`` then runs
OpenCV's own cubic kernel) the pixels must be identical and the kept boxes the same (coordinates
within float32 rounding: albumentations holds boxes in float32). With IPP, as the wheels run by
default, the documented difference applies (docs/image.md): at most 2 levels, on under 10 % of
the samples.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim import _core, image
from gradatim.errors import InvalidArgumentError

A = pytest.importorskip("albumentations", reason="albumentations (the oracle) is not installed")
cv2.setNumThreads(1)

SIZE = (448, 448)  # CURE's image_size


def test_the_oracle_is_albumentations_2_0_8() -> None:
    assert A.__version__ == "2.0.8"


@pytest.fixture
def no_ipp() -> Iterator[None]:
    before = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        yield
    finally:
        cv2.ipp.setUseIPP(before)


class Scripted(random.Random):
    """A ``py_random`` handing out given draws: ``values`` verbatim from ``uniform``, or the
    random resized crop's ``tries`` (units: ``uniform(a, b) = a + (b - a) * u`` for area and
    log-ratio, ``random()`` for the y and x starts of the try in progress)."""

    def __init__(self, values: Sequence[float] = (), tries: Sequence[Sequence[float]] = ()):
        super().__init__(0)
        self.values, self.tries = list(values), [list(t) for t in tries]
        self.uniforms = self.randoms = 0

    def uniform(self, a: float, b: float) -> float:
        if not self.tries:
            return self.values.pop(0)
        u = self.tries[self.uniforms // 2][self.uniforms % 2]
        self.uniforms += 1
        return a + (b - a) * u

    def random(self) -> float:
        u = self.tries[(self.uniforms - 1) // 2][2 + self.randoms % 2]
        self.randoms += 1
        return u


# the order in which albumentations' Affine draws its parameters
AFFINE_ORDER = ("translate_x", "translate_y", "shear_x", "shear_y", "scale_x", "scale_y", "rotate")


def albumentations_cure(
    img: np.ndarray,
    plan: dict[str, Any],
    boxes_yolo: list[list[float]],
    *,
    size: tuple[int, int] = SIZE,
    min_visible: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """CURE's training Compose (``_build_single_pipeline(is_train=True)``: CLAHE,
    RandomResizedCrop, Affine, HorizontalFlip, Resize, with ``BboxParams('yolo')``) whose
    transforms fire as ``plan`` says, driven by its draws. Returns the image, the kept boxes
    (normalised xyxy) and their indices."""
    w, h = size
    cure = plan["cure"]
    clahe, crop, affine = plan["clahe"], cure["crop"], cure["affine"]
    steps: list[tuple[Any, Scripted | None]] = [
        (
            A.CLAHE(
                clip_limit=4.0,
                tile_grid_size=tuple(clahe[1:]) if clahe else (8, 8),
                p=1.0 if clahe else 0.0,
            ),
            Scripted([clahe[0]]) if clahe else None,
        ),
        (
            A.RandomResizedCrop(
                size=(h, w),
                scale=tuple(crop["scale"]) if crop else (0.9, 1.0),
                ratio=tuple(crop["ratio"]) if crop else (0.75, 4 / 3),
                interpolation=cv2.INTER_CUBIC,
                p=1.0 if crop else 0.0,
            ),
            Scripted(tries=crop["tries"]) if crop else None,
        ),
        (
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.1, 0.1),
                rotate=(-15, 15),
                shear=0,
                interpolation=cv2.INTER_CUBIC,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0 if affine else 0.0,
            ),
            Scripted([affine[k] for k in AFFINE_ORDER]) if affine else None,
        ),
        (A.HorizontalFlip(p=1.0 if plan["flip"] else 0.0), None),
        (A.Resize(height=h, width=w, interpolation=cv2.INTER_CUBIC, p=1.0), None),
    ]
    compose = A.Compose(
        [t for t, _ in steps],
        bbox_params=A.BboxParams(
            format="yolo", label_fields=["bbox_labels"], min_visibility=min_visible
        ),
    )
    for t, r in steps:
        if r is not None:
            t.py_random = r
    out = compose(image=img, bboxes=boxes_yolo, bbox_labels=list(range(len(boxes_yolo))))
    yolo = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([yolo[:, :2] - yolo[:, 2:] / 2, yolo[:, :2] + yolo[:, 2:] / 2], axis=1)
    return out["image"], xyxy, [int(v) for v in out["bbox_labels"]]


def to_yolo(boxes: np.ndarray, w: int, h: int) -> list[list[float]]:
    b = boxes / np.array([w, h, w, h])
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1).tolist()


def assert_same(
    img: np.ndarray,
    plan: dict[str, Any],
    boxes: np.ndarray,
    *,
    size: tuple[int, int] = SIZE,
    min_visible: float = 0.0,
) -> None:
    h0, w0 = img.shape[:2]
    ours, kept, keep = _core.apply_cure_plan(img, *size, plan, boxes, min_visible=min_visible)
    theirs, their_boxes, labels = albumentations_cure(
        img, plan, to_yolo(boxes, w0, h0), size=size, min_visible=min_visible
    )
    diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
    assert diff.max(initial=0) == 0, (
        f"max diff {diff.max()} on {(diff > 0).mean():.3%} of the samples; plan {plan}"
    )
    assert list(np.flatnonzero(keep)) == labels, plan
    w, h = size
    np.testing.assert_allclose(kept / np.array([w, h, w, h]), their_boxes, atol=2e-6, rtol=0)


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    """CURE loads every image as RGB: a radiograph is (v, v, v)."""
    return np.ascontiguousarray(np.dstack([grey] * 3))


def test_lab_tables_are_opencvs() -> None:
    """The CIELAB tables the CLAHE step uses are cv2.cvtColor's (8-bit)."""
    l_of_grey, rgb_of_l = _core.lab_grey_tables()
    v = np.arange(256, dtype=np.uint8)
    lab = cv2.cvtColor(np.stack([v, v, v], -1)[None], cv2.COLOR_RGB2LAB)[0]
    assert (lab[:, 1] == 128).all() and (lab[:, 2] == 128).all()
    assert bytes(lab[:, 0]) == l_of_grey
    neutral = np.stack([v, np.full(256, 128, np.uint8), np.full(256, 128, np.uint8)], -1)
    assert bytes(cv2.cvtColor(neutral[None], cv2.COLOR_LAB2RGB)[0].reshape(-1)) == rgb_of_l


@pytest.mark.usefixtures("no_ipp")
def test_cure_train_equals_albumentations_on_the_radiograph(radiograph_u8: np.ndarray) -> None:
    """The preset's own plans (both branches, every combination of steps) on the full-size
    radiograph, with boxes inside, across the edge and in the corners."""
    img = grey_rgb(radiograph_u8)
    h, w = radiograph_u8.shape
    boxes = np.array(
        [
            [300, 400, 900, 1300],
            [w - 250, h - 300, w - 2, h - 1],
            [0, 0, 60, 45],
            [800, 0, 1000, 90],
        ],
        dtype=np.float64,
    )
    preset = ga.Augment.cure_train().to_dict()
    seen = set()
    for index in range(36):
        plan = _core.augment_plan(preset, 7, 0, index, *SIZE)
        cure = plan["cure"]
        seen.add((plan["clahe"] is not None, cure["crop"] is not None, cure["affine"] is not None))
        assert_same(img, plan, boxes)
    assert len(seen) >= 6, seen  # most combinations of CLAHE / crop / affine were exercised


@pytest.mark.usefixtures("no_ipp")
def test_cure_eval_equals_albumentations(radiograph_u8: np.ndarray) -> None:
    """CURE's validation transform: CLAHE clip 3.0, always, then the cubic resize."""
    plan = _core.augment_plan(ga.Augment.cure_eval().to_dict(), 0, 0, 0, *SIZE)
    assert plan["clahe"] == [3.0, 8, 8] and plan["cure"] == {"crop": None, "affine": None}
    ref = A.Compose(
        [A.CLAHE(clip_limit=(3.0, 3.0), p=1.0), A.Resize(448, 448, interpolation=cv2.INTER_CUBIC)]
    )(image=grey_rgb(radiograph_u8))["image"]
    ours, _, _ = _core.apply_cure_plan(grey_rgb(radiograph_u8), *SIZE, plan)
    assert np.array_equal(ours, ref)


def test_with_ipp_the_documented_difference(radiograph_u8: np.ndarray) -> None:
    """albumentations as the wheels run it (IPP's cubic resize): within 2 levels (one resize
    before a warp can spread a 1-level difference), on under 10 % of the samples."""
    if not cv2.ipp.useIPP():
        pytest.skip("this OpenCV build has no IPP: the exact tests cover it")
    img = grey_rgb(radiograph_u8)
    preset = ga.Augment.cure_train().to_dict()
    for index in range(12):
        plan = _core.augment_plan(preset, 5, 0, index, *SIZE)
        ours, _, _ = _core.apply_cure_plan(img, *SIZE, plan)
        theirs, _, _ = albumentations_cure(img, plan, [])
        diff = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.10, (diff.max(), (diff > 0).mean())


@pytest.mark.usefixtures("no_ipp")
def test_grey_output_is_the_green_channel_and_16_bit_is_min_maxed(
    radiograph_u16: np.ndarray,
) -> None:
    """A 1-channel output is the green channel of CURE's RGB result (CLAHE on CIELAB L makes
    the three differ by at most 1 level); a 16-bit image is first brought to 8 bits as CURE's
    loader does, ``cv2.normalize(..., NORM_MINMAX, CV_8U)``."""
    u16 = np.ascontiguousarray(radiograph_u16[200:1400, 100:1300])
    u8 = cv2.normalize(u16, None, 0, 255, cv2.NORM_MINMAX, dtype=cv2.CV_8U)
    preset = ga.Augment.cure_train().to_dict()
    for index in range(8):
        plan = _core.augment_plan(preset, 2, 0, index, 96, 80)
        rgb, _, _ = _core.apply_cure_plan(grey_rgb(u8), 96, 80, plan)
        grey, _, _ = _core.apply_cure_plan(u8, 96, 80, plan)
        from16, _, _ = _core.apply_cure_plan(u16, 96, 80, plan)
        assert np.array_equal(grey, rgb[:, :, 1]) and np.array_equal(from16, grey)


# --- hypothesis: any draws, sizes and boxes -------------------------------------------------


@st.composite
def cure_case(draw: st.DrawFn) -> tuple[np.ndarray, dict[str, Any], np.ndarray, tuple, float]:
    h, w = draw(st.integers(8, 90)), draw(st.integers(8, 90))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w)).astype(np.float32), (0, 0), 2.0)
    grey = np.clip(base * 1.5 - 60 + rng.normal(0, 8, (h, w)), 0, 255).astype(np.uint8)
    unit = st.floats(0.0, 1.0, exclude_max=True)
    clahe = draw(st.none() | st.tuples(st.floats(1.0, 4.0), st.integers(1, 8), st.integers(1, 8)))
    crop = draw(
        st.none()
        | st.builds(
            lambda s0, ds, r0, dr, tries: {
                "scale": [s0, min(1.0, s0 + ds)],
                "ratio": [r0, r0 + dr],
                "tries": tries,
            },
            st.floats(0.2, 1.0),
            st.floats(0.0, 0.3),
            st.floats(0.4, 1.5),
            st.floats(0.0, 1.5),
            st.lists(st.lists(unit, min_size=4, max_size=4), min_size=10, max_size=10),
        )
    )
    affine = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "scale_x": st.floats(0.7, 1.3),
                "scale_y": st.floats(0.7, 1.3),
                "rotate": st.floats(-40.0, 40.0),
                "translate_x": st.floats(-0.3, 0.3),
                "translate_y": st.floats(-0.3, 0.3),
                "shear_x": st.floats(-10.0, 10.0),
                "shear_y": st.floats(-10.0, 10.0),
            }
        )
    )
    plan = {
        "crop": None,
        "clahe": list(clahe) if clahe else None,
        "affine": None,
        "flip": draw(st.booleans()),
        "cure": {"crop": crop, "affine": affine},
    }
    n = draw(st.integers(0, 4))
    xs = np.sort(rng.uniform(0, w, (n, 2)), axis=1)
    ys = np.sort(rng.uniform(0, h, (n, 2)), axis=1)
    boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1] + 0.5, ys[:, 1] + 0.5], axis=1)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    size = (draw(st.integers(8, 70)), draw(st.integers(8, 70)))
    min_visible = draw(st.sampled_from([0.0, 0.3]))
    return grey, plan, boxes, size, min_visible


@pytest.mark.usefixtures("no_ipp")
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(cure_case())
def test_random_draws_equal_albumentations(case: tuple) -> None:
    grey, plan, boxes, size, min_visible = case
    assert_same(grey_rgb(grey), plan, boxes, size=size, min_visible=min_visible)


# --- the loader runs that plan ----------------------------------------------------------------


@pytest.fixture(scope="module")
def jpeg_manifest(tmp_path_factory: pytest.TempPathFactory, radiograph_u8: np.ndarray) -> Path:
    folder = tmp_path_factory.mktemp("cure")
    rows = []
    crops = [(0, 0, 700, 640), (300, 200, 517, 833), (900, 500, 611, 611)]
    for i, (y0, x0, hh, ww) in enumerate(crops):
        name = f"cxr{i}.jpg"
        crop = np.ascontiguousarray(radiograph_u8[y0 : y0 + hh, x0 : x0 + ww])
        (folder / name).write_bytes(image.encode_jpeg(crop, 90))
        box = [ww * 0.2, hh * 0.3, ww * 0.7, hh * 0.9]
        rows.append(
            {"id": f"c{i}", "image": name, "source": "s", "task": "phrase_grounding",
             "split": "train", "text": "t", "boxes": [{"box": box, "phrase": "p"}]}
        )  # fmt: skip
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.mark.parametrize("channels", [1, 3])
def test_loader_applies_the_drawn_plan_at_full_resolution(
    jpeg_manifest: Path, channels: int
) -> None:
    """ManifestDataset with cure_train decodes at full resolution and applies the plan the core
    draws for each (seed, epoch, index): the batch equals `apply_cure_plan` on the decoded image."""
    preset = ga.Augment.cure_train()
    ds = ga.ManifestDataset(jpeg_manifest, image_size=(96, 80), augment=preset, output="uint8",
                            channels=channels)  # fmt: skip
    rows = [json.loads(line) for line in jpeg_manifest.read_text().splitlines()]
    for epoch in range(6):
        batch = ds.load_batch([0, 1, 2], epoch=epoch, seed=4)
        for i, row in enumerate(rows):
            src = image.decode(jpeg_manifest.parent / row["image"],
                               mode="gray" if channels == 1 else "rgb")  # fmt: skip
            plan = _core.augment_plan(preset.to_dict(), 4, epoch, i, 96, 80)
            box = np.array([row["boxes"][0]["box"]])
            want, kept, _ = _core.apply_cure_plan(src, 96, 80, plan, box)
            got = batch["pixel_values"][i].numpy()
            want_chw = want[None] if want.ndim == 2 else want.transpose(2, 0, 1)
            assert np.array_equal(got, want_chw), (epoch, i)
            n = int(batch["box_count"][i])
            assert n == len(kept)
            np.testing.assert_allclose(batch["boxes"][i][:n].numpy(), kept, atol=1e-3)


def test_presets() -> None:
    """cure_train is CURE's training config (apply_clahe, apply_spatial_train, no colour,
    p_test_in_train 0.3) over ConfigurableAlbumentations' defaults; fast_train is the same recipe
    in the fast pipeline; cure_eval is the validation transform (clip 3.0)."""
    cure, fast, ev = ga.Augment.cure_train(), ga.Augment.fast_train(), ga.Augment.cure_eval()
    assert cure.pipeline == "cure" and fast.pipeline == "fast" and ev.pipeline == "cure"
    assert cure.clahe == {"clip_limit": (1.0, 4.0), "tile_grid": (8, 8), "p": 0.5}
    assert cure.crop == {"scale": (0.9, 1.0), "ratio": (0.75, 4 / 3), "p": 0.3}
    assert cure.affine == {"rotate": 15.0, "scale": (0.9, 1.1), "keep_ratio": False,
                           "translate": 0.1, "p": 0.5}  # fmt: skip
    assert cure.eval == {"p": 0.3, "clahe": {"clip_limit": (1.0, 4.0), "tile_grid": (8, 8),
                                             "p": 1.0}}  # fmt: skip
    assert cure.flip is None and cure.min_visible == 0.0
    assert (fast.clahe, fast.crop, fast.affine, fast.eval) == (
        cure.clahe,
        cure.crop,
        cure.affine,
        cure.eval,
    )
    assert ev.clahe == {"clip_limit": 3.0, "tile_grid": (8, 8), "p": 1.0} and ev.affine is None
    for preset in (cure, fast, ev, ga.Augment.strong_train()):
        assert ga.Augment.from_dict(preset.to_dict()).to_dict() == preset.to_dict()
    with pytest.raises(InvalidArgumentError, match="unknown variant `slow`"):
        _core.augment_plan({"pipeline": "slow"}, 0, 0, 0, 8, 8)
