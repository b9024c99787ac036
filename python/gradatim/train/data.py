"""The training data of a run: one manifest per named source, filtered by split, and a sampler
weighted by source *name* (records of a source may lie anywhere in the data set)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradatim.data import Augment, DataLoader, ManifestDataset
from gradatim.manifest.common import read_manifest
from gradatim.sampling import CurriculumSampler, MultiSourceSampler
from gradatim.train.config import TrainConfig
from gradatim.train.models import ModelBundle

__all__ = [
    "model_dataset",
    "source_records",
    "make_dataset",
    "build_loader",
    "aligned_difficulty",
    "record_categories",
]


def source_records(cfg: TrainConfig, split: str | None = None) -> list[dict[str, Any]]:
    """The records of every source, in source order, each with ``source`` set to the source's
    name and ``image`` made absolute; ``split`` overrides the sources' own (validation). Each
    manifest is validated on its own first, so a bad record is reported with its file and line."""
    records: list[dict[str, Any]] = []
    for s in cfg.data.sources:
        path = Path(s.manifest)
        ManifestDataset(path, image_size=(8, 8))  # validation only: errors name file and line
        want = split if split is not None else s.split
        kept = 0
        for r in read_manifest(path):
            if want is not None and r["split"] != want:
                continue
            if s.select is not None and r.get("source") != s.select:
                continue
            r["source"] = s.name
            image = Path(r["image"])
            r["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
            records.append(r)
            kept += 1
        if kept == 0:
            raise ValueError(f"source {s.name!r}: {path} has no records of split {want!r}")
    return records


def make_dataset(
    cfg: TrainConfig,
    bundle: ModelBundle,
    records: list[dict[str, Any]],
    augment: Augment | None,
    stages: Any = None,
) -> ManifestDataset:
    """A dataset over ``records`` (absolute image paths, kept under their common folder) at the
    model's image size, mean and std, 3 channels."""
    return model_dataset(bundle, records, augment, cfg.data.box_format, cfg.train.seed, stages)


def model_dataset(
    bundle: ModelBundle,
    records: list[dict[str, Any]],
    augment: Augment | None,
    box_format: str,
    seed: int,
    stages: Any = None,
) -> ManifestDataset:
    """:func:`make_dataset` without a configuration."""
    root = os.path.commonpath([str(Path(r["image"]).parent) for r in records])
    rel = [{**r, "image": os.path.relpath(r["image"], root)} for r in records]
    return ManifestDataset(
        rel,
        root=root,
        image_size=bundle.image_size,
        channels=3,
        mean=bundle.mean,
        std=bundle.std,
        augment=augment,
        box_format=box_format,  # type: ignore[arg-type]
        seed=seed,
        stages=stages,
        mask_grid=bundle.patch_grid,
    )


def record_categories(records: list[dict[str, Any]], how: str) -> list[str]:
    """CURE's category of each record: its ``task`` (prompt type), or the phrase / anatomy of its
    first box (``"none"`` without one). Converters that write one finding or one region per record
    (MS-CXR, Chest ImaGenome) give CURE's categories exactly."""
    if how == "task":
        return [str(r["task"]) for r in records]
    key = "phrase" if how == "phrase" else "anatomy"
    return [str((r.get("boxes") or [{}])[0].get(key) or "none") for r in records]


def build_loader(
    cfg: TrainConfig,
    bundle: ModelBundle,
    records: list[dict[str, Any]],
    *,
    rank: int = 0,
    world_size: int = 1,
    phase: int = 2,
) -> tuple[DataLoader, MultiSourceSampler | CurriculumSampler]:
    """The fast-path loader over ``records`` at the model's image size, mean and std, sharded by
    rank. Sources are weighted by name wherever their records lie (``from_dataset``); with
    ``rrgcl`` alone the sampler is RRGCL's epoch subsets, with ``cure+rrgcl`` both in one sampler,
    with CURE ``categories`` two levels. ``phase=1``: CURE's first phase, the records of
    ``[curriculum].phase1_tasks`` only."""
    c = cfg.curriculum
    augment = Augment.cure_train() if cfg.data.augment == "cure_train" else None
    stages = None
    if c.kind == "medclm" and c.stage is not None:
        stages = c.stage  # one fixed stage (MedCLM's ablations: Easy only, Medium only)
    elif c.kind == "medclm":
        from gradatim.curriculum import StageScheduler

        stages = StageScheduler([s.name for s in cfg.data.sources], seed=cfg.train.seed)
    ds = make_dataset(cfg, bundle, records, augment, stages)
    shard = {"seed": cfg.train.seed, "rank": rank, "world_size": world_size}
    schedule = None
    if "rrgcl" in c.kind:
        from gradatim.curriculum import RRGCLScheduler

        classes, dif = aligned_difficulty(str(c.difficulty), records)
        schedule = RRGCLScheduler(classes, dif, c.epochs)
    sampler: MultiSourceSampler | CurriculumSampler
    if c.kind == "rrgcl":
        sampler = CurriculumSampler(schedule, **shard)  # type: ignore[arg-type]
    elif phase == 1:
        keep = np.asarray([r["task"] in c.phase1_tasks for r in records])
        if not keep.any():
            raise ValueError(f"phase 1: no training record has a task in {c.phase1_tasks}")
        kept = {r["source"] for r, k in zip(records, keep, strict=True) if k}
        weights = {s.name: s.weight for s in cfg.data.sources if s.name in kept}
        sampler = MultiSourceSampler.from_dataset(ds, weights, keep=keep, **shard)
    else:
        weights = {s.name: s.weight for s in cfg.data.sources}
        cats = None if c.categories is None else record_categories(records, c.categories)
        sampler = MultiSourceSampler.from_dataset(
            ds, weights, categories=cats, schedule=schedule, mode=cfg.data.draw, **shard
        )
    loader = DataLoader(
        ds,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    return loader, sampler


def aligned_difficulty(
    path: str, records: list[dict[str, Any]]
) -> tuple[list[list[str]], list[float]]:
    """Classes and difficulty of each training record, looked up by ``id`` in a difficulty file
    (``gradatim difficulty`` output; it may cover every split): the file's row order does not
    matter, and a record the file does not cover is an error naming it."""
    from gradatim.difficulty.io import read_difficulty_table

    table = read_difficulty_table(path)
    row = {i: k for k, i in enumerate(table["ids"])}
    classes, dif = [], []
    for r in records:
        k = row.get(str(r["id"]))
        if k is None:
            raise ValueError(f"{path}: no difficulty for id {r['id']!r} (source {r['source']!r})")
        classes.append(list(table["classes"][k]))
        dif.append(float(table["dif"][k]))
    return classes, dif
