"""Type stubs of the compiled extension ``gradatim._core`` (rust/python). Use the typed Python
fronts (``gradatim.image`` ...) rather than calling these directly."""

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, final

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Self

__version__: str
UNLABELED: str
MANIFEST_FIELDS: list[str]
TASKS: list[str]
CHEXPERT_LABELS: list[str]
AUGMENT_DEFAULTS: dict[str, Any]
STAGE_CODES: dict[str, int]
STAGE_DEFAULTS: dict[str, int | float]
DEFAULT_MAX_PIXELS: int
DEFAULT_MAX_BYTES: int

# --- image (rust/python/src/image.rs) ---------------------------------------------------------
def decode_path(
    path: str,
    reduce_to: tuple[int, int] | None = None,
    mode: str = "unchanged",
    max_pixels: int = ...,
    max_bytes: int = ...,
    full_range: bool = ...,
) -> np.ndarray: ...
def decode_bytes(
    data: bytes,
    name: str = "<bytes>",
    reduce_to: tuple[int, int] | None = None,
    mode: str = "unchanged",
    max_pixels: int = ...,
    max_bytes: int = ...,
    full_range: bool = ...,
) -> np.ndarray: ...
def reduction_denominator(
    width: int, height: int, reduce_to: tuple[int, int] | None = None
) -> int: ...
def clahe(img: np.ndarray, clip_limit: float, tiles_x: int, tiles_y: int) -> np.ndarray: ...
def resize(img: np.ndarray, width: int, height: int, interpolation: str) -> np.ndarray: ...
def warp_affine(
    img: np.ndarray,
    matrix: list[list[float]],
    width: int,
    height: int,
    boxes: NDArray[np.float64] | None = None,
    min_visible: float = 0.25,
    interpolation: str = "bilinear",
) -> tuple[np.ndarray, NDArray[np.float64], NDArray[np.bool_]]: ...
def hflip(img: np.ndarray) -> np.ndarray: ...
def hflip_boxes(boxes: NDArray[np.float64], width: int) -> NDArray[np.float64]: ...
def swap_laterality(text: str) -> str: ...
def draw_boxes(
    img: np.ndarray, boxes: NDArray[np.float64], thickness: int, value: float
) -> np.ndarray: ...
def encode_jpeg(img: NDArray[np.uint8], quality: int = 92) -> bytes: ...
def encode_png(img: np.ndarray) -> bytes: ...
def normalize(img: np.ndarray, mean: list[float], std: list[float]) -> NDArray[np.float32]: ...

# --- augment (rust/python/src/augment.rs) -----------------------------------------------------
def centred_affine(
    angle: float, scale: float, shear: float, tx: float, ty: float, cx: float, cy: float
) -> list[list[float]]: ...
def apply_augment_plan(
    img: np.ndarray,
    width: int,
    height: int,
    boxes: NDArray[np.float64] | None = None,
    *,
    decoded_scale: tuple[float, float] = ...,
    crop: list[float] | tuple[float, float, float, float] | None = None,
    clahe: tuple[float, int, int] | None = None,
    affine: list[list[float]] | None = None,
    flip: bool = False,
    min_visible: float = 0.25,
) -> tuple[np.ndarray, NDArray[np.float64], NDArray[np.bool_]]: ...
def augment_plan(
    augment: dict[str, Any],
    seed: int,
    epoch: int,
    index: int,
    width: int,
    height: int,
    laterality_sensitive: bool = False,
) -> dict[str, Any]: ...
def apply_cure_plan(
    img: np.ndarray,
    width: int,
    height: int,
    plan: dict[str, Any],
    boxes: NDArray[np.float64] | None = None,
    *,
    decoded_scale: tuple[float, float] = ...,
    min_visible: float = 0.0,
) -> tuple[NDArray[np.uint8], NDArray[np.float64], NDArray[np.bool_]]: ...
def lab_grey_tables() -> tuple[bytes, bytes]: ...

