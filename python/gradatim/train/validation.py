"""Validation during training, for CURE's error-aware curriculum: per-source validation
subsets, greedy generation, boxes parsed from the generated text, IoU and the text score per
source (``gradatim.evaluate``), all-reduced over ranks so every rank takes the same decision.

Two subsets, named:

- ``"pinned"``: the first ``per_source`` records of each source's validation split (round robin
  over its categories), the same at every validation;
- ``"fresh"``: CURE's (PabloMessina/CURE 9365333, ``vlm_research_kit/data/dataset_helpers.py``
  ``create_uniform_subset_from_indices_list``, ``datasets/*.py`` ``create_uniform_subset``): a
  new random subset at every validation, drawn from ``(seed, step)``. The size is rounded up to
  a multiple of the validation batch size times the ranks. A source without categories gives
  ``min(size, n)`` records; a source with categories levels them (every category gets one more
  record while it has some, smallest first, until the size is reached; past the source's size
  every category gives all and the excess is spread evenly, drawn with replacement); a source
  with sub-categories gives each category ``max(ceil(size / categories), its sub-categories)``
  records (rounded up likewise), spread evenly over its sub-categories, the first ones one more,
  with replacement where a sub-category has too few (CURE's Chest ImaGenome over prompt modes and
  locations).

Every validation image goes through the evaluation pipeline the caller builds the dataset with
(the run's: CURE's CLAHE clip 3.0 after its training augmentation) at a fixed epoch and seed, so
a record always gets the same image, prompt and target (text choices are keyed by record id).
Reference boxes are the batch's ``target_boxes``: the boxes the *target* renders, not every box
of the record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gradatim.data import ManifestDataset
from gradatim.evaluate import evaluate_rows
from gradatim.train.models import ModelBundle

__all__ = [
    "Validator",
    "blank_value",
    "encode_prompts",
    "generate_rows",
    "level_counts",
    "spread_counts",
    "SUBSETS",
]

#: The validation subsets: the same first records every time, or CURE's fresh uniform draw.
SUBSETS = ("pinned", "fresh")

Hook = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def encode_prompts(bundle: ModelBundle, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded prompt prefixes (image tokens + prompt + the model turn) for generation."""
    from gradatim.train.text import _prefix_ids

    rows = [_prefix_ids(bundle, p) for p in prompts]
    width = max(len(r) for r in rows)
    pad = bundle.tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if bundle.family in ("paligemma", "gemma3"):
        image = ids == bundle.image_token_id
        out["token_type_ids"] = image.long() if bundle.family == "gemma3" else torch.zeros_like(ids)
    return out


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def level_counts(sizes: Sequence[int], target: int, multiple: int = 1) -> list[int]:
    """How many records each category of a source gives to a fresh subset of ``target`` (CURE's
    ``create_uniform_subset_from_indices_list``): at least one per category, rounded up to a
    multiple; within the source's size, levelled (smallest categories first, one record per
    category and round while it has some); beyond it, all of every category and the excess spread
    evenly over them, the first ones one more."""
    n = len(sizes)
    target = _round_up(max(target, n), multiple)
    total = sum(sizes)
    if target > total:
        extra, rest = divmod(target - total, n)
        return [size + extra + (1 if i < rest else 0) for i, size in enumerate(sizes)]
    counts = [0] * n
    order = sorted(range(n), key=lambda i: sizes[i])  # stable: ties in category order
    given, level = 0, 0
    while given < target:
        level += 1
        for i in order:
            if sizes[i] >= level:
                counts[i] += 1
                given += 1
                if given == target:
                    break
    return counts


def spread_counts(subs: int, total: int) -> list[int]:
    """``total`` records spread over ``subs`` sub-categories, the first ones one more."""
    each, rest = divmod(total, subs)
    return [each + (1 if i < rest else 0) for i in range(subs)]


