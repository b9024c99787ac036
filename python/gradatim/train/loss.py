"""The language-model loss per sample, so a batch's samples can be grouped by task (one loss per
task for the multi-task gradient combination, per-stage and per-source losses for MedCLM's
scheduler)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["per_sample_loss", "group_losses"]


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over each sample's labelled tokens (``-100`` ignored):
    ``[B, T, V]`` logits and ``[B, T]`` labels -> ``[B]``."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tokens = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(shift_labels.shape)
    counted = (shift_labels != -100).sum(1).clamp(min=1)
    return tokens.sum(1) / counted


def group_losses(
    per_sample: torch.Tensor, groups: Sequence[str]
) -> tuple[list[str], list[torch.Tensor]]:
    """The mean loss of each group present in the batch, in order of first appearance."""
    names = list(dict.fromkeys(groups))
    index = torch.tensor([names.index(g) for g in groups], device=per_sample.device)
    return names, [per_sample[index == i].mean() for i in range(len(names))]
