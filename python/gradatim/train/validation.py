"""Validation during training, for CURE's error-aware curriculum: fixed per-source validation
subsets, greedy generation, boxes parsed from the generated text, IoU and the text score per
source (``gradatim.evaluate``), all-reduced over ranks so every rank takes the same decision.

The subsets are pinned: the first ``per_source`` records of each source's validation split, built
without augmentation at a fixed epoch and seed, so every evaluation sees the same images, prompts
and targets (text choices are keyed by record id, so this holds whatever the subset's order).
Reference boxes are the batch's ``target_boxes``: the boxes the *target* renders, not every box of
the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from gradatim.data import ManifestDataset
from gradatim.evaluate import evaluate_rows
from gradatim.train.models import ModelBundle

__all__ = ["Validator", "blank_value", "encode_prompts", "generate_rows"]

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


class Validator:
    """Pinned validation subsets and their evaluation."""

    def __init__(
        self,
        dataset: ManifestDataset,
        bundle: ModelBundle,
        *,
        per_source: int = 16,
        batch_size: int = 8,
        max_new_tokens: int = 64,
        box_format: str = "cure",
        seed: int = 0,
        categories: list[str] | None = None,
    ) -> None:
        sources = dataset.column("source")
        picked: dict[str, list[int]] = {}
        if categories is None:
            for i, s in enumerate(sources):
                if len(picked.setdefault(s, [])) < per_source:
                    picked[s].append(i)
        else:  # round robin over each source's categories, so every category is represented
            queues: dict[str, dict[str, list[int]]] = {}
            for i, (s, c) in enumerate(zip(sources, categories, strict=True)):
                queues.setdefault(s, {}).setdefault(c, []).append(i)
            for s, by_cat in queues.items():
                longest = max(len(q) for q in by_cat.values())
                rounds = [q[k] for k in range(longest) for q in by_cat.values() if k < len(q)]
                flat = rounds[:per_source]
                picked[s] = sorted(flat)
        self.categories = categories
        self.dataset, self.bundle = dataset, bundle
        self.indices = [i for s in sorted(picked) for i in picked[s]]
        self.sources = sorted(picked)
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.box_format, self.seed = box_format, seed

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
        )

    def metrics(
        self, model: torch.nn.Module, rank: int = 0, world: int = 1, hook: Hook | None = None
    ) -> dict[str, dict[str, float]]:
        """``{source: {"iou": ..., "text": ...}}`` over every rank's samples (IoU only where some
        sample had reference boxes). ``hook`` may rewrite the generated rows before scoring."""
        return self.evaluate(model, rank, world, hook)[0]

    def evaluate(
        self, model: torch.nn.Module, rank: int = 0, world: int = 1, hook: Hook | None = None
    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, dict[str, float]]] | None]:
        """Per-source metrics as :meth:`metrics`, and with categories
        ``{source: {category: {"iou", "text"}}}`` for CURE's category level (else ``None``)."""
        rows = self.generate_rows(model, rank, world)
        if hook is not None:
            rows = hook(rows)
        per = evaluate_rows(rows)
        keys = [(s, None) for s in self.sources]
        if self.categories is not None:  # the same keys on every rank, from the pinned subset
            sources = self.dataset.column("source")
            keys += sorted({(sources[i], self.categories[i]) for i in self.indices})
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
    config = dataset._config
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
) -> list[dict[str, Any]]:
    """``gradatim evaluate``'s rows for ``dataset[indices]``, generated greedily (or by beam
    search with ``num_beams > 1``), batches built without augmentation at epoch 0 and ``seed`` (so
    every record gets the same prompt wherever it is evaluated). ``blank_images``: every pixel
    is the dataset's blank value (:func:`blank_value`), so the model answers from the prompt
    alone. ``categories``: a record-level category per dataset index (CURE's curriculum) instead
    of the chosen phrase / region. Each row: ``id``, ``source``, ``task``, ``prediction``,
    ``reference``, ``reference_boxes``, ``box_format``, ``category``, ``anatomy`` (the region of an
    anatomy-grounded prompt), ``phrase`` (the phrase of a phrase-grounding prompt), ``prompt`` and
    ``prompt_kind`` (``locate`` / ``describe`` / ``locate_describe`` for anatomy prompts)."""
    device = next(model.parameters()).device
    rows: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    blank = blank_value(dataset) if blank_images else None
    try:
        for start in range(0, len(indices), batch_size):
            idx = list(indices[start : start + batch_size])
            batch = dataset.load_batch(idx, epoch=0, seed=seed)
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