class Validator:
    """Validation subsets (``subset``: :data:`SUBSETS`) and their evaluation.

    ``per_source``: samples per source (an int, or ``{source: n}`` with the default under
    ``"*"``); ``categories``: CURE's label per dataset record (``"a/b"`` for category and
    sub-category); ``text_clean`` / ``text_metrics``: the text conventions
    (``gradatim.evaluate.text``); ``ends``: per source, the end of its grounded reports
    (``train.data.source_ends``); ``world``: ranks, for the fresh subset's rounding."""

    def __init__(
        self,
        dataset: ManifestDataset,
        bundle: ModelBundle,
        *,
        per_source: int | Mapping[str, int] = 16,
        batch_size: int = 8,
        max_new_tokens: int = 64,
        box_format: str = "cure",
        seed: int = 0,
        categories: list[str] | None = None,
        subset: str = "pinned",
        text_clean: str = "none",
        text_metrics: str = "gradatim",
        ends: Mapping[str, str] | None = None,
        world: int = 1,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset: expected one of {', '.join(SUBSETS)}, not {subset!r}")
        sources = dataset.column("source")
        self.groups: dict[str, dict[str, list[int]]] = {}
        for i, s in enumerate(sources):
            label = "" if categories is None else categories[i]
            self.groups.setdefault(s, {}).setdefault(label, []).append(i)
        self.sources = sorted(self.groups)
        default = per_source if isinstance(per_source, int) else int(per_source.get("*", 16))
        self.sizes = {
            s: default if isinstance(per_source, int) else int(per_source.get(s, default))
            for s in self.sources
        }
        self.categories = categories
        self.dataset, self.bundle = dataset, bundle
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.box_format, self.seed = box_format, seed
        self.subset, self.world = subset, world
        self.text_clean, self.text_metrics = text_clean, text_metrics
        self.ends = dict(ends or {})
        self.indices = self._pinned() if subset == "pinned" else self.draw(0)

    def _pinned(self) -> list[int]:
        picked: dict[str, list[int]] = {}
        for s in self.sources:
            by_cat = self.groups[s]
            if self.categories is None:
                picked[s] = by_cat[""][: self.sizes[s]]
                continue  # round robin over the categories, so every category is represented
            longest = max(len(q) for q in by_cat.values())
            rounds = [q[k] for k in range(longest) for q in by_cat.values() if k < len(q)]
            picked[s] = sorted(rounds[: self.sizes[s]])
        return [i for s in self.sources for i in picked[s]]

    def draw(self, step: int) -> list[int]:
        """CURE's fresh subset for the validation at ``step`` (the same on every rank)."""
        multiple = self.batch_size * self.world
        out: list[int] = []
        for k, s in enumerate(self.sources):
            rng = np.random.default_rng([self.seed % 2**63, int(step), k])
            by_cat = self.groups[s]
            counts: list[tuple[list[int], int]]
            if self.categories is None:
                rows = by_cat[""]
                counts = [(rows, min(_round_up(self.sizes[s], multiple), len(rows)))]
            elif any("/" in c for c in by_cat):
                tree: dict[str, list[list[int]]] = {}
                for label, rows in by_cat.items():
                    tree.setdefault(label.split("/")[0], []).append(rows)
                each = math.ceil(self.sizes[s] / len(tree))
                counts = []
                for subs in tree.values():
                    size = _round_up(max(each, len(subs)), multiple)
                    counts += list(zip(subs, spread_counts(len(subs), size), strict=True))
            else:
                groups = list(by_cat.values())
                level = level_counts([len(g) for g in groups], self.sizes[s], multiple)
                counts = list(zip(groups, level, strict=True))
            for rows, n in counts:
                if n:
                    pick = rng.choice(len(rows), size=n, replace=n > len(rows))
                    out += [rows[int(j)] for j in pick]
        return out

    @torch.no_grad()
    def generate_rows(
        self,
        model: torch.nn.Module,
        rank: int = 0,
        world: int = 1,
        *,
        num_beams: int = 1,
        blank_images: bool = False,
    ) -> list[dict]:
        """This rank's share of the validation samples, generated greedily (beam search with
        ``num_beams > 1``; ``blank_images``: every image replaced by the blank image)."""
        return generate_rows(
            model,
            self.bundle,
            self.dataset,
            self.indices[rank::world],
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            box_format=self.box_format,
            seed=self.seed,
            categories=self.categories,
            num_beams=num_beams,
            blank_images=blank_images,
            ends=self.ends,
        )

    def metrics(
        self, model: torch.nn.Module, rank: int = 0, world: int = 1, hook: Hook | None = None
    ) -> dict[str, dict[str, float]]:
        """``{source: {"iou": ..., "text": ...}}`` over every rank's samples (IoU only where some
        sample had reference boxes). ``hook`` may rewrite the generated rows before scoring."""
        return self.evaluate(model, rank, world, hook)[0]

    def evaluate(
        self,
        model: torch.nn.Module,
        rank: int = 0,
        world: int = 1,
        hook: Hook | None = None,
        *,
        step: int | None = None,
    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]] | None]:
        """Per-source metrics as :meth:`metrics`, and with categories
        ``{source: {category: {"iou", "text"}}}`` for CURE's category level (else ``None``;
        a category with a sub-category is ``"category/sub"``). With the fresh subset, ``step``
        (the training step) draws this validation's records."""
        if self.subset == "fresh" and step is not None:
            self.indices = self.draw(step)
        rows = self.generate_rows(model, rank, world)
        if hook is not None:
            rows = hook(rows)
        per = evaluate_rows(rows, text_clean=self.text_clean, text_metrics=self.text_metrics)
        keys: list[tuple[str, str | None]] = [(s, None) for s in self.sources]
        if self.categories is not None:  # the same keys on every rank, from the subset
            column = self.dataset.column("source")
            keys += sorted({(column[i], self.categories[i]) for i in self.indices})
        table = _reduced(per, keys, world)
        sources = {s: m for (s, c), m in table.items() if c is None}
        if self.categories is None:
            return sources, None
        cats: dict[str, dict[str, dict[str, float]]] = {}
        for (s, c), m in table.items():
            if c is not None:
                cats.setdefault(s, {})[c] = m
        return sources, cats


