"""Type stubs of the compiled extension ``gradatim._core`` (rust/python). Use the typed Python
fronts (``gradatim.image`` ...) rather than calling these directly."""

import numpy as np
from numpy.typing import NDArray

__version__: str
DEFAULT_MAX_PIXELS: int

# --- image (rust/python/src/image.rs) ---------------------------------------------------------
def decode_path(
    path: str,
    reduce_to: tuple[int, int] | None = None,
    mode: str = "unchanged",
    max_pixels: int = ...,
) -> np.ndarray: ...
def decode_bytes(
    data: bytes,
    name: str = "<bytes>",
    reduce_to: tuple[int, int] | None = None,
    mode: str = "unchanged",
    max_pixels: int = ...,
) -> np.ndarray: ...
def clahe(img: np.ndarray, clip_limit: float, tiles_x: int, tiles_y: int) -> np.ndarray: ...
def resize(img: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray: ...
def warp_affine(
    img: np.ndarray,
    matrix: list[list[float]],
    width: int,
    height: int,
    boxes: NDArray[np.float64] | None = None,
    min_visible: float = 0.25,
) -> tuple[np.ndarray, NDArray[np.float64], NDArray[np.bool_]]: ...
def hflip(img: np.ndarray) -> np.ndarray: ...
def hflip_boxes(boxes: NDArray[np.float64], width: int) -> NDArray[np.float64]: ...
def swap_laterality(text: str) -> str: ...
def draw_boxes(
    img: np.ndarray, boxes: NDArray[np.float64], thickness: int, value: float
) -> np.ndarray: ...
def normalize(img: np.ndarray, mean: list[float], std: list[float]) -> NDArray[np.float32]: ...
