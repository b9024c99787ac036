"""MedCLM's Medium-stage attention regulariser (paper 001, Sec. 3, "Medium: implicit
localization"): the boxes are no longer drawn on the image, and the model's attention is pulled
toward the box region by a KL term against the sample's ``box_mask``. Two forms, chosen with
``[curriculum].attention_form``:

- ``"language"`` (gradatim's default, :func:`attention_kl`): the *language model's* attention
  from the target tokens to the image tokens;
- ``"vision_cls"`` (MedCLM's released form, :func:`vision_cls_kl`): the *vision tower's*
  last-layer attention from its CLS token to the patches.

What each source says. The paper (``shared/papers/001``) says only that the Medium stage hides
the boxes and "regularizes attention maps to match box regions" with a KL term; it does not say
whose attention (vision tower or language model) nor from which query. The released code
(ksyint/PROGRESSIVE a7cca74, ``integrated_cot/src/training/attn_loss.py``) *defines*
``compute_attention_mask_loss``, the vision-tower form below, but never calls it: ``losses.py``
imports it and its Easy/Medium loss is ``0.8 x answer + 0.2 x rationale`` without it, and the
``outputs.vision_attentions`` it reads is not set by the released model wrapper. gradatim's
earlier docs said the released code did not contain the term at all; that was wrong.

``"language"`` (gradatim's reading, stated once):

- target ``p``: the sample's ``box_mask`` (the core's Medium-stage mask on the model's image-token
  grid, boxes blurred, row-major), normalised to sum 1;
- attention ``a``: the last layer's attention, mean over heads, from the positions that predict a
  target token (``labels[:, 1:] != -100``) to the image tokens, mean over those queries,
  normalised over the image tokens;
- ``KL(p || a) = sum_i p_i (log p_i - log a_i)`` (``p_i = 0`` terms are 0; ``a`` floored at
  ``1e-8``), per Medium sample; 0 for other samples and for a Medium sample whose mask is empty.

``"vision_cls"`` (``compute_attention_mask_loss`` as released, per sample):

- ``attn = vision_attentions[-1].mean(heads)[:, 0, 1:]``: the vision tower's last encoder layer,
  mean over heads, from the CLS token (position 0) to every patch;
- ``q = softmax(attn)`` over the patches: a softmax *of attention probabilities* (values in
  [0, 1]), as released, so ``q`` stays close to uniform;
- ``KL(p || q) = sum_i p_i (log p_i - log(q_i + 1e-8))`` (``F.kl_div(log(q + 1e-8), p)``; the
  released ``batchmean`` is the mean of these over the batch, which the loop's per-sample sum
  and batch mean reproduce over a batch of Medium samples).

It needs a vision tower with a CLS token (CLIP, as in LLaVA and ViP-LLaVA, MedCLM's model);
SigLIP towers (PaliGemma, Gemma 3) have none and are refused. The patch grid must be the mask's.

The training loop adds ``attention_kl x KL`` to each Medium sample's loss. Attention weights exist
only with eager attention: the loop asks for it when the term is on, and if the model still
returns none (``attn_implementation = "sdpa"`` forced, a model without eager kernels) the term is
switched off with one warning saying so.
"""

from __future__ import annotations

import re
from types import TracebackType
from typing import Any

import torch

__all__ = ["ATTENTION_FORMS", "MEDIUM", "VisionAttention", "attention_kl", "vision_cls_kl"]

#: The Medium stage's code in a batch's ``stage`` tensor.
MEDIUM = 1

#: ``[curriculum].attention_form``: gradatim's language-model form, MedCLM's released
#: vision-tower form.
ATTENTION_FORMS = ("language", "vision_cls")

_FLOOR = 1e-8


