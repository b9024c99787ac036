"""MedCLM's Medium-stage attention regulariser (paper 001, Sec. 3, "Medium: implicit
localization"): the boxes are no longer drawn on the image, and the model's attention from the
target tokens to the image tokens is pulled toward the box region by a KL term.

The paper names the term but its released code (ksyint/PROGRESSIVE, a7cca74) does not contain it,
so the form here is gradatim's reading of the description, stated once:

- target ``p``: the sample's ``box_mask`` (the core's Medium-stage mask on the model's image-token
  grid, boxes blurred, row-major), normalised to sum 1;
- attention ``a``: the last layer's attention, mean over heads, from the positions that predict a
  target token (``labels[:, 1:] != -100``) to the image tokens, mean over those queries,
  normalised over the image tokens;
- ``KL(p || a) = sum_i p_i (log p_i - log a_i)`` (``p_i = 0`` terms are 0; ``a`` floored at
  ``1e-8``), per Medium sample; 0 for other samples and for a Medium sample without boxes.

The training loop adds ``attention_kl x KL`` to each Medium sample's loss. Attention weights exist
only with eager attention: the loop asks for it when the term is on, and if the model still
returns none (``attn_implementation = "sdpa"`` forced, a model without eager kernels) the term is
switched off with one warning saying so.
"""

from __future__ import annotations

import torch

__all__ = ["attention_kl", "MEDIUM"]

#: The Medium stage's code in a batch's ``stage`` tensor.
MEDIUM = 1

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
