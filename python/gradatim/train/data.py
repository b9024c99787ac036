"""The training data of a run: the records of each named source (a manifest, filtered by split
and source), selected in the core as index arrays over each manifest opened once (JSON lines
parsed once into the core, a packed manifest memory-mapped), and a sampler weighted by source
*name* (records of a source may lie anywhere in the data set). Start-up makes no Python object
per record: what it needs per record (texts for a tiny model's tokenizer, tasks, categories,
ids) it reads as columns from the core."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from gradatim.curriculum.stages import infer_modality
from gradatim.data import Augment, DataLoader, ManifestDataset
from gradatim.data.dataset import Selection, Sources
from gradatim.sampling import CurriculumSampler, MultiSourceSampler, NestedInterleaveSampler
from gradatim.train.config import ConfigError, TrainConfig
from gradatim.train.models import ModelBundle

__all__ = [
    "SourceRecords",
    "model_dataset",
    "source_records",
    "sampler_sources",
    "make_dataset",
    "build_loader",
    "aligned_difficulty",
    "record_categories",
    "run_categories",
    "eval_augment",
    "source_ends",
    "with_source_ends",
]

#: The templates' end of a grounded report (CURE's code ends it with a period).
GROUNDED_END = "."


class SourceRecords(Sequence[dict[str, Any]]):
    """The records of a run's sources, in source order, each with ``source`` set to the source's
    name and ``image`` resolved under its manifest's folder: index arrays over the core's opened
    manifests (:class:`gradatim.data.Sources`), read as columns (:meth:`column`); a record is
    built as a dict only when one is asked for (``records[i]``)."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.view = ManifestDataset(sources, image_size=(8, 8))

    def __len__(self) -> int:
        return len(self.view)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        k = int(index) + (len(self) if int(index) < 0 else 0)
        if not 0 <= k < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        record = self.view.record(k)
        record.pop("line", None)
        return record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[k] for k in range(len(self)))

    def column(self, name: str) -> list[Any]:
        """One field of every record, from the core (:meth:`ManifestDataset.column`)."""
        return self.view.column(name)


def source_records(
    cfg: TrainConfig,
    split: str | None = None,
    *,
    names: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
) -> SourceRecords:
    """The records of every source, in source order, each with ``source`` set to the source's
    name and ``image`` resolved; ``split`` overrides the sources' own (validation). Each manifest
    is opened (and validated whole: a bad record is reported with its file and line) once, and
    shared by every source that reads it; a source without records of its split is an error.
    ``names`` keeps only those sources, ``tasks`` only records of those tasks (sources left
    without records are dropped)."""
    selections = [
        Selection(
            manifest=os.fspath(s.manifest),
            name=s.name,
            split=split if split is not None else s.split,
            select=s.select,
        )
        for s in cfg.data.sources
    ]
    every = Sources(selections)
    for i, (sel, (m, idx)) in enumerate(zip(selections, every.selected(), strict=True)):
        if len(idx) == 0:
            in_split = len(m.select(sel.split)) if sel.select is not None else 0
            raise _no_records(cfg, i, Path(sel.manifest), sel.split, split is not None, in_split)
    if names is None and tasks is None:
        return SourceRecords(every)
    wanted = tuple(tasks) if tasks is not None else None
    kept = Sources(
        [sel._replace(tasks=wanted) for sel in selections if names is None or sel.name in names],
        empty="drop",
    )
    kept.selected()  # while `every` holds the opened manifests: shared, not reopened
    if not any(len(idx) for _, idx in kept.selected()):
        chosen = [sel.name for sel in kept.selections]
        wanted_tasks = list(tasks or [])
        raise ValueError(
            f"no record of split {split!r} in the sources {chosen} has a task in {wanted_tasks}"
        )
    return SourceRecords(kept)


def sampler_sources(sampler: Any) -> list[str]:
    """The source names of a sampler built by :func:`build_loader`, in its order (its top-level
    nodes): what the curriculum's weights are keyed by, read from the sampler itself."""
    hierarchy = getattr(sampler, "hierarchy", None)
    if hierarchy:
        return list(hierarchy)
    leaves = getattr(sampler, "leaves", None)
    if leaves is not None:
        return list(dict.fromkeys(str(leaf[0]) for leaf in leaves))
    names = getattr(sampler, "source_names", None)
    if names is None:
        raise ValueError(f"{type(sampler).__name__} does not name its sources")
    return list(names)