def attention_kl(
    attentions: tuple[torch.Tensor, ...],
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    image_token_id: int,
    box_mask: torch.Tensor,
    stage: torch.Tensor,
) -> torch.Tensor:
    """Per-sample ``KL(box mask || target-to-image attention)``: ``[B]``, zero where the sample
    is not in the Medium stage or its mask is empty.

    ``attentions``: the model's per-layer ``[B, heads, T, T]`` attention (the last is used);
    ``input_ids`` / ``labels``: ``[B, T]``; ``box_mask``: ``[B, gh, gw]`` with ``gh x gw`` equal
    to the number of image tokens; ``stage``: ``[B]`` stage codes."""
    attn = attentions[-1].float().mean(1)  # [B, T, T]
    batch, length = input_ids.shape
    p = box_mask.to(attn.device).float().flatten(1)  # [B, N]
    image = input_ids.to(attn.device) == image_token_id  # [B, T]
    counts = image.sum(1)
    if bool((counts != p.shape[1]).any()):
        b = int(torch.nonzero(counts != p.shape[1])[0])
        raise ValueError(
            f"attention KL: sample {b} has {int(counts[b])} image tokens but the box mask "
            f"{tuple(box_mask.shape[1:])} has {p.shape[1]} cells (mask_grid must be the "
            f"model's image-token grid)"
        )
    # positions that predict a target token: labels[t + 1] is labelled
    queries = torch.zeros((batch, length), dtype=attn.dtype, device=attn.device)
    queries[:, :-1] = (labels[:, 1:] != -100).to(attn.device, attn.dtype)
    n_queries = queries.sum(1)
    to_keys = (queries[:, :, None] * attn).sum(1) / n_queries.clamp(min=1)[:, None]  # [B, T]
    a = to_keys[image].view(batch, -1)  # image tokens in order: the grid, row-major
    a = (a / a.sum(1, keepdim=True).clamp(min=_FLOOR)).clamp(min=_FLOOR)
    total = p.sum(1, keepdim=True)
    p = p / total.clamp(min=_FLOOR)
    terms = torch.where(p > 0, p * (p.clamp(min=_FLOOR).log() - a.log()), torch.zeros_like(p))
    on = (stage.to(attn.device) == MEDIUM) & (total[:, 0] > 0) & (n_queries > 0)
    return torch.where(on, terms.sum(1), torch.zeros_like(n_queries))


def vision_cls_kl(
    vision_attention: torch.Tensor, box_mask: torch.Tensor, stage: torch.Tensor
) -> torch.Tensor:
    """MedCLM's released ``compute_attention_mask_loss`` per sample: ``[B]``,
    ``KL(box mask || softmax(CLS-to-patch attention))`` for Medium samples, 0 for the others.

    ``vision_attention``: the vision tower's last encoder layer's attention weights,
    ``[B, heads, 1 + N, 1 + N]`` with the CLS token first; ``box_mask``: ``[B, gh, gw]`` with
    ``gh x gw = N``; ``stage``: ``[B]`` stage codes."""
    attn_map = vision_attention.float().mean(1)  # [B, T, T]
    p = box_mask.to(attn_map.device).float().flatten(1)  # [B, N]
    tokens = attn_map.shape[-1]
    if tokens == p.shape[1]:
        raise ValueError(
            f'attention_form = "vision_cls": the vision tower has {tokens} tokens, one per '
            f"patch of the {tuple(box_mask.shape[1:])} mask, and no CLS token (a SigLIP tower); "
            f"MedCLM's released term reads the CLS token's attention (a CLIP tower, as in LLaVA)"
        )
    if tokens != p.shape[1] + 1:
        raise ValueError(
            f'attention_form = "vision_cls": the vision tower has {tokens} tokens (CLS + '
            f"{tokens - 1} patches) but the box mask {tuple(box_mask.shape[1:])} has "
            f"{p.shape[1]} cells (mask_grid must be the tower's patch grid)"
        )
    cls_to_patch = attn_map[:, 0, 1:]  # [B, N]
    q = torch.softmax(cls_to_patch, dim=1)
    log_q = (q + _FLOOR).log()
    terms = torch.xlogy(p, p) - p * log_q  # F.kl_div's pointwise target * (log target - input)
    on = stage.to(attn_map.device) == MEDIUM
    return torch.where(on, terms.sum(1), torch.zeros_like(terms[:, 0]))


_VISION_LAYER = re.compile(r"(^|\.)vision_tower\..*\.layers\.(\d+)\.self_attn$")


class VisionAttention:
    """Captures the attention weights of the vision tower's last encoder layer during a forward
    (a forward hook on its ``self_attn``, whose output is ``(attn_output, attn_weights)``), with
    the graph kept so a loss on them trains the tower's adapters. ``weights`` is ``None`` when
    the layer returned none (non-eager attention)::

        with VisionAttention(model) as seen:
            outputs = model(...)
        seen.weights  # [B, heads, T, T] or None
    """

    def __init__(self, model: torch.nn.Module) -> None:
        found = [
            (int(m.group(2)), module)
            for name, module in model.named_modules()
            if (m := _VISION_LAYER.search(name))
        ]
        if not found:
            raise ValueError(
                'attention_form = "vision_cls": the model has no vision tower with encoder '
                "layers (vision_tower...layers.N.self_attn)"
            )
        self.module = max(found, key=lambda x: x[0])[1]
        self.weights: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        w = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        self.weights = w if isinstance(w, torch.Tensor) else None

    def __enter__(self) -> VisionAttention:
        self.weights = None
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._handle.remove()
