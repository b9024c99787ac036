"""Laterality-aware flip, the MedCLM box overlay and float32 normalisation, against NumPy / OpenCV
references on real images (the radiograph of pydicom-data, libjxl's JPEGs), plus properties."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradatim import image
from gradatim.errors import InvalidArgumentError

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="session")
def jpeg_rgb(libjxl: list[str]) -> np.ndarray:
    return image.decode(libjxl[0], mode="rgb")


# --- hflip ------------------------------------------------------------------------------------


def test_hflip_equals_numpy_and_opencv(radiograph_u16: np.ndarray, jpeg_rgb: np.ndarray) -> None:
    grey = radiograph_u16
    rgba = np.dstack([jpeg_rgb, jpeg_rgb[:, :, 0]])
    two = np.ascontiguousarray(jpeg_rgb[:, :, :2])
    for img in (grey, (grey >> 8).astype(np.uint8), jpeg_rgb, rgba, two):
        out, boxes, text = image.hflip(img, laterality_sensitive=False)
        assert boxes is None and text is None
        assert out.dtype == img.dtype and out.shape == img.shape
        np.testing.assert_array_equal(out, np.fliplr(img))
        if img.ndim == 2 or img.shape[2] in (3, 4):
            np.testing.assert_array_equal(out, cv2.flip(img, 1))


def test_hflip_refuses_laterality_sensitive_samples(radiograph_u8: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match="laterality"):
        image.hflip(radiograph_u8, boxes=[[1, 2, 3, 4]], text="left lung")
    with pytest.raises(ValueError, match="laterality_sensitive=False"):
        image.hflip(radiograph_u8, laterality_sensitive=True)


def test_hflip_boxes_mirror_and_match_the_flipped_pixels(radiograph_u8: np.ndarray) -> None:
    h, w = radiograph_u8.shape
    boxes = np.array([[100, 200, 400, 650], [0, 0, w, h], [w - 10, 5, w, 6]], np.float64)
    _, flipped, _ = image.hflip(radiograph_u8, boxes=boxes, laterality_sensitive=False)
    want = boxes.copy()
    want[:, 0], want[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    np.testing.assert_array_equal(flipped, want)
    _, twice, _ = image.hflip(radiograph_u8, boxes=flipped, laterality_sensitive=False)
    np.testing.assert_array_equal(twice, boxes)


@SETTINGS
@given(
    w=st.integers(1, 60),
    h=st.integers(1, 40),
    data=st.data(),
)
def test_flipped_box_encloses_the_flipped_mask(w: int, h: int, data: st.DataObject) -> None:
    x1 = data.draw(st.integers(0, w - 1))
    y1 = data.draw(st.integers(0, h - 1))
    x2 = data.draw(st.integers(x1 + 1, w))
    y2 = data.draw(st.integers(y1 + 1, h))
    mask = np.zeros((h, w), np.uint8)
    mask[y1:y2, x1:x2] = 1
    out, boxes, _ = image.hflip(mask, boxes=[[x1, y1, x2, y2]], laterality_sensitive=False)
    ys, xs = np.nonzero(out)
    np.testing.assert_array_equal(boxes, [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])


LATERALITY_CASES = [
    ("Left lower lobe opacity.", "Right lower lobe opacity."),
    ("right pleural effusion", "left pleural effusion"),
    ("LEFT and RIGHT", "RIGHT and LEFT"),
    ("left-sided pneumothorax", "right-sided pneumothorax"),
    ("Right-sided PICC line", "Left-sided PICC line"),
    ("left/right symmetric", "right/left symmetric"),
    ("the right's costophrenic angle", "the left's costophrenic angle"),
    ("left_lung", "right_lung"),
    ("(left) [right] {Left}", "(right) [left] {Right}"),
    ("leftward tracheal shift", "leftward tracheal shift"),
    ("bright spot, rightmost", "bright spot, rightmost"),
    ("L and R markers", "L and R markers"),
    ("left2 lefts", "left2 lefts"),
    ("", ""),
    ("Bilateral. Left: clear; right: effusion", "Bilateral. Right: clear; left: effusion"),
]


@pytest.mark.parametrize("text,want", LATERALITY_CASES)
def test_laterality_words_are_swapped(text: str, want: str) -> None:
    img = np.zeros((2, 3), np.uint8)
    _, _, out = image.hflip(img, text=text, laterality_sensitive=False)
    assert out == want


WORDS = ["left", "Left", "LEFT", "right", "Right", "RIGHT", "lung", "bright", "leftward", "L", "R"]
SEPARATORS = [" ", "-", "/", ", ", ". ", "'", "_", "\n", "("]


@SETTINGS
@given(
    st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=12),
)
def test_laterality_swap_is_an_involution_that_swaps_counts(parts) -> None:
    text = "".join(w + s for w, s in parts)
    once = swap(text)
    assert swap(once) == text
    before_words, after_words = [w for w, _ in parts], _words(once)
    assert len(after_words) == len(before_words)
    for before, after in zip(before_words, after_words, strict=True):
        if before.lower() in ("left", "right"):
            assert after.lower() == {"left": "right", "right": "left"}[before.lower()]
            assert after.isupper() == before.isupper()
            assert after[0].isupper() == before[0].isupper()
        else:
            assert after == before


def swap(text: str) -> str:
    _, _, out = image.hflip(np.zeros((1, 1), np.uint8), text=text, laterality_sensitive=False)
    assert out is not None
    return out


def _words(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        if ch.isalnum():
            cur += ch
        elif cur:
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


# --- draw_boxes -------------------------------------------------------------------------------


def reference_draw(img: np.ndarray, boxes, thickness: int, value) -> np.ndarray:
    """The rule of draw.rs in NumPy: pixels floor(x1)..ceil(x2)-1 (same for y), the `thickness`
    outermost rings of that rectangle, clipped to the image."""
    out = img.copy()
    h, w = img.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4).tolist():
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            continue
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        if x2 <= x1 or y2 <= y1:
            continue
        c0, c1 = math.floor(x1), math.ceil(x2) - 1
        r0, r1 = math.floor(y1), math.ceil(y2) - 1
        inside = (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
        ring = (rows < r0 + thickness) | (rows > r1 - thickness)
        ring = ring | (cols < c0 + thickness) | (cols > c1 - thickness)
        out[inside & ring] = value
    return out


def test_draw_boxes_on_real_images(radiograph_u16: np.ndarray, jpeg_rgb: np.ndarray) -> None:
    h, w = radiograph_u16.shape
    boxes = np.array(
        [
            [100.0, 200.0, 900.0, 1000.0],
            [300.5, 10.25, 310.75, 1500.9],
            [-50, -50, 80, 90],
            [w - 20, h - 30, w + 100, h + 100],
            [0, 0, w, h],
        ]
    )
    for t in (1, 2, 5):
        ours = image.draw_boxes(radiograph_u16, boxes, thickness=t)
        np.testing.assert_array_equal(ours, reference_draw(radiograph_u16, boxes, t, 65535))
    before = radiograph_u16.copy()
    image.draw_boxes(radiograph_u16, boxes)
    np.testing.assert_array_equal(radiograph_u16, before)  # a copy is returned, input untouched
    rh, rw = jpeg_rgb.shape[:2]
    rgb_boxes = [[10, 20, rw / 2, rh / 3], [rw / 4, rh / 4, 3 * rw / 4, 3 * rh / 4]]
    ours = image.draw_boxes(jpeg_rgb, rgb_boxes, thickness=3, value=200)
    np.testing.assert_array_equal(ours, reference_draw(jpeg_rgb, rgb_boxes, 3, 200))
    # Same outline as OpenCV's rectangle for an integer box (inclusive corners x1, x2 - 1).
    cv = cv2.rectangle(jpeg_rgb.copy(), (10, 20), (59, 79), (255, 255, 255), 1)
    np.testing.assert_array_equal(image.draw_boxes(jpeg_rgb, [[10, 20, 60, 80]], 1), cv)


coord = st.floats(-30, 90, allow_nan=False)


@SETTINGS
@given(
    boxes=st.lists(st.tuples(coord, coord, coord, coord), max_size=5),
    thickness=st.integers(1, 6),
    channels=st.sampled_from([0, 1, 3]),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    value=st.integers(0, 255),
)
def test_draw_boxes_matches_the_numpy_reference(boxes, thickness, channels, dtype, value) -> None:
    rng = np.random.default_rng(len(boxes) * 7 + thickness)
    shape = (41, 67) if channels == 0 else (41, 67, channels)
    img = rng.integers(0, 256, shape).astype(dtype)
    ours = image.draw_boxes(img, np.array(boxes, np.float64).reshape(-1, 4), thickness, value)
    assert ours.dtype == img.dtype and ours.shape == img.shape
    np.testing.assert_array_equal(ours, reference_draw(img, boxes, thickness, value))


def test_draw_boxes_never_fails_on_odd_boxes() -> None:
    img = np.zeros((5, 6), np.uint8)
    odd = [[1e300, -1e300, -1e300, 1e300], [7, 7, 9, 9], [2, 2, 2, 4], [4, 4, 1, 1]]
    out = image.draw_boxes(img, odd, thickness=1)
    np.testing.assert_array_equal(out, reference_draw(img, odd, 1, 255))
    assert image.draw_boxes(img, np.zeros((0, 4)), 2).sum() == 0
    with pytest.raises(InvalidArgumentError, match="thickness"):
        image.draw_boxes(img, odd, thickness=0)
    with pytest.raises(InvalidArgumentError, match="finite"):
        image.draw_boxes(img, [[0, 0, np.nan, 1]])


# --- normalize --------------------------------------------------------------------------------


def reference_normalize(img: np.ndarray, mean, std) -> np.ndarray:
    top = float(np.iinfo(img.dtype).max)
    return (img.astype(np.float64) / top - np.asarray(mean, np.float64)) / np.asarray(std)


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    # One f32 multiply-add with f32 scale/offset: a few ulps of the operands' magnitude.
    np.testing.assert_allclose(ours, ref, rtol=2e-6, atol=2e-6)


def test_normalize_real_images(
    radiograph_u16: np.ndarray, radiograph_u8: np.ndarray, jpeg_rgb: np.ndarray
) -> None:
    assert_close(
        image.normalize(radiograph_u16, 0.5, 0.25), reference_normalize(radiograph_u16, 0.5, 0.25)
    )
    assert_close(
        image.normalize(radiograph_u8, [0.45], [0.2]), reference_normalize(radiograph_u8, 0.45, 0.2)
    )
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    assert_close(image.normalize(jpeg_rgb, mean, std), reference_normalize(jpeg_rgb, mean, std))
    # Without mean/std: scaled to [0, 1]; a single value applies to every channel.
    unit = image.normalize(jpeg_rgb)
    assert_close(unit, jpeg_rgb / 255.0)
    assert unit.min() >= 0 and unit.max() <= 1
    assert_close(image.normalize(jpeg_rgb, 0.5, 0.5), reference_normalize(jpeg_rgb, 0.5, 0.5))


@SETTINGS
@given(
    channels=st.integers(1, 5),
    width=st.integers(1, 40),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    data=st.data(),
)
def test_normalize_matches_numpy(channels: int, width: int, dtype, data: st.DataObject) -> None:
    mean = data.draw(st.lists(st.floats(-1, 1), min_size=channels, max_size=channels))
    std = data.draw(st.lists(st.floats(0.05, 2), min_size=channels, max_size=channels))
    rng = np.random.default_rng(width * 10 + channels)
    img = rng.integers(0, np.iinfo(dtype).max + 1, (3, width, channels)).astype(dtype)
    assert_close(image.normalize(img, mean, std), reference_normalize(img, mean, std))


def test_normalize_rejects_bad_parameters() -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InvalidArgumentError, match="2 values for 3 channels"):
        image.normalize(rgb, [0.5, 0.5], [0.2, 0.2, 0.2])
    for bad in ([0.2, 0.0, 0.2], [0.2, np.nan, 0.2], [np.inf, 0.2, 0.2]):
        with pytest.raises(InvalidArgumentError, match="std"):
            image.normalize(rgb, 0.5, bad)
    with pytest.raises(InvalidArgumentError, match="mean"):
        image.normalize(rgb, [np.nan, 0.5, 0.5], 0.2)
    with pytest.raises(InvalidArgumentError, match="uint8 or uint16"):
        image.normalize(rgb.astype(np.int32))