def _no_records(
    cfg: TrainConfig, i: int, path: Path, split: str | None, override: bool, in_split: int
) -> ConfigError:
    """One line naming the key that selected nothing: the split (the source's, or
    ``[curriculum].val_split`` for validation) or, when the split has records, ``select``."""
    name = cfg.path.name if cfg.path is not None else "<config>"
    s = cfg.data.sources[i]
    where = f"[[data.sources]][{i}]"
    if in_split == 0:
        key = "[curriculum].val_split" if override else f"{where}.split"
        return ConfigError(f"{name}: {key}: {path} has no records of split {split!r}")
    records = f"records of split {split!r}" if split is not None else "records"
    return ConfigError(
        f"{name}: {where}.select: none of the {in_split} {records} in {path} "
        f"has source {s.select!r}"
    )


def make_dataset(
    cfg: TrainConfig,
    bundle: ModelBundle,
    records: SourceRecords | list[dict[str, Any]],
    augment: Augment | None,
    stages: Any = None,
    domains: list[str] | None = None,
) -> ManifestDataset:
    """A dataset over ``records`` (absolute image paths, kept under their common folder) at the
    model's image size, mean and std, 3 channels; ``domains``: each record's stage-scheduler
    domain (default: its source); the Medium mask's cell and no-box rules from
    ``[curriculum]``."""
    c = cfg.curriculum
    return model_dataset(
        bundle, records, augment, cfg.data.box_format, cfg.train.seed, stages, domains,
        mask_cells=c.mask_cells, mask_empty=c.mask_empty,
    )  # fmt: skip


def model_dataset(
    bundle: ModelBundle,
    records: SourceRecords | list[dict[str, Any]],
    augment: Augment | None,
    box_format: str,
    seed: int,
    stages: Any = None,
    domains: list[str] | None = None,
    *,
    mask_cells: str = "truncate",
    mask_empty: str = "image",
) -> ManifestDataset:
    """:func:`make_dataset` without a configuration. ``records``: the run's
    :class:`SourceRecords` (the data set shares their opened manifests), or record dicts with
    absolute image paths."""
    manifest: Sources | list[dict[str, Any]]
    root: str | None = None
    if isinstance(records, SourceRecords):
        manifest = records.sources
    else:
        root = os.path.commonpath([str(Path(r["image"]).parent) for r in records])
        manifest = [{**r, "image": os.path.relpath(r["image"], root)} for r in records]
    return ManifestDataset(
        manifest,
        root=root,
        image_size=bundle.image_size,
        channels=3,
        mean=bundle.mean,
        std=bundle.std,
        augment=augment,
        box_format=box_format,  # type: ignore[arg-type]
        seed=seed,
        stages=stages,
        domains="source" if domains is None else domains,
        mask_grid=bundle.patch_grid,
        mask_cells=mask_cells,  # type: ignore[arg-type]
        mask_empty=mask_empty,  # type: ignore[arg-type]
    )


def _category(record: dict[str, Any], how: str) -> str:
    if how == "task":
        return str(record["task"])
    key = how
    if how == "cure":  # CURE's category per task: location, phrase (label group), or none
        task = record["task"]
        if task not in ("anatomy_grounded_report", "phrase_grounding"):
            return "none"
        key = "anatomy" if task == "anatomy_grounded_report" else "phrase"
    value = str((record.get("boxes") or [{}])[0].get(key) or "none")
    return value.replace("/", "|")  # "/" separates a category from its sub-category


def record_categories(
    records: SourceRecords | Sequence[dict[str, Any]],
    how: str,
    per_source: dict[str, str] | None = None,
) -> list[str]:
    """CURE's category of each record: its ``task`` (prompt type), the phrase / anatomy of its
    first box (``"none"`` without one), or ``"cure"``: the anatomy of an anatomy-grounded record,
    the phrase of a phrase-grounding one, ``"none"`` otherwise (CURE's locations, label groups and
    findings; its grounded reports have none). ``"a/b"`` gives ``"<a>/<b>"``: category and
    sub-category. ``per_source`` overrides ``how`` by source name. Converters that write one
    finding or one region per record (MS-CXR, Chest ImaGenome) give CURE's categories exactly.
    :class:`SourceRecords` are read as columns (no record is built)."""
    if isinstance(records, SourceRecords):
        records = _category_fields(records)
    out = []
    for r in records:
        rule = (per_source or {}).get(r.get("source", "")) or how
        out.append("/".join(_category(r, part) for part in rule.split("/")))
    return out


