"""CLAHE against its oracle, ``cv2.createCLAHE(clipLimit, tileGridSize).apply(img)``.

The contract (docs/image.md, "Oracle conventions") allows 1 grey level; the implementation
reproduces OpenCV's algorithm step by step, so these tests demand equality and report the largest
difference and the share of differing pixels when it is not met. Images are real ones nobody here
made (a chest radiograph, libjxl's and KDE's JPEGs, see conftest.py) plus hypothesis-drawn sizes,
grids and clip limits."""

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


def cv_clahe(img: np.ndarray, clip: float, grid: tuple[int, int]) -> np.ndarray:
    return cv2.createCLAHE(clipLimit=clip, tileGridSize=grid).apply(img)


def assert_equal_to_opencv(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (
        f"{what}: got {ours.dtype}{ours.shape}, OpenCV {ref.dtype}{ref.shape}"
    )
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    assert not diff.any(), (
        f"{what}: max |diff| {int(diff.max())} grey levels, "
        f"{np.count_nonzero(diff) / diff.size:.4%} of {diff.size} pixels differ"
    )


def check(
    img: np.ndarray, clip: float = 2.0, grid: tuple[int, int] = (8, 8), what: str = ""
) -> None:
    label = f"{what} {img.dtype}{img.shape} clip={clip} grid={grid}"
    assert_equal_to_opencv(image.clahe(img, clip, grid), cv_clahe(img, clip, grid), label)


# --- the real radiograph (1841 wide x 1955 high: neither side divides by 8) ----------------------


@pytest.mark.parametrize("clip", [2.0, 3.0, 4.0, 40.0])
def test_radiograph_8bit_cure_settings(radiograph_u8: np.ndarray, clip: float) -> None:
    """CURE trains with clip 4 and evaluates with clip 3, 8x8 tiles; 40 is OpenCV's default."""
    check(radiograph_u8, clip, (8, 8), "radiograph")


@pytest.mark.parametrize("grid", [(7, 5), (5, 7), (16, 3), (1, 1), (13, 11)])
def test_radiograph_8bit_non_square_grids_and_transpose(
    radiograph_u8: np.ndarray, grid: tuple[int, int]
) -> None:
    check(radiograph_u8, 2.0, grid, "radiograph")
    check(np.ascontiguousarray(radiograph_u8.T), 2.0, grid, "radiograph transposed")


def test_radiograph_8bit_shifted_down(radiograph_u16: np.ndarray) -> None:
    """The plain 8-bit view (`>> 8`): a narrow histogram where clipping dominates."""
    check((radiograph_u16 >> 8).astype(np.uint8), 2.0, (8, 8), "radiograph >> 8")


@pytest.mark.parametrize(("clip", "grid"), [(2.0, (8, 8)), (4.0, (5, 7)), (0.0, (4, 4))])
def test_radiograph_16bit(radiograph_u16: np.ndarray, clip: float, grid: tuple[int, int]) -> None:
    """16-bit uses 65536 bins; the radiograph's stored range is 6288..31893."""
    check(radiograph_u16, clip, grid, "radiograph")


def test_divisible_size_takes_the_unpadded_path(radiograph_u8: np.ndarray) -> None:
    """1840 x 1952 divides by 8 on both sides: no padding at all (OpenCV's first branch); a crop
    that divides on one side only is padded on both (OpenCV's quirk, reproduced)."""
    check(np.ascontiguousarray(radiograph_u8[:1952, :1840]), 2.0, (8, 8), "radiograph crop")
    check(np.ascontiguousarray(radiograph_u8[:1953, :1840]), 2.0, (8, 8), "radiograph crop")


def test_clip_zero_is_plain_tile_equalisation(radiograph_u8: np.ndarray) -> None:
    check(radiograph_u8, 0.0, (8, 8), "no clipping")
    assert not np.array_equal(image.clahe(radiograph_u8, 0.0), image.clahe(radiograph_u8, 2.0)), (
        "clip 0 and clip 2 should differ on a real image"
    )


def test_trailing_channel_axis_is_accepted(radiograph_u8: np.ndarray) -> None:
    img = np.ascontiguousarray(radiograph_u8[:300, :401])
    ours = image.clahe(img[:, :, None], 2.0, (8, 8))
    assert_equal_to_opencv(ours.reshape(img.shape), cv_clahe(img, 2.0, (8, 8)), "H x W x 1")


def test_non_contiguous_input(radiograph_u8: np.ndarray) -> None:
    view = radiograph_u8[::3, ::2]
    assert_equal_to_opencv(
        image.clahe(view, 3.0, (8, 8)),
        cv_clahe(np.ascontiguousarray(view), 3.0, (8, 8)),
        "strided view",
    )


# --- real JPEG photographs ----------------------------------------------------------------------


@pytest.mark.parametrize("path", libjxl_jpegs() or ["<missing>"], ids=lambda p: Path(p).name)
def test_libjxl_jpegs(path: str, libjxl: list[str]) -> None:
    grey = image.decode(path, mode="gray")
    check(grey, 2.0, (8, 8), Path(path).name)
    check(grey, 4.0, (3, 6), Path(path).name)


def pick_wallpaper(files: list[str], index: int) -> str:
    """A 2560x1600 photo when the package has them (big, but quick to decode), else any."""
    preferred = sorted(p for p in files if p.endswith("/2560x1600.jpg")) or sorted(files)
    return preferred[index % len(preferred)]


@pytest.mark.parametrize("index", [0, 1], ids=lambda i: f"wallpaper{i}")
def test_wallpapers_cropped_to_odd_sizes(index: int, wallpapers: list[str]) -> None:
    path = pick_wallpaper(wallpapers, index)
    grey = image.decode(path, mode="gray")
    # Cropped so that neither side divides by the grid.
    crop = np.ascontiguousarray(grey[: grey.shape[0] - 7, : grey.shape[1] - 5])
    name = Path(path).parents[2].name
    check(crop, 2.0, (8, 8), name)
    check(crop, 3.0, (9, 4), name)


# --- random sizes, grids and clip limits ---------------------------------------------------------


def synthetic(rng: np.random.Generator, h: int, w: int, kind: str, dtype: type) -> np.ndarray:
    top = 255 if dtype is np.uint8 else int(rng.choice([4095, 65535]))
    if kind == "noise":
        img = rng.integers(0, top + 1, (h, w))
    elif kind == "few":  # a handful of values: tall histogram peaks, heavy clipping
        img = rng.choice(rng.integers(0, top + 1, 4), (h, w))
    else:  # smooth gradient plus mild noise, like anatomy
        yy, xx = np.mgrid[0:h, 0:w]
        ramp = (xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2 * top
        img = np.clip(ramp + rng.normal(0, top / 50, (h, w)), 0, top)
    return np.ascontiguousarray(img.astype(dtype))


@st.composite
def clahe_case(draw: st.DrawFn, dtype: type, max_tiles: int) -> tuple:
    h = draw(st.integers(1, 160))
    w = draw(st.integers(1, 160))
    grid = (draw(st.integers(1, min(w, max_tiles))), draw(st.integers(1, min(h, max_tiles))))
    clip = draw(st.one_of(st.just(0.0), st.floats(0.01, 60.0), st.sampled_from([1.0, 2.0, 4.0])))
    kind = draw(st.sampled_from(["noise", "few", "smooth"]))
    seed = draw(st.integers(0, 2**32 - 1))
    return synthetic(np.random.default_rng(seed), h, w, kind, dtype), clip, grid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clahe_case(np.uint8, 16))
def test_random_8bit(case: tuple) -> None:
    img, clip, grid = case
    check(img, clip, grid, "random")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clahe_case(np.uint16, 6))
def test_random_16bit(case: tuple) -> None:
    img, clip, grid = case
    check(img, clip, grid, "random")


# --- arguments OpenCV would accept but the contract refuses, and plain errors -------------------


def test_bad_arguments_raise_value_errors() -> None:
    img = np.zeros((10, 12), np.uint8)
    with pytest.raises(InvalidArgumentError, match="larger than the 12x10 image"):
        image.clahe(img, 2.0, (13, 2))
    with pytest.raises(InvalidArgumentError, match="larger than"):
        image.clahe(img, 2.0, (2, 11))
    with pytest.raises(InvalidArgumentError):
        image.clahe(img, 2.0, (0, 8))
    with pytest.raises(InvalidArgumentError):
        image.clahe(img, -1.0)
    with pytest.raises(InvalidArgumentError):
        image.clahe(img, float("nan"))
    with pytest.raises(InvalidArgumentError, match="grey"):
        image.clahe(np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(InvalidArgumentError):
        image.clahe(np.zeros((10, 12), np.float32))
    with pytest.raises(ValueError, match="too fine"):
        image.clahe(np.zeros((200, 200), np.uint16), 2.0, (200, 200))