def blank_value(dataset: ManifestDataset) -> torch.Tensor:
    """Per channel, the value every pixel of the *blank image* takes: a constant mid-grey
    (0.5 on the [0, 1] scale) after the dataset's normalisation, ``(0.5 - mean) / std``."""
    config = dataset._core.config  # mean and std per channel, as the core read them
    mean = torch.tensor(config["mean"], dtype=torch.float32)
    std = torch.tensor(config["std"], dtype=torch.float32)
    return (0.5 - mean) / std


@torch.no_grad()
def generate_rows(
    model: torch.nn.Module,
    bundle: ModelBundle,
    dataset: ManifestDataset,
    indices: Sequence[int],
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    box_format: str = "cure",
    seed: int = 0,
    categories: list[str] | None = None,
    num_beams: int = 1,
    blank_images: bool = False,
    ends: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``gradatim evaluate``'s rows for ``dataset[indices]``, generated greedily (or by beam
    search with ``num_beams > 1``), batches built without augmentation at epoch 0 and ``seed`` (so
    every record gets the same prompt wherever it is evaluated). ``blank_images``: every pixel
    is the dataset's blank value (:func:`blank_value`), so the model answers from the prompt
    alone. ``categories``: a record-level category per dataset index (CURE's curriculum) instead
    of the chosen phrase / region. Each row: ``id``, ``source``, ``task``, ``prediction``,
    ``reference``, ``reference_boxes``, ``box_format``, ``category``, ``anatomy`` (the region of an
    anatomy-grounded prompt), ``phrase`` (the phrase of a phrase-grounding prompt), ``prompt`` and
    ``prompt_kind`` (``locate`` / ``describe`` / ``locate_describe`` for anatomy prompts).
    ``ends``: per source, the end of its grounded reports' references (``train.data``)."""
    from gradatim.train.data import with_source_ends

    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    blank = blank_value(dataset) if blank_images else None
    try:
        for start in range(0, len(indices), batch_size):
            idx = list(indices[start : start + batch_size])
            batch = dataset.load_batch(idx, epoch=0, seed=seed)
            batch = with_source_ends(batch, dict(ends or {}))
            pixels = batch["pixel_values"]
            if blank is not None:
                pixels = blank.view(1, -1, 1, 1).expand_as(pixels).to(pixels.dtype).clone()
            enc = {k: v.to(device) for k, v in encode_prompts(bundle, batch["prompt"]).items()}
            beams = {"num_beams": num_beams} if num_beams > 1 else {}
            out = model.generate(  # type: ignore[operator]
                pixel_values=pixels.to(device),
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=bundle.tokenizer.pad_token_id,
                **beams,
            )
            texts = bundle.tokenizer.batch_decode(
                out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
            )
            kinds = batch.get("prompt_kind") or [""] * len(texts)
            for k, text in enumerate(texts):
                n_boxes = int(batch["target_box_count"][k])
                task = batch["task"][k]
                chosen = batch["category"][k] or None  # the chosen phrase / region
                category = chosen
                if categories is not None:  # the curriculum's record-level category
                    category = categories[int(batch["index"][k])]
                rows.append(
                    {
                        "id": batch["id"][k],
                        "source": batch["source"][k],
                        "task": task,
                        "prediction": text,
                        "reference": batch["target"][k],
                        "reference_boxes": batch["target_boxes"][k, :n_boxes].tolist(),
                        "box_format": box_format,
                        "category": category,
                        "anatomy": chosen if task == "anatomy_grounded_report" else None,
                        "phrase": chosen if task == "phrase_grounding" else None,
                        "prompt": batch["prompt"][k],
                        "prompt_kind": kinds[k] or None,
                    }
                )
    finally:
        model.train(was_training)
    return rows


def _reduced(
    per: list[dict[str, Any]], keys: list[tuple[str, str | None]], world: int
) -> dict[tuple[str, str | None], dict[str, float]]:
    """Mean IoU (where any) and text score per key ``(source, None)`` or ``(source, category)``,
    summed over ranks when ``world > 1`` so every rank takes the same decision."""
    index = {k: i for i, k in enumerate(keys)}
    sums = torch.zeros((len(keys), 4), dtype=torch.float64)  # iou sum, iou n, text sum, n
    for r in per:
        rows = [index[(r["source"], None)]]
        if r.get("category") is not None and (r["source"], str(r["category"])) in index:
            rows.append(index[(r["source"], str(r["category"]))])
        for i in rows:
            if r["iou"] is not None:
                sums[i, 0] += r["iou"]
                sums[i, 1] += 1
            sums[i, 2] += r["text_score"]
            sums[i, 3] += 1
    if world > 1:
        dist.all_reduce(sums)
    out: dict[tuple[str, str | None], dict[str, float]] = {}
    for k, i in index.items():
        entry = {"text": float(sums[i, 2] / max(float(sums[i, 3]), 1.0))}
        if sums[i, 1] > 0:
            entry["iou"] = float(sums[i, 0] / sums[i, 1])
        out[k] = entry
    return out
