"""Resize against its oracle, ``cv2.resize(img, (w, h), interpolation=INTER_AREA | INTER_LINEAR)``.

The contract (docs/image.md, "Oracle conventions") allows 1 grey level on 99.9 % of pixels; the
implementation follows OpenCV's arithmetic (area tables, 11-bit fixed point, ties-to-even rounding),
so these tests demand equality and report the largest difference and the share of differing samples
otherwise.

One exception: x86 builds of OpenCV hand 16-bit INTER_LINEAR (1, 3 or 4 channels, both source
sides >= 2) to Intel IPP, which interpolates as `a + (b - a) * t` with fused multiply-adds and
double-precision coordinates instead of OpenCV's own `a * (1 - t) + b * t`. gradatim keeps
OpenCV's formula (what OpenCV computes without IPP), so there the tests allow 1 level.
Covered: integer and fractional shrinking, enlarging (INTER_AREA then falls back to OpenCV's
bilinear variant), 8/16-bit, 1-4 channels, on real images and hypothesis-drawn sizes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import libjxl_jpegs
from gradatim import image
from gradatim.errors import InvalidArgumentError

FLAGS = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR}


def assert_close_to_opencv(
    ours: np.ndarray, ref: np.ndarray, what: str, tolerance: int = 0
) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (
        f"{what}: got {ours.dtype}{ours.shape}, OpenCV {ref.dtype}{ref.shape}"
    )
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    assert diff.max(initial=0) <= tolerance, (
        f"{what}: max |diff| {int(diff.max())} levels (allowed {tolerance}), "
        f"{np.count_nonzero(diff) / diff.size:.4%} of {diff.size} samples differ"
    )


def check(img: np.ndarray, size: tuple[int, int], interpolation: str, what: str = "") -> None:
    ref = cv2.resize(img, size, interpolation=FLAGS[interpolation])
    if img.ndim == 3 and ref.ndim == 2:  # OpenCV drops a trailing axis of length 1
        ref = ref[:, :, None]
    label = f"{what} {img.dtype}{img.shape} -> {size} {interpolation}"
    # IPP's 16-bit bilinear, see the module docstring.
    tolerance = 1 if img.dtype == np.uint16 and interpolation == "bilinear" else 0
    assert_close_to_opencv(image.resize(img, size, interpolation), ref, label, tolerance)


# --- the real radiograph: 1841 x 1955 (= 7 * 263 x 5 * 391) ----------------------------------


RADIOGRAPH_SIZES = [
    (512, 512),  # the usual model input: fractional area weights on both axes
    (263, 391),  # exact 7 x 5 shrink: box average
    (920, 977),  # just over 2x: fractional
    (224, 224),
    (1841, 977),  # one axis unchanged, the other halved (not integer: 1955 / 977)
    (2000, 1500),  # enlarge x, shrink y: INTER_AREA falls back to its bilinear variant
]


@pytest.mark.parametrize("size", RADIOGRAPH_SIZES, ids=str)
@pytest.mark.parametrize("interpolation", ["area", "bilinear"])
def test_radiograph_8bit(
    radiograph_u8: np.ndarray, size: tuple[int, int], interpolation: str
) -> None:
    check(radiograph_u8, size, interpolation, "radiograph")


@pytest.mark.parametrize("size", [(512, 512), (263, 391), (2000, 2100)], ids=str)
@pytest.mark.parametrize("interpolation", ["area", "bilinear"])
def test_radiograph_16bit(
    radiograph_u16: np.ndarray, size: tuple[int, int], interpolation: str
) -> None:
    check(radiograph_u16, size, interpolation, "radiograph")


def test_radiograph_16bit_large_box_sums(radiograph_u16: np.ndarray) -> None:
    """Boxes above 256 pixels push OpenCV's f32 sums past 2**24, where the summation order
    starts to matter: 1841 x 1955 -> 7 x 5 is a 263 x 391 box."""
    stretched = (radiograph_u16.astype(np.uint32) * 2).clip(0, 65535).astype(np.uint16)
    check(stretched, (7, 5), "area", "radiograph x2")


def test_radiograph_upscaled_crop(radiograph_u8: np.ndarray) -> None:
    crop = np.ascontiguousarray(radiograph_u8[700:901, 600:777])
    for size in [(354, 402), (500, 333), (177 * 3, 201 * 3)]:
        check(crop, size, "area", "radiograph crop")
        check(crop, size, "bilinear", "radiograph crop")


def test_exact_halving_with_bilinear_is_the_box_average(radiograph_u8: np.ndarray) -> None:
    """OpenCV turns an exact 2x INTER_LINEAR shrink into its 2x2 box average (`(sum + 2) >> 2`)."""
    even = np.ascontiguousarray(radiograph_u8[:1954, :1840])
    check(even, (920, 977), "bilinear", "radiograph even crop")
    check(even, (920, 977), "area", "radiograph even crop")


def test_same_size_is_a_copy(radiograph_u8: np.ndarray) -> None:
    out = image.resize(radiograph_u8, (1841, 1955))
    np.testing.assert_array_equal(out, radiograph_u8)
    assert not np.shares_memory(out, radiograph_u8)


# --- real JPEG photographs, grey and colour ------------------------------------------------------


@pytest.mark.parametrize("path", libjxl_jpegs() or ["<missing>"], ids=lambda p: Path(p).name)
def test_libjxl_jpegs(path: str, libjxl: list[str]) -> None:
    img = image.decode(path)  # RGB or grey as stored
    h, w = img.shape[:2]
    for size in [(w // 4, h // 4), (w // 3 + 1, h // 3 - 1)]:
        check(img, size, "area", Path(path).name)
        check(img, size, "bilinear", Path(path).name)
    crop = np.ascontiguousarray(img[h // 2 : h // 2 + 201, w // 3 : w // 3 + 299])
    for size in [(598, 402), (450, 203), (1000, 300)]:
        check(crop, size, "area", f"{Path(path).name} crop")
        check(crop, size, "bilinear", f"{Path(path).name} crop")


def pick_wallpaper(files: list[str], index: int) -> str:
    """A 2560x1600 photo when the package has them (big, but quick to decode), else any."""
    preferred = sorted(p for p in files if p.endswith("/2560x1600.jpg")) or sorted(files)
    return preferred[index % len(preferred)]


@pytest.mark.parametrize("index", [0, 1], ids=lambda i: f"wallpaper{i}")
def test_wallpapers(index: int, wallpapers: list[str]) -> None:
    path = pick_wallpaper(wallpapers, index)
    rgb = image.decode(path, mode="rgb")
    name = Path(path).parents[2].name
    square = np.ascontiguousarray(rgb[:1600, :1600])
    check(square, (400, 400), "area", f"{name} 4x")  # the 2048 -> 512 kind of shrink
    check(np.ascontiguousarray(square[:, :, 1]), (400, 400), "area", f"{name} grey 4x")
    odd = np.ascontiguousarray(rgb[3:-4, 5:-2])
    for size in [(512, 512), (448, 320), (1000, 999)]:
        check(odd, size, "area", name)
        check(odd, size, "bilinear", name)


# --- random sizes, channels, depths --------------------------------------------------------------


@st.composite
def resize_case(draw: st.DrawFn) -> tuple:
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))  # None: a plain H x W array
    h, w = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    # Mostly shrinking (integer ratios included), some enlarging.
    fx = draw(st.one_of(st.integers(1, 6).map(lambda k: max(w // k, 1)), st.integers(1, 200)))
    fy = draw(st.one_of(st.integers(1, 6).map(lambda k: max(h // k, 1)), st.integers(1, 200)))
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    top = np.iinfo(dtype).max
    if draw(st.booleans()):
        img = rng.integers(0, top + 1, shape)
    else:  # smooth content, where rounding ties are common
        yy, xx = np.mgrid[0:h, 0:w]
        base = (xx * 3 + yy * 5) % 97 / 96 * top
        img = np.broadcast_to(base[..., None] if channels else base, shape)
    interpolation = draw(st.sampled_from(["area", "bilinear"]))
    return np.ascontiguousarray(img.astype(dtype)), (fx, fy), interpolation


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resize_case())
def test_random(case: tuple) -> None:
    img, size, interpolation = case
    check(img, size, interpolation, "random")


def test_many_channels_box_average() -> None:
    """Any channel count works; OpenCV's integer box average handles 5 channels too."""
    img = np.random.default_rng(5).integers(0, 256, (40, 60, 5), dtype=np.uint8)
    check(img, (20, 10), "area", "5 channels")
    check(img, (15, 8), "area", "5 channels")


# --- errors -------------------------------------------------------------------------------------


def test_bad_arguments_raise_value_errors() -> None:
    img = np.zeros((10, 12), np.uint8)
    with pytest.raises(InvalidArgumentError):
        image.resize(img, (0, 5))
    with pytest.raises(InvalidArgumentError):
        image.resize(img, (5, -1))
    with pytest.raises(InvalidArgumentError, match="interpolation"):
        image.resize(img, (5, 5), "lanczos")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        image.resize(np.zeros((0, 12), np.uint8), (5, 5))
    with pytest.raises(InvalidArgumentError):
        image.resize(img.astype(np.float32), (5, 5))
    with pytest.raises(ValueError, match="too large|exceeds"):
        image.resize(img, (2**31, 2**31))
