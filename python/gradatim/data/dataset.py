"""``ManifestDataset``: a manifest (docs/manifest.md) as a map-style torch ``Dataset``.

With :class:`gradatim.DataLoader` it takes the fast path: Rust threads read, decode, augment,
render the box-aware text and write whole batches into one buffer. With any other loader (or
``dataset[i]``) each item is loaded by the same Rust code, one sample at a time.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray

from gradatim import _core
from gradatim.curriculum.stages import DOMAIN_RULES, infer_modality
from gradatim.data.augment import Augment
from gradatim.errors import InvalidArgumentError
from gradatim.manifest.common import is_packed, jsonl_text, manifest_root, parquet_rows

if TYPE_CHECKING:
    import torch

try:  # torch is optional: without it a dataset still builds caches (gradatim cache build)
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # pragma: no cover - exercised only where torch is absent

    class _DatasetBase:  # type: ignore[no-redef]
        """Stand-in for ``torch.utils.data.Dataset`` when torch is not installed."""


__all__ = ["ManifestDataset", "Selection", "Sources", "batch_fields", "batch_to_torch"]

StageArg = Literal["easy", "medium", "hard"] | Any | None
_STAGE_CODES: dict[str, int] = dict(_core.STAGE_CODES)  # defined once, in the core

#: The data set's options and their defaults, defined once, in the core: :class:`ManifestDataset`'s
#: keywords of these names take their defaults from here and pass through to the core, which
#: reads and checks them (an unknown or ill-typed option is an error naming it).
_DEFAULTS: dict[str, Any] = _core.dataset_config_defaults()


def _pair(v: Sequence[int]) -> tuple[int, int]:
    """A ``(width, height)`` pair from the core's ``[w, h]``."""
    return (v[0], v[1])


def _manifest_arg(
    manifest: str | os.PathLike[str] | Iterable[Mapping[str, Any]],
) -> tuple[str | list[Any], str | None, str]:
    """The manifest as the core takes it, its name and what its rows are: a ``.jsonl`` file's
    text (lines), a ``.parquet`` file's rows read by pyarrow (rows, 1-based), or in-memory
    records (records, 1-based)."""
    if isinstance(manifest, (str, os.PathLike)):
        name = os.fspath(manifest)
        if name.lower().endswith((".parquet", ".pq")):
            return parquet_rows(name), name, "row"
        return jsonl_text(name), name, "line"
    return list(manifest), None, "record"


#: The manifests this process holds open, shared by every :class:`Sources` that names them while
#: any of them is alive: keyed by the file's path, identity and modification time and the root
#: rules, so a changed file is read again.
_OPENED: weakref.WeakValueDictionary[tuple[Any, ...], _core.Manifest] = (
    weakref.WeakValueDictionary()
)


