"""Prompts and targets to token ids, labels and image tokens, per model family.

For each sample the user turn is the image placeholder followed by the prompt, rendered with the
tokenizer's chat template; the target follows the model's turn and ends with the EOS token. Labels
are ``-100`` everywhere but on the target's tokens and the EOS (the loss is on the answer only).
The single placeholder is expanded to the family's image tokens: ``num_image_tokens`` copies for
LLaVA and PaliGemma, wrapped in begin/end-of-image markers for Gemma 3. PaliGemma and Gemma 3 also
get ``token_type_ids`` (PaliGemma: 1 on the target, the suffix it attends causally; Gemma 3: 1 on
image tokens). Sequences are right-padded to the longest in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradatim.train.models import ModelBundle

__all__ = ["encode_batch"]

IGNORE = -100


def _prefix_ids(bundle: ModelBundle, prompt: str) -> list[int]:
    tok = bundle.tokenizer
    placeholder = tok.convert_ids_to_tokens(bundle.image_token_id)
    text = tok.apply_chat_template(
        [{"role": "user", "content": f"{placeholder}{prompt}"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if ids.count(bundle.image_token_id) != 1:
        raise ValueError("the chat template must keep exactly one image placeholder")
    at = ids.index(bundle.image_token_id)
    image = [bundle.image_token_id] * bundle.num_image_tokens
    if bundle.family == "gemma3":
        image = [bundle.boi_token_id, *image, bundle.eoi_token_id]  # type: ignore[list-item]
    return ids[:at] + image + ids[at + 1 :]


def encode_batch(
    bundle: ModelBundle, prompts: Sequence[str], targets: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``labels`` (and ``token_type_ids`` where the family
    uses them) for a batch of prompt/target pairs."""
    tok = bundle.tokenizer
    rows: list[tuple[list[int], int]] = []
    for prompt, target in zip(prompts, targets, strict=True):
        prefix = _prefix_ids(bundle, prompt)
        answer = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((prefix + answer, len(prefix)))
    width = max(len(ids) for ids, _ in rows)
    pad = tok.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, start) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, start : len(ids)] = torch.tensor(ids[start:])
        mask[i, : len(ids)] = 1
        if bundle.family == "paligemma":
            types[i, start : len(ids)] = 1
    out: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
    if bundle.family == "paligemma":
        out["token_type_ids"] = types
    elif bundle.family == "gemma3":
        out["token_type_ids"] = (input_ids == bundle.image_token_id).long()
    return out