def _category_fields(records: SourceRecords) -> list[dict[str, Any]]:
    """What :func:`_category` reads of each record (task, source, the first box's phrase and
    anatomy), from the core's columns."""
    columns = [records.column(c) for c in ("task", "source", "phrase", "anatomy")]
    return [
        {"task": t, "source": s, "boxes": [{"phrase": p, "anatomy": a}] if p is not None else []}
        for t, s, p, a in zip(*columns, strict=True)
    ]


def run_categories(
    cfg: TrainConfig, records: SourceRecords | Sequence[dict[str, Any]]
) -> list[str] | None:
    """The configured categories of ``records`` (``[curriculum].categories``, overridden per
    source by ``[[data.sources]].categories``), or ``None`` without categories."""
    if cfg.curriculum.categories is None:
        return None
    per_source = {s.name: s.categories for s in cfg.data.sources if s.categories is not None}
    return record_categories(records, cfg.curriculum.categories, per_source)


def eval_augment(cfg: TrainConfig) -> Augment | None:
    """The evaluation pipeline of the run's training pipeline: CURE's (CLAHE clip 3.0, nothing
    random) after CURE's training augmentation, CLAHE clip 3.0 in the faster pipeline after
    ``fast_train``, none after none."""
    if cfg.data.augment == "fast_train":  # the same recipe in the faster pipeline
        return Augment(clahe={"clip_limit": 3.0, "tile_grid": (8, 8), "p": 1.0}, affine=None)
    return Augment.cure_eval() if cfg.data.augment == "cure_train" else None


def source_ends(cfg: TrainConfig) -> dict[str, str]:
    """``{source: end}`` for the sources whose grounded reports end otherwise than the
    templates' ``"."`` (``[[data.sources]].grounded_end``; PadChest-GR's ``""`` in CURE)."""
    return {
        s.name: s.grounded_end
        for s in cfg.data.sources
        if s.grounded_end is not None and s.grounded_end != GROUNDED_END
    }


def with_source_ends(batch: dict[str, Any], ends: dict[str, str]) -> dict[str, Any]:
    """``batch`` with each grounded report of a source in ``ends`` ending with that source's end
    instead of the templates' (target spans clipped to the new length)."""
    if not ends:
        return batch
    targets = list(batch["target"])
    parts = batch.get("target_parts")
    parts = None if parts is None else [list(p) for p in parts]
    for k, (source, task) in enumerate(zip(batch["source"], batch["task"], strict=True)):
        end = ends.get(source)
        text = targets[k]
        if end is None or task != "grounded_report" or not text.endswith(GROUNDED_END):
            continue
        targets[k] = text[: len(text) - len(GROUNDED_END)] + end
        if parts is not None:
            n = len(targets[k])
            parts[k] = [(role, min(a, n), min(b, n)) for role, a, b in parts[k]]
    out = dict(batch)
    out["target"] = targets
    if parts is not None:
        out["target_parts"] = parts
    return out


