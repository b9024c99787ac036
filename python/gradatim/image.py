"""Per-image operations, implemented in Rust (``rust/core/src/image``), run without the GIL.

Arrays are NumPy, HxW (grey) or HxWxC (colour, RGB order), ``uint8`` or ``uint16``. Each operation
matches an OpenCV oracle (the tests compare against it):

- :func:`clahe` == ``cv2.createCLAHE(clip_limit, tile_grid).apply(img)``
- :func:`warp_affine` == ``cv2.warpAffine(img, M, size, INTER_LINEAR | INTER_CUBIC,
  BORDER_CONSTANT, 0)``
- :func:`resize` == ``cv2.resize(img, size, interpolation=INTER_AREA | INTER_LINEAR |
  INTER_CUBIC)`` (cubic: OpenCV's own kernel, i.e. ``cv2.ipp.setUseIPP(False)``; docs/image.md)

Sizes are ``(width, height)`` as in OpenCV; array shapes are ``(height, width[, channels])``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim import _core
from gradatim.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_BYTES",
    "decode",
    "reduction_denominator",
    "centred_affine",
    "clahe",
    "warp_affine",
    "resize",
    "hflip",
    "draw_boxes",
    "normalize",
    "encode_jpeg",
    "encode_png",
]

DEFAULT_MAX_PIXELS: int = _core.DEFAULT_MAX_PIXELS
DEFAULT_MAX_BYTES: int = _core.DEFAULT_MAX_BYTES
"""Headers that declare more pixels than this (2**28) are refused before any allocation."""

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview
Size = tuple[int, int]


def _image(img: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype not in (np.uint8, np.uint16):
        raise InvalidArgumentError(f"{what}: expected uint8 or uint16 pixels, got {arr.dtype}")
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise InvalidArgumentError(
            f"{what}: expected a non-empty (H, W) or (H, W, C) array, got shape {arr.shape}"
        )
    return np.ascontiguousarray(arr)


def _size(size: Sequence[int], what: str) -> Size:
    if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
        raise InvalidArgumentError(f"{what}: size must be (width, height) > 0, got {size!r}")
    return int(size[0]), int(size[1])


def _boxes(boxes: ArrayLike | None, what: str) -> np.ndarray | None:
    if boxes is None:
        return None
    arr = np.ascontiguousarray(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{what}: boxes must be finite, got {arr.tolist()}")
    return arr


def per_channel(
    v: Sequence[float] | float | None, default: float, channels: int, name: str
) -> list[float]:
    """One float per channel from a scalar, a per-channel sequence or ``None`` (``default``)."""
    vals = [default] if v is None else np.atleast_1d(np.asarray(v, dtype=np.float64)).tolist()
    if len(vals) == 1:
        vals = vals * channels
    if len(vals) != channels:
        raise InvalidArgumentError(f"{name} has {len(vals)} values for {channels} channels")
    return [float(x) for x in vals]


def decode(
    source: ImageSource,
    *,
    reduce_to: Size | None = None,
    mode: Literal["unchanged", "gray", "rgb"] = "unchanged",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    full_range: bool = False,
) -> np.ndarray:
    """Decode a JPEG, PNG or DICOM file (a path, or an object store URL such as
    ``s3://bucket/key``: see docs/storage.md) or in-memory bytes.

    Returns ``uint8`` (JPEG, 8-bit PNG, DICOM with <= 8 bits stored) or ``uint16`` (16-bit PNG,
    DICOM with more bits stored), HxW for grey and HxWx3 (RGB) for colour. ``mode="gray"``
    always gives HxW (JPEG decodes the luma plane, as ``cv2.IMREAD_GRAYSCALE``), ``mode="rgb"``
    always HxWx3.

    ``reduce_to=(w, h)``: JPEG decodes at the smallest scale 1/2, 1/4 or 1/8 whose output is still
    at least ``w`` x ``h`` (DCT scaling, as ``cv2.IMREAD_REDUCED_*``); DICOM JPEG 2000 at the
    smallest 1/2^r that is, ``r`` at most its decomposition levels (OpenJPEG's reduced decode,
    ``ceil(size / 2^r)``); other formats ignore it. The returned shape is the decoded size.

    DICOM: MONOCHROME1 is inverted to MONOCHROME2 and the rescale slope/intercept are applied;
    YBR_FULL / YBR_FULL_422 become RGB and PALETTE COLOR goes through its lookup tables (pydicom's
    conversions). Grey values are the stored values, as pydicom returns them; ``full_range=True``
    stretches the range the stored bits allow over the output type (a 12-bit image to 0..65535),
    as ``ManifestDataset`` always does, so DICOMs and JPEGs share one intensity scale.

    Raises :class:`gradatim.DecodeError` (empty, truncated, corrupt),
    :class:`gradatim.UnsupportedFormatError`, :class:`gradatim.ImageTooLargeError` (more than
    ``max_pixels`` declared, or samples taking more than ``max_bytes``: both checked from the
    header, before anything is allocated) or ``OSError`` (unreadable path); every message names
    the input.
    Only regular files are read (a FIFO or device is refused before it is opened).
    """
    if reduce_to is not None:
        reduce_to = _size(reduce_to, "decode(reduce_to=...)")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _core.decode_bytes(
            bytes(source),
            "<bytes>",
            reduce_to=reduce_to,
            mode=mode,
            max_pixels=max_pixels,
            max_bytes=max_bytes,
            full_range=full_range,
        )
    return _core.decode_path(
        os.fspath(source),
        reduce_to=reduce_to,
        mode=mode,
        max_pixels=max_pixels,
        max_bytes=max_bytes,
        full_range=full_range,
    )


def reduction_denominator(width: int, height: int, reduce_to: Size | None) -> int:
    """The DCT scale denominator (1, 2, 4 or 8) :func:`decode` uses for a ``width`` x ``height``
    JPEG and ``reduce_to``: the largest whose output ``ceil(size / d)`` is still at least
    ``reduce_to`` on both sides (1 without ``reduce_to``). OpenCV's ``IMREAD_REDUCED_*_d`` gives
    the same output size, so an OpenCV pipeline can pick its flag with this."""
    if reduce_to is not None:
        reduce_to = _size(reduce_to, "reduction_denominator(reduce_to=...)")
    return _core.reduction_denominator(int(width), int(height), reduce_to)


def centred_affine(
    angle: float, scale: float, shear: float, tx: float, ty: float, cx: float, cy: float
) -> NDArray[np.float64]:
    """The forward 2x3 matrix the augmentation draws, for :func:`warp_affine`: about ``(cx, cy)``,
    scale, shear x by y (``shear`` degrees), rotate ``angle`` degrees counter-clockwise on screen
    (``cv2.getRotationMatrix2D``'s sense), then translate by ``(tx, ty)`` pixels."""
    args = (angle, scale, shear, tx, ty, cx, cy)
    return np.asarray(_core.centred_affine(*(float(v) for v in args)), dtype=np.float64)


def clahe(
    img: ArrayLike, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)
) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalisation of a grey ``uint8``/``uint16`` image.

    Same result as ``cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=tile_grid).apply(img)``;
    ``tile_grid`` is ``(tiles_x, tiles_y)`` as in OpenCV. CURE trains with clip 4.0, 8x8 tiles.
    """
    arr = _image(img, "clahe")
    if arr.ndim == 3 and arr.shape[2] != 1:
        raise InvalidArgumentError(f"clahe: expected a grey image, got shape {arr.shape}")
    tx, ty = _size(tile_grid, "clahe(tile_grid=...)")
    if not clip_limit >= 0:
        raise InvalidArgumentError(f"clahe: clip_limit must be >= 0, got {clip_limit}")
    return _core.clahe(arr, float(clip_limit), tx, ty)


def warp_affine(
    img: ArrayLike,
    matrix: ArrayLike,
    size: Size,
    boxes: ArrayLike | None = None,
    min_visible: float = 0.25,
    interpolation: Literal["bilinear", "cubic"] = "bilinear",
) -> tuple[np.ndarray, NDArray[np.float64], NDArray[np.bool_]]:
    """Warp ``img`` with the forward 2x3 affine ``matrix`` into an image of ``size=(w, h)``.

    Bilinear (or bicubic) interpolation, constant 0 border: the same as ``cv2.warpAffine(img,
    matrix, size, flags=cv2.INTER_LINEAR (cv2.INTER_CUBIC), borderMode=cv2.BORDER_CONSTANT,
    borderValue=0)``. Bicubic takes at most 4 channels, as OpenCV.

    ``boxes`` (N x 4, ``[x1, y1, x2, y2]`` in input pixels) go through the same matrix: their four
    corners are mapped, the enclosing box is clipped to the output, and a box whose clipped area is
    below ``min_visible`` of its mapped area is dropped. Returns ``(image, kept_boxes, keep)`` where
    ``keep`` (N booleans) says which input boxes survived, in order.
    """
    arr = _image(img, "warp_affine")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise InvalidArgumentError(f"warp_affine: matrix must be a finite 2x3 array, got {m!r}")
    w, h = _size(size, "warp_affine")
    b = _boxes(boxes, "warp_affine")
    if not 0.0 <= min_visible <= 1.0:
        raise InvalidArgumentError(f"warp_affine: min_visible must be in [0, 1], got {min_visible}")
    return _core.warp_affine(arr, m.tolist(), w, h, b, float(min_visible), interpolation)


def resize(
    img: ArrayLike, size: Size, interpolation: Literal["area", "bilinear", "cubic"] = "area"
) -> np.ndarray:
    """Resize to ``size=(w, h)``: ``"area"`` == ``cv2.INTER_AREA`` (use it to shrink),
    ``"bilinear"`` == ``cv2.INTER_LINEAR``, ``"cubic"`` == ``cv2.INTER_CUBIC`` as OpenCV's own
    code computes it (``cv2.resize`` hands cubic to Intel IPP where built with it, within 1
    level: docs/image.md)."""
    arr = _image(img, "resize")
    w, h = _size(size, "resize")
    return _core.resize(arr, w, h, interpolation)


def hflip(
    img: ArrayLike,
    boxes: ArrayLike | None = None,
    text: str | None = None,
    *,
    laterality_sensitive: bool = True,
) -> tuple[np.ndarray, NDArray[np.float64] | None, str | None]:
    """Mirror an image left-right, with its boxes and text kept consistent.

    A chest radiograph's left and right are anatomy, not decoration: flipping a laterality-sensitive
    sample (the default, as in the manifest) raises :class:`gradatim.InvalidArgumentError`. For
    other samples the words "left" and "right" in ``text`` are swapped (whole words, case kept)
    and boxes are mirrored. Returns ``(image, boxes, text)`` (``None`` where not given).
    """
    if laterality_sensitive:
        raise InvalidArgumentError(
            "hflip: refusing to flip a laterality-sensitive sample (left/right would be wrong); "
            "pass laterality_sensitive=False for samples whose side does not matter"
        )
    arr = _image(img, "hflip")
    b = _boxes(boxes, "hflip")
    flipped_boxes = None if b is None else _core.hflip_boxes(b, arr.shape[1])
    flipped_text = None if text is None else _core.swap_laterality(text)
    return _core.hflip(arr), flipped_boxes, flipped_text


def draw_boxes(
    img: ArrayLike, boxes: ArrayLike, thickness: int = 2, value: float | None = None
) -> np.ndarray:
    """Return a copy of ``img`` with each box's outline drawn (MedCLM's Easy-stage overlay).

    The outline lies inside the box, ``thickness`` pixels wide, in ``value`` (default: the dtype's
    maximum, i.e. white).
    """
    arr = _image(img, "draw_boxes")
    b = _boxes(boxes, "draw_boxes")
    if thickness < 1:
        raise InvalidArgumentError(f"draw_boxes: thickness must be >= 1, got {thickness}")
    if value is None:
        value = float(np.iinfo(arr.dtype).max)
    return _core.draw_boxes(arr, b, int(thickness), float(value))


def normalize(
    img: ArrayLike,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
) -> NDArray[np.float32]:
    """Convert to float32: ``(img / max_value - mean) / std`` per channel, ``max_value`` = 255 or
    65535 by dtype (the torchvision convention: mean/std are given on the [0, 1] scale). Without
    mean/std the result is simply scaled to [0, 1]."""
    arr = _image(img, "normalize")
    channels = 1 if arr.ndim == 2 else arr.shape[2]

    m = per_channel(mean, 0.0, channels, "normalize: mean")
    s = per_channel(std, 1.0, channels, "normalize: std")
    if any(not np.isfinite(x) or x == 0 for x in s):
        raise InvalidArgumentError(f"normalize: std must be finite and non-zero, got {s}")
    return _core.normalize(arr, m, s)


def encode_jpeg(img: ArrayLike, quality: int = 92) -> bytes:
    """JPEG-encode a ``uint8`` grey (HxW) or RGB (HxWx3) image with libjpeg-turbo (colour 4:2:0)."""
    arr = _image(img, "encode_jpeg")
    if arr.dtype != np.uint8:
        raise InvalidArgumentError(f"encode_jpeg: JPEG holds 8-bit samples, got {arr.dtype}")
    return _core.encode_jpeg(arr, int(quality))


def encode_png(img: ArrayLike) -> bytes:
    """PNG-encode a ``uint8`` or ``uint16`` grey (HxW) or RGB (HxWx3) image (lossless)."""
    return _core.encode_png(_image(img, "encode_png"))
