"""An optimizer step over several task losses: per-task gradients of the shared (LoRA) parameters
combined by :func:`gradatim.train.gradients.combine`; parameters outside the combination (heads in
peft's ``modules_to_save``) take the plain weighted sum, as linear scalarisation would.

:class:`CAME_Grad` is the interface the CAME-Grad authors published
(``CAME_Grad(base_optimizer, rho=0.5, kappa=1.5, nu=0.2)``, ``step([losses], task_weights=...)``)
over gradatim's labelled reconstruction of its core (see :mod:`gradatim.train.gradients`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from gradatim.train.gradients import Method, combine

__all__ = ["MultiTaskOptimizer", "CAME_Grad"]


class MultiTaskOptimizer:
    """``step(losses, task_weights)``: set ``.grad`` of every parameter from the task losses, then
    step the base optimizer.

    Args:
        base_optimizer: any ``torch.optim.Optimizer`` over the trainable parameters.
        shared: the parameters whose per-task gradients are combined (default: every parameter of
            the base optimizer); the base optimizer's other parameters get the weighted sum.
        method: ``linear`` | ``pcgrad`` | ``cagrad`` | ``came_grad``; ``options`` are passed to
            :func:`~gradatim.train.gradients.combine` (``c``, ``rho``, ``kappa``, ``nu``).
    """

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        shared: Iterable[torch.nn.Parameter] | None = None,
        method: Method = "linear",
        **options: Any,
    ) -> None:
        self.base = base_optimizer
        params = [p for group in base_optimizer.param_groups for p in group["params"]]
        params = [p for p in params if p.requires_grad]
        self.shared = list(params if shared is None else shared)
        ids = {id(p) for p in self.shared}
        self.plain = [p for p in params if id(p) not in ids]
        self.method = method
        self.options = options
        self.generator = torch.Generator().manual_seed(0)  # PCGrad's projection order

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)

    def backward(
        self, losses: Sequence[torch.Tensor], task_weights: Sequence[float] | None = None
    ) -> None:
        """Accumulate the combined gradient into ``.grad`` (gradient accumulation friendly)."""
        if not losses:
            raise ValueError("step: no task losses")
        k = len(losses)
        w = torch.full((k,), 1.0 / k) if task_weights is None else torch.as_tensor(task_weights)
        w = w.to(torch.float64) / w.to(torch.float64).sum()
        rows = []
        for i, loss in enumerate(losses):
            grads = torch.autograd.grad(loss, self.shared, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).reshape(-1).float()
                        for p, g in zip(self.shared, grads, strict=True)
                    ]
                )
            )
            if self.plain:
                plain = torch.autograd.grad(
                    loss * float(w[i]), self.plain, retain_graph=True, allow_unused=True
                )
                for p, g in zip(self.plain, plain, strict=True):
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
        direction = combine(
            torch.stack(rows), w, self.method, generator=self.generator, **self.options
        )
        offset = 0
        for p in self.shared:
            n = p.numel()
            g = direction[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = g if p.grad is None else p.grad + g
            offset += n

    def step(
        self, losses: Sequence[torch.Tensor], task_weights: Sequence[float] | None = None
    ) -> None:
        """Combine the task losses' gradients into ``.grad`` and step the base optimizer."""
        self.backward(losses, task_weights)
        self.base.step()


class CAME_Grad(MultiTaskOptimizer):  # noqa: N801 - the authors' published name
    """CAME-Grad's published interface over gradatim's reconstruction of its three steps."""

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        rho: float = 0.5,
        kappa: float = 1.5,
        nu: float = 0.2,
        shared: Iterable[torch.nn.Parameter] | None = None,
    ) -> None:
        super().__init__(base_optimizer, shared, "came_grad", rho=rho, kappa=kappa, nu=nu)
