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
from gradatim.sampling import CurriculumSampler, MultiSourceSampler, NestedInterleaveSampler
from gradatim.train.config import TrainConfig
from gradatim.train.models import ModelBundle

__all__ = [
    "model_dataset",
    "source_records",
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
    records: list[dict[str, Any]],
    augment: Augment | None,
    box_format: str,
    seed: int,
    stages: Any = None,
    domains: list[str] | None = None,
    *,
    mask_cells: str = "truncate",
    mask_empty: str = "image",
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
    records: list[dict[str, Any]], how: str, per_source: dict[str, str] | None = None
) -> list[str]:
    """CURE's category of each record: its ``task`` (prompt type), the phrase / anatomy of its
    first box (``"none"`` without one), or ``"cure"``: the anatomy of an anatomy-grounded record,
    the phrase of a phrase-grounding one, ``"none"`` otherwise (CURE's locations, label groups and
    findings; its grounded reports have none). ``"a/b"`` gives ``"<a>/<b>"``: category and
    sub-category. ``per_source`` overrides ``how`` by source name. Converters that write one
    finding or one region per record (MS-CXR, Chest ImaGenome) give CURE's categories exactly."""
    out = []
    for r in records:
        rule = (per_source or {}).get(r.get("source", "")) or how
        out.append("/".join(_category(r, part) for part in rule.split("/")))
    return out


def run_categories(cfg: TrainConfig, records: list[dict[str, Any]]) -> list[str] | None:
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
    records: list[dict[str, Any]],
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
        from gradatim.curriculum.stages import record_domains

        # the scheduler's domains: the sources (gradatim's grouping), or MedCLM's released
        # lesion_class + "_" + modality, from each record as its manifest gives it (absolute
        # image path, as the released JSON's image_path)
        domains = record_domains(records, c.domains, c.modality)
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
        keep = np.asarray([r["task"] in c.phase1_tasks for r in records])
        if not keep.any():
            raise ValueError(f"phase 1: no training record has a task in {c.phase1_tasks}")
        kept = {r["source"] for r, k in zip(records, keep, strict=True) if k}
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
