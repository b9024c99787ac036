"""An optimizer step over several task losses: per-task gradients of the shared (LoRA) parameters
combined by :func:`gradatim.train.gradients.combine`; parameters outside the combination (heads in
peft's ``modules_to_save``) take the plain weighted sum, as linear scalarisation would.

Gradients are accumulated over micro-batches (``backward``) and combined once per step
(``apply``), so gradient accumulation and data-parallel ranks combine the gradients of the whole
step, not of each piece. The task weights of a ``backward`` call keep their scale by default: the
step's objective is the mean over its micro-batches (and ranks) of ``sum_i w_i L_i``, so one
``step([loss_lm, loss_cls], task_weights=[1, 4])`` follows the gradient of
``loss_lm + 4 * loss_cls``, as the CAME-Grad authors' baseline does. With
``normalize_weights=True`` (the training loop, whose weights are the tasks' sample counts) the
objective is the weighted mean ``sum w_i L_i / sum w_i`` over the step. ``linear`` needs no
per-task gradients: ``backward`` runs one backward pass of the weighted sum of the task losses into
``.grad`` and ``apply`` divides by the number of micro-batches (or by the step's total weight).
The other methods run one backward pass per task and keep each task's weighted gradient of the
shared parameters in a buffer. Under ``torch.distributed`` the summed gradients (linear) or the
per-task sums (the others, over a fixed task list, so every rank sends the same shapes), the
weights and the micro-batch counts are all-reduced before combining, and every rank computes the
same update.

:class:`CAME_Grad` is the interface the CAME-Grad authors published
(``CAME_Grad(base_optimizer, rho=0.5, kappa=1.5, nu=0.2)``, ``step([losses], task_weights=...)``)
over gradatim's labelled reconstruction of its core (see :mod:`gradatim.train.gradients`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from gradatim.train.gradients import Method, combine, describe

__all__ = ["MultiTaskOptimizer", "CAME_Grad"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class MultiTaskOptimizer:
    """Combine per-task gradients, then step the base optimizer.

    Gradients over a step: ``backward`` accumulates (into ``.grad`` for ``linear`` and for the
    plain parameters, into per-task buffers for the shared parameters otherwise); ``apply``
    consumes what was accumulated and adds the step's combined gradient to ``.grad``; the base
    optimizer's ``step`` reads ``.grad``; ``zero_grad`` clears ``.grad`` and the buffers. Any
    ``.grad`` already present when a step's first ``backward`` runs is set aside and added back by
    ``apply`` (it is neither divided by the step's weight nor all-reduced).

    Args:
        base_optimizer: any ``torch.optim.Optimizer`` over the trainable parameters.
        shared: the parameters whose per-task gradients are combined (default: every parameter of
            the base optimizer); the base optimizer's other parameters get the weighted sum.
        method: ``linear`` | ``pcgrad`` | ``cagrad`` | ``came_grad``; ``options`` are passed to
            :func:`~gradatim.train.gradients.combine` (``c``, ``rho``, ``kappa``, ``nu``).
        tasks: every task name that can occur (needed under ``torch.distributed`` by the per-task
            methods: ranks exchange per-task sums in this order).
        normalize_weights: ``False`` (default): the task weights scale the objective
            ``sum_i w_i L_i`` (the CAME-Grad authors' ``task_weights``); ``True``: they are
            divided by their sum over the step (sample counts: the step's mean loss).

    ``record`` is :func:`~gradatim.train.gradients.describe`'s account of the method (options,
    weight scale, conventions, and for ``came_grad`` each guess of the reconstruction); the
    training loop writes it to its log and checkpoints.
    """

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        shared: Iterable[torch.nn.Parameter] | None = None,
        method: Method = "linear",
        tasks: Sequence[str] | None = None,
        normalize_weights: bool = False,
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
        self.normalize_weights = bool(normalize_weights)
        self.record = describe(method, normalize_weights=self.normalize_weights, **options)
        self.tasks = list(tasks) if tasks is not None else None
        self.generator = torch.Generator().manual_seed(0)  # PCGrad's projection order
        self._rows: dict[str, torch.Tensor] = {}  # per-task methods: weighted gradient sums
        self._counts: dict[str, float] = {}  # per-task weight sums
        self._total = 0.0  # the step's weight sum (every method)
        self._passes = 0  # the step's backward calls (micro-batches)
        self._pending = False  # a backward since the last apply / zero_grad
        self._held: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # .grad from before

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the base optimizer's ``.grad`` and every gradient accumulated for this step."""
        self.base.zero_grad(set_to_none=set_to_none)
        self._clear()

    def _clear(self) -> None:
        self._rows.clear()
        self._counts.clear()
        self._total = 0.0
        self._passes = 0
        self._pending = False
        self._held = []

    def state_dict(self) -> dict[str, Any]:
        return self.base.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)

    def _flat(self, grads: Sequence[torch.Tensor | None]) -> torch.Tensor:
        return torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1).to(torch.float32)
                for p, g in zip(self.shared, grads, strict=True)
            ]
        )

    def backward(
        self,
        losses: Sequence[torch.Tensor],
        task_weights: Sequence[float] | None = None,
        tasks: Sequence[str] | None = None,
    ) -> None:
        """Accumulate the gradients of one micro-batch's task losses. ``task_weights`` (default
        1 each) are the tasks' weights ``w_i`` in the objective ``sum_i w_i L_i`` (with
        ``normalize_weights``, e.g. their sample counts); ``tasks`` names the losses (default:
        their positions).

        ``linear``: one backward pass of ``sum_i w_i L_i``, accumulated into the parameters'
        ``.grad`` (still to be divided in ``apply`` by the number of micro-batches, or by the
        step's total weight). Other methods: one backward pass per task; the shared parameters'
        gradients go to per-task buffers (``.grad`` untouched), the plain parameters' weighted
        gradients are accumulated into ``.grad``. Either way the losses' graph is freed, as by
        ``loss.backward()``."""
        if not losses:
            raise ValueError("no task losses")
        weights = [1.0] * len(losses) if task_weights is None else [float(w) for w in task_weights]
        names = [str(i) for i in range(len(losses))] if tasks is None else list(tasks)
        if len(weights) != len(losses) or len(names) != len(losses):
            raise ValueError("losses, task_weights and tasks must have the same length")
        if not all(math.isfinite(w) and w >= 0 for w in weights):
            raise ValueError(f"task_weights must be finite and non-negative: {weights}")
        params = [*self.shared, *self.plain]
        if not self._pending:  # the step's first backward: set earlier gradients aside
            self._held = [(p, p.grad) for p in params if p.grad is not None]
            for p, _ in self._held:
                p.grad = None
            self._pending = True
        self._total += sum(weights)
        self._passes += 1
        if self.method == "linear":
            weighted = losses[0] * weights[0]
            for loss, w in zip(losses[1:], weights[1:], strict=True):
                weighted = weighted + loss * w
            torch.autograd.backward(weighted, inputs=params)
            return
        n = len(self.shared)
        for i, (name, loss, w) in enumerate(zip(names, losses, weights, strict=True)):
            grads = torch.autograd.grad(
                loss, params, retain_graph=i < len(losses) - 1, allow_unused=True
            )
            row = self._flat(grads[:n]) * w
            self._rows[name] = row if name not in self._rows else self._rows[name] + row
            self._counts[name] = self._counts.get(name, 0.0) + w
            for p, g in zip(self.plain, grads[n:], strict=True):
                if g is not None:
                    p.grad = g * w if p.grad is None else p.grad.add_(g, alpha=w)

    def _reduced(self) -> tuple[list[str], torch.Tensor, torch.Tensor, float, int]:
        """Task names, summed rows, summed weights (all ranks), the total weight and the number
        of micro-batches (all ranks); tasks of zero weight are left out."""
        size = sum(p.numel() for p in self.shared)
        if _distributed():
            if self.tasks is None:
                raise ValueError("under torch.distributed, MultiTaskOptimizer needs tasks=[...]")
            unknown = set(self._rows) - set(self.tasks)
            if unknown:
                raise ValueError(f"tasks {sorted(unknown)} are not in tasks={self.tasks}")
            device = next(iter(self.shared)).device
            rows = torch.zeros((len(self.tasks), size), device=device)
            counts = torch.zeros(len(self.tasks) + 1, dtype=torch.float64, device=device)
            for i, name in enumerate(self.tasks):
                if name in self._rows:
                    rows[i] = self._rows[name]
                    counts[i] = self._counts[name]
            counts[-1] = self._passes
            dist.all_reduce(rows)
            dist.all_reduce(counts)
            for p in self.plain:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
            passes = int(round(float(counts[-1])))
            counts = counts[:-1]
            keep = counts > 0
            names = [n for n, k in zip(self.tasks, keep.tolist(), strict=True) if k]
            return names, rows[keep], counts[keep], float(counts.sum()), passes
        names = [n for n in self._rows if self._counts[n] > 0]
        if self.tasks is not None:  # the ranks' order, so one process combines as they do
            order = {n: i for i, n in enumerate(self.tasks)}
            names.sort(key=lambda n: order.get(n, len(order)))
        if not names:
            raise ValueError("task_weights must not be all zero over the step")
        rows = torch.stack([self._rows[n] for n in names])
        counts = torch.tensor([self._counts[n] for n in names], dtype=torch.float64)
        return names, rows, counts, float(counts.sum()), self._passes

    def _apply_linear(self) -> None:
        """``.grad`` holds ``sum_i w_i grad L_i`` over the step (and, under distributed, the
        ranks); divide it by the number of micro-batches (by the total weight when normalised)."""
        params = [*self.shared, *self.plain]
        total, passes = self._total, float(self._passes)
        if _distributed():
            device = next(iter(params)).device
            dtype = torch.float32
            for p in params:
                dtype = torch.promote_types(dtype, p.dtype)
            flat = torch.cat(
                [
                    (torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1).to(dtype)
                    for p in params
                ]
            )
            weight = torch.tensor([total, passes], dtype=torch.float64, device=device)
            dist.all_reduce(flat)
            dist.all_reduce(weight)
            total, passes = float(weight[0]), float(weight[1])
            offset = 0
            for p in params:
                p.grad = flat[offset : offset + p.numel()].view_as(p).to(p.dtype)
                offset += p.numel()
        if not total > 0:
            raise ValueError(f"task_weights must not be all zero (the step's total is {total})")
        for p in self.shared:  # a shared parameter no loss reached gets a zero gradient
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        divisor = total if self.normalize_weights else passes
        for p in params:
            if p.grad is not None:
                p.grad.div_(divisor)

    def apply(self, step: int | None = None) -> None:
        """Consume the step's accumulated gradients: combine them and leave the result in
        ``.grad`` (added to any ``.grad`` from before the step's first ``backward``); the
        per-task buffers are cleared. With ``step``, PCGrad's random projection order is drawn
        from the step alone, so a resumed run repeats it without any saved generator state."""
        if step is not None:
            self.generator.manual_seed((int(step) * 0x9E3779B97F4A7C15 + 0x50434752) % (1 << 63))
        if not self._pending and not (dist.is_available() and dist.is_initialized()):
            raise ValueError("apply(): no task losses since the last step")
        if self.method == "linear":
            self._apply_linear()
        else:
            self._apply_combined()
        for p, g in self._held:
            p.grad = g if p.grad is None else p.grad.add_(g)
        self._clear()

    def _apply_combined(self) -> None:
        names, rows, counts, total, passes = self._reduced()
        means = rows / counts.to(rows.dtype)[:, None]  # each task's (weighted) mean gradient
        # the step's task weights: mean over micro-batches, or shares of the total weight
        divisor = total if self.normalize_weights else float(passes)
        weights = counts / divisor
        direction = combine(means, weights, self.method, generator=self.generator, **self.options)
        offset = 0
        for p in self.shared:
            n = p.numel()
            g = direction[offset : offset + n].view_as(p).to(p.dtype)
            p.grad = g if p.grad is None else p.grad + g
            offset += n
        for p in self.plain:
            if p.grad is not None:
                p.grad /= divisor

    def step(
        self,
        losses: Sequence[torch.Tensor] | None = None,
        task_weights: Sequence[float] | None = None,
    ) -> None:
        """With ``losses`` (the all-in-one form): ``backward(losses, task_weights)``, ``apply``,
        the base optimizer's step, then clear what the step consumed (every ``.grad`` of the base
        optimizer's parameters is set to ``None`` and the buffers emptied), so repeated calls
        without ``zero_grad`` give the same update as with it. Without ``losses``: ``apply`` and
        the base optimizer's step, leaving ``.grad`` in place (``backward`` was called before)."""
        if losses is None:
            self.apply()
            self.base.step()
            return
        self.backward(losses, task_weights)
        self.apply()
        self.base.step()
        self.zero_grad(set_to_none=True)


class CAME_Grad(MultiTaskOptimizer):  # noqa: N801 - the authors' published name
    """CAME-Grad's published interface over gradatim's reconstruction of its three steps; the
    guesses it makes are in ``self.record["guesses"]``. ``step(losses, task_weights=[1, 4])``
    treats the weights as the authors' trainer does: the scale of ``loss_lm + 4 * loss_cls``."""

    def __init__(
        self,
        base_optimizer: torch.optim.Optimizer,
        rho: float = 0.5,
        kappa: float = 1.5,
        nu: float = 0.2,
        shared: Iterable[torch.nn.Parameter] | None = None,
        tasks: Sequence[str] | None = None,
        normalize_weights: bool = False,
    ) -> None:
        super().__init__(
            base_optimizer,
            shared,
            "came_grad",
            tasks,
            normalize_weights,
            rho=rho,
            kappa=kappa,
            nu=nu,
        )