def _open_manifest(location: str, root: str, allow_outside_root: bool) -> _core.Manifest:
    """The core's opened manifest at ``location`` (validated once: JSON lines and Parquet rows
    parsed into the core, a packed manifest memory-mapped), shared while it is alive."""
    key: tuple[Any, ...] | None = None
    if not _core.is_remote(location):
        st = os.stat(location[len("file://") :] if location.startswith("file://") else location)
        key = (os.path.abspath(location), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        key += (root, allow_outside_root)
        opened = _OPENED.get(key)
        if opened is not None:
            return opened
    if is_packed(location):
        m = _core.Manifest.open_packed(location, root, allow_outside_root)
    else:
        rows, name, row_kind = _manifest_arg(location)
        m = _core.Manifest(rows, name, row_kind, root, allow_outside_root)
    if key is not None:
        _OPENED[key] = m
    return m


class Selection(NamedTuple):
    """Records of one manifest that form one source of a :class:`Sources`."""

    manifest: str
    """The manifest's path or URL (``.jsonl``, ``.parquet`` or packed ``.arrow``)."""
    name: str | None = None
    """The source name its records take (``None``: their own ``source``)."""
    split: str | None = None
    """Only records of this split (``None``: every split)."""
    select: str | None = None
    """Only records whose ``source`` is this (``None``: any)."""
    tasks: tuple[str, ...] | None = None
    """Only records of these tasks (``None``: any)."""


class Sources:
    """Several sources, each chosen records of a manifest, as one data set (pass it as
    :class:`ManifestDataset`'s ``manifest``): every manifest is opened once in the process (its
    records parsed or memory-mapped in the core, shared by every source and data set that names
    it), each source is an index array into it, selected in the core; no per-record Python
    object is made. Relative image paths resolve under each manifest's own folder.

    Args:
        selections: the sources, in order (their records one source after the other).
        allow_outside_root: allow images outside each manifest's folder (see
            :class:`ManifestDataset`).
        empty: ``"raise"``: a source that selects no record is an error naming it; ``"drop"``:
            it is left out.
    """

    def __init__(
        self,
        selections: Iterable[Selection],
        *,
        allow_outside_root: bool = False,
        empty: Literal["raise", "drop"] = "raise",
    ) -> None:
        self.selections = tuple(Selection(*s) for s in selections)
        if not self.selections:
            raise InvalidArgumentError("sources: expected at least one selection")
        self.allow_outside_root = bool(allow_outside_root)
        self.empty = empty
        self._opened: list[tuple[_core.Manifest, NDArray[np.uint32]]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """What a copy in another process reopens itself from: the selections, never the core's
        manifests."""
        return {k: v for k, v in self.__dict__.items() if k != "_opened"} | {"_opened": None}

    def selected(self) -> list[tuple[_core.Manifest, NDArray[np.uint32]]]:
        """Per selection, its opened manifest and the indices (uint32) of the records it
        selects: each manifest opened once, the indices selected in the core, on first use."""
        if self._opened is None:
            opened = []
            for sel in self.selections:
                location = os.fspath(sel.manifest)
                m = _open_manifest(location, manifest_root(location), self.allow_outside_root)
                tasks = None if sel.tasks is None else list(sel.tasks)
                opened.append((m, m.select(sel.split, sel.select, tasks)))
            self._opened = opened
        return self._opened

    def parts(self) -> list[tuple[_core.Manifest, NDArray[np.uint32], str | None]]:
        """``(manifest, indices, name)`` per source that selects records, as the core composes
        them; a source that selects none is an error naming it (``empty="raise"``) or left out."""
        parts = []
        for sel, (m, idx) in zip(self.selections, self.selected(), strict=True):
            if len(idx) == 0:
                if self.empty == "drop":
                    continue
                raise InvalidArgumentError(f"source {sel.name!r}: {self._what(sel)}")
            parts.append((m, idx, sel.name))
        if not parts:
            raise InvalidArgumentError("sources: no source selects any record")
        return parts

    @staticmethod
    def _what(sel: Selection) -> str:
        rules = [f"split {sel.split!r}"]
        if sel.select is not None:
            rules.append(f"source {sel.select!r}")
        if sel.tasks is not None:
            rules.append(f"a task in {list(sel.tasks)}")
        return f"{sel.manifest} has no records of {' and '.join(rules)}"


def _open(
    manifest: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Sources,
    config: Mapping[str, Any],
    name: str | None = None,
) -> tuple[_core.Dataset, str | None, list[Any] | None]:
    """The core's data set of ``manifest`` (a packed manifest is memory-mapped by the core;
    :class:`Sources` composed over their opened manifests), the name its errors use (``name``,
    else the path as given), and the in-memory records when that is what it was made from."""
    if isinstance(manifest, Sources):
        return _core.Dataset.compose(manifest.parts(), config), None, None
    if isinstance(manifest, (str, os.PathLike)) and is_packed(manifest):
        location = os.fspath(manifest)
        return _core.Dataset.open_packed(location, config), location, None
    rows, default_name, row_kind = _manifest_arg(manifest)
    records = rows if isinstance(rows, list) and row_kind == "record" else None
    name = name or default_name
    return _core.Dataset(rows, name, row_kind, config), name, records


def _absolute(location: str) -> str:
    """A manifest's location that another process resolves the same way: an absolute path, or
    the URL as given."""
    if _core.is_remote(location) or location.startswith("file://"):
        return location
    return os.path.abspath(location)


class ManifestDataset(_DatasetBase):  # type: ignore[type-arg]
    """Image-text samples of a manifest, decoded and augmented in Rust.

    Args:
        manifest: a ``.jsonl`` or ``.parquet`` path or URL (``s3://``, ``gs://``, ``az://``,
            ``http(s)://``, ``file://``; see docs/storage.md), an iterable of record dicts, or
            :class:`Sources` (chosen records of several manifests, each opened once and shared;
            ``root`` does not apply: each manifest resolves under its own folder).
        root: folder (or object store URL) that relative image paths are resolved against
            (default: the manifest's folder, or the current directory for in-memory records).
            A record's ``image`` may itself be a URL.
        image_size: output ``(width, height)``.
        augment: an :class:`Augment` (or its dict), ``None`` for no augmentation.
        box_format: ``"cure"`` | ``"maira2"`` | ``"loc"`` | ``"xyxy"``, for boxes in target text.
        channels: 1 (grey) or 3 (RGB; grey images are replicated).
        output: ``"float32"`` (``(v / max - mean) / std``) or ``"uint8"``.
        mean, std: per-channel normalisation on the [0, 1] scale (default 0 and 1).
        on_error: ``"raise"`` (the error names the file and manifest line) or ``"skip"`` (the
            sample is replaced by a deterministic other one and counted in ``loader.stats()``).
        allow_outside_root: allow absolute image paths and paths climbing out of ``root``.
        templates: the prompt/target templates: a preset name (``"cure"``, the default: CURE's
            public code; ``"gradatim"``: gradatim's earlier wording) or a mapping of overrides
            (optionally with a ``"preset"`` key; see ``docs/loader.md``).
        seed: augmentation seed (combined with the loader's seed and the epoch).
        stages: MedCLM stage per sample: ``None`` (no stage curriculum), ``"easy"``,
            ``"medium"``, ``"hard"``, or a :class:`gradatim.curriculum.StageScheduler`. A
            Hard-stage draw of a record with a ``hard_id`` reads the record that id names (its
            image, prompt and answer: MedCLM's released ``image_path3``); without one, the
            record's own image (gradatim's earlier and only choice).
        domains: how a scheduler's samples are grouped into its domains: ``"source"`` (the
            record's ``source``: gradatim's grouping), ``"lesion_modality"`` (MedCLM's released
            ``f"{lesion_class}_{modality}"``: the first box's phrase and the modality of the
            image path, :func:`gradatim.curriculum.stages.medclm_domain`), or one name per
            record.
        modality: with ``domains="lesion_modality"``, every record's modality (``None``: inferred
            from its image path by the released rule).
        mask_grid, mask_sigma, mask_kernel, mask_padding, mask_cells, mask_empty: the
            Medium-stage ``box_mask``: patch grid ``(w, h)``, Gaussian sigma in cells, kernel
            taps (odd; ``None``: ``2 ceil(3 sigma) + 1``), ``"reflect"`` or ``"zero"`` padding;
            cells ``"truncate"`` (MedCLM's released rule: ``floor(x1 n) ..< trunc(x2 n)``, so a
            box inside one cell may mark none), ``"whole"`` (gradatim's: every touched cell) or
            ``"fraction"`` (covered fraction); a sample without a box gets ``"image"`` (the whole
            image, as released) or ``"zeros"`` (gradatim's: skipped by the loss). Defaults:
            MedCLM's released code (24 x 24, 9 taps, sigma 3, reflect, truncate, image).
        overlay_thickness: the Easy-stage outline width.
        max_pixels, max_bytes: per image, the most pixels a header may declare and the most bytes
            its decoded samples may take (defaults 2^28 and 1 GiB); larger images are refused
            from their header (``ImageTooLargeError``, handled by ``on_error``) in bounded memory.
        cache: a pre-decoded cache (``gradatim cache build``, docs/cache.md): a folder, read from
            its memory map, or an object store URL, read by ranged requests; pixels come from it
            instead of being decoded, giving the same batches. A cache built from another
            manifest or with another decode size / channels is refused, saying what differs; a
            damaged index is refused naming the entry; a source file changed since the build
            raises naming it.
        cache_fallback: a record the cache does not hold, or whose cached pixels cannot be read
            (a short or missing shard, an unreachable store) or fail their checksum, is decoded
            (``True``; counted in :meth:`cache_read_failures`) or raises.
    """

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Iterable[Mapping[str, Any]] | Sources,
        *,
        root: str | os.PathLike[str] | None = _DEFAULTS["root"],
        image_size: tuple[int, int] = _pair(_DEFAULTS["image_size"]),
        augment: Augment | Mapping[str, Any] | None = _DEFAULTS["augment"],
        box_format: Literal["cure", "maira2", "loc", "xyxy"] = _DEFAULTS["box_format"],
        channels: int = _DEFAULTS["channels"],
        output: Literal["float32", "uint8"] = _DEFAULTS["output"],
        mean: Sequence[float] | float | None = _DEFAULTS["mean"],
        std: Sequence[float] | float | None = _DEFAULTS["std"],
        on_error: Literal["raise", "skip"] = _DEFAULTS["on_error"],
        allow_outside_root: bool = _DEFAULTS["allow_outside_root"],
        templates: str | Mapping[str, str] | None = _DEFAULTS["templates"],
        seed: int = 0,
        stages: StageArg = None,
        domains: Literal["source", "lesion_modality"] | Sequence[str] = "source",
        modality: str | None = None,
        mask_grid: tuple[int, int] = _pair(_DEFAULTS["mask_grid"]),
        mask_sigma: float = _DEFAULTS["mask_sigma"],
        mask_kernel: int | None = _DEFAULTS["mask_kernel"],
        mask_padding: Literal["reflect", "zero"] = _DEFAULTS["mask_padding"],
        mask_cells: Literal["truncate", "whole", "fraction"] = _DEFAULTS["mask_cells"],
        mask_empty: Literal["image", "zeros"] = _DEFAULTS["mask_empty"],
        overlay_thickness: int = _DEFAULTS["overlay_thickness"],
        max_pixels: int = _DEFAULTS["max_pixels"],
        max_bytes: int = _DEFAULTS["max_bytes"],
        cache: str | os.PathLike[str] | None = None,
        cache_fallback: bool = True,
    ) -> None:
        # the core's options pass through by name: the core reads, defaults and checks them
        given = locals()
        config: dict[str, Any] = {name: given[name] for name in _DEFAULTS}
        if root is None and isinstance(manifest, (str, os.PathLike)):
            root = manifest_root(manifest)
        config["root"] = os.fspath(root) if root is not None else os.getcwd()
        if augment is None:
            augment = Augment.none()
        elif isinstance(augment, Mapping):
            augment = Augment.from_dict(dict(augment))
        config["augment"] = augment.to_dict()
        self.augment: Augment = augment
        self.seed = int(seed)
        self.stages = stages
        self.epoch = 0
        self._core, name, records = _open(manifest, config)
        read = self._core.config  # as the core read them
        self.image_size: tuple[int, int] = _pair(read["image_size"])
        self.channels: int = read["channels"]
        self.output: str = read["output"]
        self.box_format: str = read["box_format"]
        self._cache = (os.fspath(cache), bool(cache_fallback)) if cache is not None else None
        if self._cache is not None:
            self._core = self._core.with_cache(*self._cache)
        # what a copy in another process rebuilds itself from (spawn / forkserver workers): the
        # manifest's path (or its records, or the sources' selections) and the configuration,
        # never pixels or a Rust object
        self._source: tuple[str | None, str | None, list[Any] | None] = (
            (_absolute(os.fspath(manifest)), name, None)
            if isinstance(manifest, (str, os.PathLike))
            else (None, None, records)
        )
        self._sources = manifest if isinstance(manifest, Sources) else None
        self._config = config
        if isinstance(stages, str) and stages not in _STAGE_CODES:
            raise InvalidArgumentError(
                f"stages must be easy, medium, hard or a scheduler, not {stages!r}"
            )
        if isinstance(domains, str):
            if domains not in DOMAIN_RULES:
                raise InvalidArgumentError(
                    f"domains must be one of {', '.join(DOMAIN_RULES)} or one name per record, "
                    f"not {domains!r}"
                )
            self.domains: str | list[str] = domains
        else:
            self.domains = [str(d) for d in domains]
            if len(self.domains) != len(self):
                raise InvalidArgumentError(
                    f"domains: {len(self.domains)} names for {len(self)} records"
                )
        self.modality = modality

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_core", "_domain_column")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        path, name, records = state["_source"]
        sources = state.get("_sources")
        where = sources if sources is not None else path if path is not None else records
        self._core, _, _ = _open(where, state["_config"], name)
        if state.get("_cache") is not None:
            self._core = self._core.with_cache(*state["_cache"])

    def __len__(self) -> int:
        return len(self._core)

    def record(self, index: int) -> dict[str, Any]:
        """The manifest record at ``index`` (image path resolved)."""
        return self._core.record(int(index))

    def column(self, name: str) -> list[Any]:
        """A manifest column: ``id``, ``image``, ``source``, ``task``, ``split``, ``text``,
        ``line``, ``hard_id``, ``prompt`` (``None`` where absent), ``phrase`` or ``anatomy`` (the
        first box's; ``None`` without one)."""
        return self._core.column(name)

    def cache_read_failures(self) -> tuple[int, str | None]:
        """How many cached reads failed and were decoded instead (``cache_fallback=True``), and
        the first failure's message; ``(0, None)`` without a cache. Counted over this data set's
        life in this process (each worker process counts its own)."""
        return self._core.cache_read_failures

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by ``dataset[i]`` (the loader passes its own epoch to its workers)."""
        self.epoch = int(epoch)

    def stage_codes(self, indices: NDArray[np.int64], epoch: int) -> list[int]:
        """MedCLM stage code per sample (-1 without a stage curriculum)."""
        if self.stages is None:
            return []
        if isinstance(self.stages, str):
            return [_STAGE_CODES[self.stages]] * len(indices)
        scheduler = self.stages
        known = getattr(scheduler, "domains", [])
        picked = None
        if known:
            picked = self.sample_domains(indices)
            what = "source" if self.domains == "source" else "domain"
            for i, d in zip(np.asarray(indices).tolist(), picked, strict=True):
                if d not in known:
                    raise InvalidArgumentError(
                        f"stages: sample {i} (id {self.record(i)['id']!r}) has {what} {d!r}, "
                        f"which is not one of the stage scheduler's domains {list(known)}"
                    )
        return scheduler.assign(indices, epoch, picked).astype(np.int8).tolist()

    def sample_domains(self, indices: Sequence[int] | NDArray[np.int64]) -> list[str]:
        """The stage-scheduler domain of each sample (see ``domains``)."""
        col = self.domain_column()
        return [col[int(i)] for i in np.asarray(indices).reshape(-1).tolist()]

    def domain_column(self) -> list[str]:
        """Every record's stage-scheduler domain (see ``domains``). A record whose ``hard_id``
        names a record of this data set in another domain is an error: MedCLM's Hard stage
        reads another image of the *same* domain."""
        if not hasattr(self, "_domain_column"):
            if self.domains == "source":
                col = [str(s) for s in self.column("source")]
            elif self.domains == "lesion_modality":
                fixed = self.modality
                col = [
                    f"{phrase or 'none'}_{fixed if fixed is not None else infer_modality(image)}"
                    for phrase, image in zip(
                        self.column("phrase"), self.column("image"), strict=True
                    )
                ]
            else:
                col = list(self.domains)
            self._check_partners(col)
            self._domain_column = col
        return self._domain_column

    def _check_partners(self, domains: list[str]) -> None:
        partners = self.column("hard_id")
        if not any(p is not None for p in partners):
            return
        at = {rid: k for k, rid in enumerate(self.column("id"))}
        for k, p in enumerate(partners):
            j = at.get(p) if p is not None else None
            if j is not None and domains[j] != domains[k]:
                raise InvalidArgumentError(
                    f"record {k} (id {self.record(k)['id']!r}, domain {domains[k]!r}): its "
                    f"hard_id {p!r} is in domain {domains[j]!r}; MedCLM's Hard stage reads "
                    f"another image of the same domain"
                )

    def load_batch(
        self, indices: Sequence[int], *, epoch: int | None = None, seed: int | None = None
    ) -> dict[str, Any]:
        """Build one batch synchronously (Rust, GIL released) as a dict of tensors and lists."""
        idx = np.asarray(indices, dtype=np.int64)
        e = self.epoch if epoch is None else int(epoch)
        s = self.seed if seed is None else int(seed)
        return batch_to_torch(self._core.batch(idx.tolist(), e, s, self.stage_codes(idx, e)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One sample (tensors without the batch dimension), for torch's own DataLoader."""
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The samples of one batch, built by one Rust call (GIL released): what torch's own
        ``DataLoader`` (and loaders rebuilt by ``accelerate`` or Lightning) fetch with, before
        ``default_collate`` stacks them. Each sample's tensors are views into the batch."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = (idx < -len(self)) | (idx >= len(self))
        if bad.any():
            raise IndexError(f"index {idx[bad][0]} out of range for {len(self)} samples")
        n = len(idx)
        keep = batch_fields(self.load_batch(idx % len(self)))
        return [{k: v[j] for k, v in keep.items()} for j in range(n)]


#: per-batch bookkeeping in the core's batches (``load_batch``), which ``DataLoader.stats()``
#: sums up: not fields of the samples
BOOKKEEPING = ("skipped", "work_ns")


def batch_fields(batch: dict[str, Any]) -> dict[str, Any]:
    """The fields of a built batch as the loaders deliver them (gradatim's fast path, and torch's
    loader through :meth:`ManifestDataset.__getitems__`): without :data:`BOOKKEEPING` and without
    the fields this batch does not have (``None``: ``box_mask`` when no sample is Medium)."""
    return {k: v for k, v in batch.items() if k not in BOOKKEEPING and v is not None}


_TENSORS = (
    "pixel_values",
    "boxes",
    "box_count",
    "target_boxes",
    "target_box_count",
    "index",
    "stage",
    "box_mask",
)


def batch_to_torch(
    batch: dict[str, Any], pin: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> dict[str, Any]:
    """Turn the core's dict of NumPy arrays into tensors without copying (``torch.from_numpy``)."""
    import torch

    out = dict(batch)
    for key in _TENSORS:
        arr = out.get(key)
        if arr is not None:
            t = torch.from_numpy(arr)
            out[key] = pin(t) if pin is not None else t
    return out
