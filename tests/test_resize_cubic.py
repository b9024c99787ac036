"""`gradatim.image.resize(..., "cubic")` against `cv2.resize(img, size, interpolation=INTER_CUBIC)`.

gradatim computes OpenCV 5.0's own cubic resize (`resizeGeneric_` with `HResizeCubic` /
`VResizeCubic`: 11-bit fixed point for 8 bit, float32 for 16 bit, the vertical pass in float32
groups of 8 samples as the SSE baseline build does): equal on every sample to `cv2.resize` with
`cv2.ipp.setUseIPP(False)`. With IPP enabled (the default in the PyPI wheels) `cv2.resize` hands
`INTER_CUBIC` to Intel IPP (`ipp_resize` in resize.cpp), closed source with its own floating-point
order: the documented difference there is at most 1 level (docs/image.md). Covered: real images
(shrink to CURE's 448 and enlarge), hypothesis-drawn sizes, 8/16-bit, 1-4 channels.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradatim import image

cv2.setNumThreads(1)


@pytest.fixture
def no_ipp() -> Iterator[None]:
    """OpenCV's own kernels for the test's duration."""
    before = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        yield
    finally:
        cv2.ipp.setUseIPP(before)


def cv_cubic(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    return out[:, :, None] if img.ndim == 3 and out.ndim == 2 else out


def assert_equal(img: np.ndarray, size: tuple[int, int]) -> None:
    ours, ref = image.resize(img, size, "cubic"), cv_cubic(img, size)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    assert diff.max(initial=0) == 0, (
        f"{img.dtype}{img.shape} -> {size}: max diff {diff.max()}, "
        f"{(diff > 0).mean():.4%} of samples differ"
    )


@pytest.mark.usefixtures("no_ipp")
@pytest.mark.parametrize("size", [(448, 448), (1000, 1201), (2100, 2000), (97, 3)], ids=str)
def test_radiograph_equals_opencv(
    radiograph_u8: np.ndarray, radiograph_u16: np.ndarray, size: tuple[int, int]
) -> None:
    assert_equal(radiograph_u8, size)
    assert_equal(radiograph_u16, size)
    crop = np.ascontiguousarray(radiograph_u8[120:1870, 60:1700])  # a random resized crop's shape
    assert_equal(np.ascontiguousarray(np.dstack([crop] * 3)), size)


@pytest.mark.usefixtures("no_ipp")
def test_colour_jpegs_equal_opencv(libjxl: list[str]) -> None:
    for path in libjxl[:4]:
        img = image.decode(path, mode="rgb")
        for size in [(448, 448), (1031, 709)]:
            assert_equal(img, size)


def test_opencvs_ipp_path_is_within_one_level(radiograph_u8: np.ndarray) -> None:
    """The documented difference from `cv2.resize` as the wheels run it (IPP): <= 1 level, on a
    few % of the samples (8 bit: the 11-bit fixed-point weights)."""
    if not cv2.ipp.useIPP():
        pytest.skip("this OpenCV build has no IPP: nothing to compare")
    for img in (radiograph_u8, radiograph_u8.astype(np.uint16) * 257):
        for size in [(448, 448), (3000, 3100)]:
            diff = np.abs(image.resize(img, size, "cubic").astype(np.int64) - cv_cubic(img, size))
            assert diff.max() <= 1 and (diff > 0).mean() < 0.05, (diff.max(), (diff > 0).mean())


def test_same_size_is_a_copy(radiograph_u8: np.ndarray) -> None:
    assert np.array_equal(image.resize(radiograph_u8, (1841, 1955), "cubic"), radiograph_u8)


@st.composite
def resize_case(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, int]]:
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    channels = draw(st.sampled_from([0, 1, 2, 3, 4]))
    h, w = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    shape = (h, w) if channels == 0 else (h, w, channels)
    img = draw(hnp.arrays(dtype, shape, elements=st.integers(0, int(np.iinfo(dtype).max))))
    return np.ascontiguousarray(img), (draw(st.integers(1, 90)), draw(st.integers(1, 90)))


@pytest.mark.usefixtures("no_ipp")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(resize_case())
def test_random_cases_equal_opencv(case: tuple[np.ndarray, tuple[int, int]]) -> None:
    img, size = case
    assert_equal(img, size)
