"""Prompts and targets to token ids, labels and image tokens, per model family.

For LLaVA and Gemma 3 the user turn is the image placeholder followed by the prompt, rendered with
the tokenizer's chat template; the target follows the model's turn. PaliGemma has no chat turns:
its prompt is its processor's task prefix, ``<image> x n + <bos> + prompt + "\n"``, and the
target (its suffix) follows. Either way the target ends with the EOS token. Labels
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

__all__ = ["encode_batch", "ROLE_ANSWER", "ROLE_RATIONALE", "ROLE_TARGET", "ROLE_IGNORE"]

IGNORE = -100


def _prefix_ids(bundle: ModelBundle, prompt: str) -> list[int]:
    tok = bundle.tokenizer
    if bundle.family == "paligemma":  # the processor's task prefix (no chat template)
        text = tok(f"{prompt}\n", add_special_tokens=False)["input_ids"]
        return [bundle.image_token_id] * bundle.num_image_tokens + [tok.bos_token_id, *text]
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


#: Token roles in ``label_roles``: not in the loss, a plain target, an answer, a rationale.
ROLE_IGNORE, ROLE_TARGET, ROLE_ANSWER, ROLE_RATIONALE = 0, 1, 2, 3
_ROLE_CODES = {"target": ROLE_TARGET, "answer": ROLE_ANSWER, "rationale": ROLE_RATIONALE}


def _token_roles(
    offsets: Sequence[tuple[int, int]], parts: Sequence[tuple[str, int, int]]
) -> list[int]:
    """The role of each target token from the target's character spans: the part the token
    overlaps; template words outside every part (``Reasoning:``, ``Answer:``) are left out of the
    loss, as MedCLM's released losses mask them (ksyint/PROGRESSIVE a7cca74, ``losses.py``)."""
    spans = [(int(a), int(b), _ROLE_CODES.get(str(r), ROLE_TARGET)) for r, a, b in parts]
    roles = []
    for start, end in offsets:
        role = ROLE_IGNORE
        for a, b, code in spans:
            if start < b and end > a:
                role = code
                break
        roles.append(role)
    return roles


def encode_batch(
    bundle: ModelBundle,
    prompts: Sequence[str],
    targets: Sequence[str],
    parts: Sequence[Sequence[tuple[str, int, int]]] | None = None,
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask``, ``labels`` (and ``token_type_ids`` where the family
    uses them) for a batch of prompt/target pairs; with the batch's ``target_parts``, also
    ``label_roles`` (per token: ignore / target / answer / rationale) for MedCLM's weighted loss."""
    tok = bundle.tokenizer
    rows: list[tuple[list[int], int]] = []
    role_rows: list[list[int]] = []
    for k, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
        prefix = _prefix_ids(bundle, prompt)
        enc = tok(target, add_special_tokens=False, return_offsets_mapping=parts is not None)
        answer = enc["input_ids"] + [tok.eos_token_id]
        rows.append((prefix + answer, len(prefix)))
        if parts is not None:
            roles = _token_roles(enc["offset_mapping"], parts[k])
            # EOS counts with the last part, so the model learns to stop (MedCLM leaves it out)
            last = max(parts[k], key=lambda p: int(p[2]), default=("target", 0, 0))
            eos_role = _ROLE_CODES.get(str(last[0]), ROLE_TARGET)
            role_rows.append([ROLE_IGNORE] * len(prefix) + roles + [eos_role])
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
    if parts is not None:
        roles_t = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(role_rows):
            roles_t[i, : len(r)] = torch.tensor(r)
        out["label_roles"] = roles_t
    if bundle.family == "paligemma":
        out["token_type_ids"] = types
    elif bundle.family == "gemma3":
        out["token_type_ids"] = (input_ids == bundle.image_token_id).long()
    return out