# --- sampling (rust/python/src/sampling.rs) ---------------------------------------------------
@final
class MultiSource:
    def __new__(
        cls,
        sizes: list[int],
        weights: list[float],
        num_samples: int | None,
        seed: int,
        replacement: bool,
        mode: str,
        rank: int,
        world_size: int,
        drop_last: bool,
    ) -> Self: ...
    def set_weights(self, step: int, weights: list[float]) -> None: ...
    def chunk(self, epoch: int, start: int, count: int) -> NDArray[np.int64]: ...
    def log(self) -> list[tuple[int, list[float]]]: ...
    def weights_at(self, step: int) -> list[float]: ...
    @property
    def local_len(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def offsets(self) -> list[int]: ...

def interleave_pattern(weights: list[float]) -> NDArray[np.int64]: ...
def interleave_slots(weights: list[float]) -> list[int]: ...
def shard_subset(
    indices: NDArray[np.int64],
    seed: int,
    epoch: int,
    shuffle: bool,
    rank: int,
    world_size: int,
    drop_last: bool,
) -> NDArray[np.int64]: ...

# --- curriculum (rust/python/src/curriculum.rs) -----------------------------------------------
def rrgcl_rates(
    class_difficulty: list[float], t: float, epochs: float, c: float | None = None
) -> NDArray[np.float64]: ...

@final
class RRGCL:
    def __new__(
        cls,
        sample_offsets: NDArray[np.int64],
        sample_classes: NDArray[np.int64],
        num_classes: int,
        difficulty: NDArray[np.float64],
        epochs: float,
        c: float | None = None,
    ) -> Self: ...
    def rates(self, t: float) -> NDArray[np.float64]: ...
    def counts(self, t: float) -> NDArray[np.uint64]: ...
    def epoch_indices(self, t: float) -> NDArray[np.int64]: ...
    def class_members(self, n: int) -> NDArray[np.uint64]: ...
    @property
    def raw_class_difficulty(self) -> NDArray[np.float64]: ...
    @property
    def class_difficulty(self) -> NDArray[np.float64]: ...
    @property
    def gamma(self) -> NDArray[np.float64]: ...
    @property
    def lambda0(self) -> NDArray[np.float64]: ...
    @property
    def class_sizes(self) -> NDArray[np.uint64]: ...
    @property
    def num_classes(self) -> int: ...
    @property
    def num_samples(self) -> int: ...
    @property
    def unlabeled(self) -> int | None: ...
    @property
    def c(self) -> float: ...
    @property
    def epochs(self) -> float: ...

def pacing_fraction(
    name: str, t: float, epochs: float, c0: float, p: float, buckets: int
) -> float: ...
def pacing_range(
    name: str, t: float, epochs: float, c0: float, p: float, buckets: int, n: int
) -> tuple[int, int]: ...
def bucket_stage(t: float, epochs: float, buckets: int) -> int: ...
def difficulty_order(difficulty: NDArray[np.float64]) -> NDArray[np.int64]: ...
def cure_weights(
    iou: list[float | None],
    text: list[float | None],
    alpha: float,
    min_weight: float | None = None,
) -> list[float]: ...

@final
class StageScheduler:
    def __new__(
        cls,
        num_domains: int,
        seed: int,
        easy_warmup_epochs: int,
        hard_transition_epoch: int,
        ramp_kappa: float,
        gamma: float,
        tau: float,
        gamma_h: float,
        epsilon_plat: float,
        plateau_patience: int,
        delta_rise: float,
        hard_step_up: float,
        hard_step_down: float,
        hard_budget_max: float,
        hard_budget_init: float,
        ema_rate: float,
        ema_init_easy: float,
        ema_init_medium: float,
        ema_init_global: float,
    ) -> Self: ...
    def assign(
        self, sample_ids: NDArray[np.int64], domains: NDArray[np.int64], epoch: int
    ) -> NDArray[np.uint8]: ...
    def update(
        self,
        epoch: int,
        easy: list[float | None],
        medium: list[float | None],
        global_loss: float | None,
    ) -> None: ...
    def ensure_domains(self, n: int) -> None: ...
    def gap(self, domain: int) -> float: ...
    def medium_probability(self, domain: int, epoch: int) -> float: ...
    def ramp(self, epoch: int) -> float: ...
    def median_gap(self) -> float: ...
    def plateau(self) -> bool: ...
    def loss_rising(self) -> bool: ...
    @property
    def num_domains(self) -> int: ...
    def get_state(self) -> _StageState: ...
    def set_state(self, state: _StageState) -> None: ...

class _StageState(TypedDict):
    """A stage scheduler's learning state (not a runtime class: a plain dict)."""

    epoch: int
    ema_easy: list[float]
    ema_medium: list[float]
    ema_global: float
    history: list[float]
    hard_budget: float

# --- storage (rust/python/src/storage.rs) ----------------------------------------------------
def is_remote(location: str) -> bool: ...
def read_bytes(location: str, max_bytes: int = ...) -> bytes: ...

# --- cache (rust/python/src/cache.rs) --------------------------------------------------------
def cache_build(
    dataset: Dataset,
    dir: str,
    threads: int,
    progress: Callable[[int, int], None] | None = None,
    staging: str | None = None,
) -> dict[str, Any]: ...

# --- difficulty (rust/python/src/difficulty.rs) -----------------------------------------------
def vns_gap_block_sums(
    block: NDArray[np.float32],
    scale: float,
    acc: NDArray[np.int64],
    row_start: int,
    col_start: int,
    col_from: int,
) -> None: ...

# --- manifest (rust/python/src/manifest.rs) -----------------------------------------------------
def validate_record(
    record: Mapping[str, Any],
    path: str | None = None,
    row: int | None = None,
    row_kind: str = "line",
) -> dict[str, Any]: ...
def read_manifest_jsonl(text: str, path: str | None = None) -> list[dict[str, Any]]: ...
def read_manifest_rows(
    rows: Sequence[Mapping[str, Any]], path: str | None = None, row_kind: str = "row"
) -> list[dict[str, Any]]: ...
def pack_manifest(
    manifest: str | Sequence[Mapping[str, Any]],
    path: str | None,
    row_kind: str,
    out: str | os.PathLike[str],
) -> int: ...
def read_manifest_packed(location: str) -> list[dict[str, Any]]: ...

# --- data (rust/python/src/data.rs) -------------------------------------------------------------

def dataset_config_defaults() -> dict[str, Any]:
    """The data set's options (``Dataset``'s ``config`` keys; ``ManifestDataset``'s keywords) and
    their defaults, a new dict each call. A ``config`` may leave any out; an unknown or ill-typed
    option is an ``InvalidArgumentError`` naming it."""

@final
class Manifest:
    """An opened, validated manifest (rows parsed into the core, or a packed file memory-mapped),
    shared by the data sets composed from it."""

    def __new__(
        cls,
        manifest: str | Sequence[Mapping[str, Any]],
        name: str | None,
        row_kind: str,
        root: str,
        allow_outside_root: bool = False,
    ) -> Self: ...
    @staticmethod
    def open_packed(location: str, root: str, allow_outside_root: bool = False) -> Manifest: ...
    def __len__(self) -> int: ...
    @property
    def name(self) -> str: ...
    def select(
        self,
        split: str | None = None,
        source: str | None = None,
        tasks: list[str] | None = None,
    ) -> NDArray[np.uint32]: ...

@final
class Dataset:
    """A manifest plus the image/augmentation/text settings; immutable, shared by workers."""

    def __new__(
        cls,
        manifest: str | Sequence[Mapping[str, Any]],
        name: str | None,
        row_kind: str,
        config: Mapping[str, Any],
    ) -> Self: ...
    @staticmethod
    def open_packed(location: str, config: Mapping[str, Any]) -> Dataset: ...
    @staticmethod
    def compose(
        parts: Sequence[tuple[Manifest, NDArray[np.uint32], str | None]],
        config: Mapping[str, Any],
    ) -> Dataset: ...
    def __len__(self) -> int: ...
    def column(self, name: str) -> list[Any]: ...
    def record(self, index: int) -> dict[str, Any]: ...
    def batch(
        self, indices: list[int], epoch: int, seed: int, stages: list[int] = ...
    ) -> dict[str, Any]: ...
    def with_cache(self, dir: str, fallback: bool = True, verify: bool = True) -> Dataset: ...
    @property
    def cache_dir(self) -> str | None: ...
    @property
    def cache_read_failures(self) -> tuple[int, str | None]: ...
    @property
    def max_boxes(self) -> int: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def augment(self) -> dict[str, Any]: ...

@final
class Stream:
    """Worker threads building batches of one epoch; closed (joined) on close() or collection."""

    def __new__(cls, dataset: Dataset, epoch: int, seed: int, threads: int) -> Self: ...
    def submit(self, id: int, indices: list[int], stages: list[int] = ...) -> None: ...
    def next(
        self, id: int | None = None, timeout: float = 0.0
    ) -> tuple[int, dict[str, Any]] | None: ...
    def pending(self) -> int: ...
    def cancel(self, ids: list[int]) -> int: ...
    @property
    def threads(self) -> int: ...
    def close(self) -> None: ...

def render_boxes(format: str, boxes: list[list[float]]) -> str: ...
def parse_boxes(format: str, text: str) -> list[list[float]]: ...
def box_mask(
    boxes: list[list[float]],
    grid: tuple[int, int],
    sigma: float,
    kernel: int | None,
    padding: str,
    cells: str,
    empty: str,
) -> NDArray[np.float32]: ...
