"""The language-model loss per sample, so a batch's samples can be grouped by task (one loss per
task for the multi-task gradient combination, per-stage and per-source losses for MedCLM's
scheduler)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["per_sample_loss", "per_sample_role_loss", "group_losses"]


def _token_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross entropy per position (``-100`` labels give 0) and the shifted labels."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tokens = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view(shift_labels.shape)
    return tokens, shift_labels


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross entropy over each sample's labelled tokens (``-100`` ignored):
    ``[B, T, V]`` logits and ``[B, T]`` labels -> ``[B]``."""
    tokens, shift_labels = _token_losses(logits, labels)
    counted = (shift_labels != -100).sum(1).clamp(min=1)
    return tokens.sum(1) / counted


#: MedCLM (paper 001): 0.8 x answer loss + 0.2 x rationale loss in the Easy and Medium stages.
ANSWER_WEIGHT, RATIONALE_WEIGHT = 0.8, 0.2


def per_sample_role_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    roles: torch.Tensor,
    answer_weight: float = ANSWER_WEIGHT,
    rationale_weight: float = RATIONALE_WEIGHT,
) -> torch.Tensor:
    """Per sample: ``answer_weight x mean CE(answer tokens) + rationale_weight x mean
    CE(rationale tokens)`` over the roles present, the weights renormalised to sum to 1 (so the
    Hard stage, answer only, is the plain answer loss), and the plain mean for targets without
    parts. ``roles`` is ``encode_batch``'s ``label_roles``. MedCLM's released losses
    (``lambda_ans`` 0.8, ``lambda_cot`` 0.2) take the token mean over the whole batch; gradatim
    takes it per sample, so that samples can be grouped by task for the gradient combination."""
    tokens, shift_labels = _token_losses(logits, labels)
    shift_roles = roles[:, 1:]
    counted = shift_labels != -100
    total = torch.zeros(tokens.shape[0], device=tokens.device)
    weight = torch.zeros_like(total)
    for role, w in ((1, 1.0), (2, answer_weight), (3, rationale_weight)):
        sel = counted & (shift_roles == role)
        n = sel.sum(1)
        mean = (tokens * sel).sum(1) / n.clamp(min=1)
        present = (n > 0).float()
        total = total + w * present * mean
        weight = weight + w * present
    return total / weight.clamp(min=1e-12)


def group_losses(
    per_sample: torch.Tensor, groups: Sequence[str]
) -> tuple[list[str], list[torch.Tensor]]:
    """The mean loss of each group present in the batch, in order of first appearance."""
    names = list(dict.fromkeys(groups))
    index = torch.tensor([names.index(g) for g in groups], device=per_sample.device)
    return names, [per_sample[index == i].mean() for i in range(len(names))]