def build_loader(
    cfg: TrainConfig,
    bundle: ModelBundle,
    records: SourceRecords | list[dict[str, Any]],
    *,
    rank: int = 0,
    world_size: int = 1,
    phase: int = 2,
) -> tuple[DataLoader, MultiSourceSampler | CurriculumSampler | NestedInterleaveSampler]:
    """The fast-path loader over ``records`` at the model's image size, mean and std, sharded by
    rank. Sources are weighted by name wherever their records lie (``from_dataset``); with
    ``rrgcl`` alone the sampler is RRGCL's epoch subsets, with ``cure+rrgcl`` both in one sampler,
    with CURE ``categories`` two (or three) levels. ``[data] draw = "interleave"`` reads CURE's
    own order (:class:`NestedInterleaveSampler`; with RRGCL's subsets the interleave of
    ``MultiSourceSampler``). ``phase=1``: CURE's first phase, the records of
    ``[curriculum].phase1_tasks`` only (with the configured draw and categories)."""
    c = cfg.curriculum
    presets = {"cure_train": Augment.cure_train, "fast_train": Augment.fast_train}
    augment = presets[cfg.data.augment]() if cfg.data.augment in presets else None
    stages: Any = None
    domains = None
    if c.kind == "medclm" and c.stage is not None:
        stages = c.stage  # one fixed stage (MedCLM's ablations: Easy only, Medium only)
    elif c.kind == "medclm":
        from gradatim.curriculum import StageScheduler

        # the scheduler's domains: the sources (gradatim's grouping), or MedCLM's released
        # lesion_class + "_" + modality, from each record as its manifest gives it (absolute
        # image path, as the released JSON's image_path)
        domains = _domains(records, c.domains, c.modality)
        names = [s.name for s in cfg.data.sources] if c.domains == "source" else domains
        stages = StageScheduler(list(dict.fromkeys(names)), seed=cfg.train.seed)
    ds = make_dataset(cfg, bundle, records, augment, stages, domains)
    shard = {"seed": cfg.train.seed, "rank": rank, "world_size": world_size}
    schedule = None
    if "rrgcl" in c.kind:
        from gradatim.curriculum import RRGCLScheduler

        classes, dif = aligned_difficulty(str(c.difficulty), records)
        schedule = RRGCLScheduler(classes, dif, c.epochs)
    sampler: MultiSourceSampler | CurriculumSampler | NestedInterleaveSampler
    cats = run_categories(cfg, records)
    keep = None
    weights = {s.name: s.weight for s in cfg.data.sources}
    if phase == 1:
        tasks, sources = _column(records, "task"), _column(records, "source")
        keep = np.asarray([t in c.phase1_tasks for t in tasks], dtype=bool)
        if not keep.any():
            raise ValueError(f"phase 1: no training record has a task in {c.phase1_tasks}")
        kept = {s for s, k in zip(sources, keep.tolist(), strict=True) if k}
        weights = {n: w for n, w in weights.items() if n in kept}
        schedule = None  # RRGCL's subsets are the multi-task phase's
    if c.kind == "rrgcl":
        sampler = CurriculumSampler(schedule, **shard)  # type: ignore[arg-type]
    elif cfg.data.draw == "interleave" and schedule is None:
        sampler = NestedInterleaveSampler.from_dataset(
            ds, weights, categories=cats, keep=keep, **shard
        )
    else:
        sampler = MultiSourceSampler.from_dataset(
            ds, weights, categories=cats, keep=keep, schedule=schedule, mode=cfg.data.draw,
            **shard,
        )  # fmt: skip
    loader = DataLoader(
        ds,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        prefetch_factor=cfg.train.prefetch_factor if cfg.train.num_workers > 0 else None,
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    return loader, sampler


def _column(records: SourceRecords | Sequence[dict[str, Any]], name: str) -> list[Any]:
    """One field of every record: a column of :class:`SourceRecords` (from the core), else read
    from each dict."""
    if isinstance(records, SourceRecords):
        return records.column(name)
    return [r[name] for r in records]


def _domains(
    records: SourceRecords | Sequence[dict[str, Any]], rule: str, modality: str | None
) -> list[str]:
    """Each record's stage-scheduler domain (:func:`gradatim.curriculum.stages.record_domains`),
    from the core's columns for :class:`SourceRecords`."""
    from gradatim.curriculum.stages import record_domains

    if not isinstance(records, SourceRecords):
        return record_domains(records, rule, modality)
    if rule != "lesion_modality":
        return record_domains([{"source": s} for s in records.column("source")], rule)
    return [
        f"{phrase or 'none'}_{modality if modality is not None else infer_modality(image)}"
        for phrase, image in zip(records.column("phrase"), records.column("image"), strict=True)
    ]


def aligned_difficulty(
    path: str, records: SourceRecords | Sequence[dict[str, Any]]
) -> tuple[list[list[str]], list[float]]:
    """Classes and difficulty of each training record, looked up by ``id`` in a difficulty file
    (``gradatim difficulty`` output; it may cover every split): the file's row order does not
    matter, and a record the file does not cover is an error naming it."""
    from gradatim.difficulty.io import read_difficulty_table

    table = read_difficulty_table(path)
    row = {i: k for k, i in enumerate(table["ids"])}
    classes, dif = [], []
    for rid, source in zip(_column(records, "id"), _column(records, "source"), strict=True):
        k = row.get(str(rid))
        if k is None:
            raise ValueError(f"{path}: no difficulty for id {rid!r} (source {source!r})")
        classes.append(list(table["classes"][k]))
        dif.append(float(table["dif"][k]))
    return classes, dif
