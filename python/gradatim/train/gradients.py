"""Multi-task gradient combination over the tasks present in a batch.

Every method takes the per-task gradients ``g_1 .. g_K`` of the shared (LoRA) parameters,
flattened into the rows of a ``[K, P]`` tensor, and the task weights ``w`` (normalised to sum to
1), and returns one update direction ``[P]``:

- ``linear`` (default): ``g0 = sum_i w_i g_i``, linear scalarisation.
- ``pcgrad``: PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
  Algorithm 1): each weighted task gradient ``w_i g_i``, in a random order of the other tasks,
  loses its component along every ``w_j g_j`` it conflicts with (negative dot product);
  the projected gradients are summed.
- ``cagrad``: CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
  NeurIPS 2021, Eq. 3 and its dual): with ``g0`` the weighted mean and ``phi = c^2 |g0|^2``,
  ``p* = argmin_{p in simplex} g_p . g0 + sqrt(phi) |g_p|`` where ``g_p = sum_i p_i g_i``;
  ``d = g0 + sqrt(phi) g_p / |g_p|``, rescaled by ``1 / (1 + c^2)`` as the authors' code does
  (``rescale=1``); ``c = 0.5``.
- ``came_grad``: a *reconstruction* of CAME-Grad (Zhang et al., "The Double Dilemma in Multi-Task
  Radiology Report Generation: A Gradient Dynamics Analysis and Solution", 2026). The authors
  published only the interface (``CAME_Grad(base_optimizer, rho=0.5, kappa=1.5, nu=0.2)``,
  ``step([losses], task_weights=...)``) and withheld the optimizer core; the paper describes three
  steps, built here as follows (documented in ``docs/training.md``):

  1. *conflict-averse direction rectification*: the CAGrad direction ``d`` with radius
     ``c = rho`` around the weighted gradient ``g0`` (before CAGrad's rescaling);
  2. *magnitude-enhanced energy injection*: conflicting tasks cancel in ``g0``, shrinking the
     update (the paper's "diffusion term decay"); ``d`` keeps its direction and gets the
     magnitude the tasks would have had without cancelling, ``m = sum_i w_i |g_i|``, enhanced by
     ``kappa``: ``d' = kappa * m * d / |d|``;
  3. *adaptive gradient fusion*: ``g = (1 - nu) d' + nu g0``, keeping a share ``nu`` of the
     task-weighted (inductive-bias) direction.

Gradients are combined in float64 so the small solves are stable, and returned in the input dtype.
Everything here is a pure function of the tensors it is given: no parameter's ``.grad`` is read or
written (:class:`gradatim.train.multitask.MultiTaskOptimizer` does that, and for ``linear`` it
needs no per-task rows: one backward pass of the weighted loss gives ``g0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["Method", "METHODS", "combine", "cagrad_weights", "project_simplex"]

Method = Literal["linear", "pcgrad", "cagrad", "came_grad"]
METHODS: tuple[str, ...] = ("linear", "pcgrad", "cagrad", "came_grad")


def _weights(k: int, weights: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() != k:
        raise ValueError(f"task_weights: expected {k} weights, got {w.numel()}")
    if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"task_weights must be finite, non-negative, not all zero: {w.tolist()}")
    return w / w.sum()


def project_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection onto the probability simplex (Duchi et al., ICML 2008, Fig. 1)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    idx = torch.arange(1, v.numel() + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u - css / idx > 0).max())
    theta = css[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0)


def cagrad_weights(
    gram: torch.Tensor, w: torch.Tensor, c: float, iters: int = 2000
) -> torch.Tensor:
    """``p* = argmin_{p in simplex} p^T G w + c |g0| sqrt(p^T G p)`` with ``G = g g^T`` the Gram
    matrix of the task gradients and ``g0 = sum w_i g_i``: CAGrad's dual, a convex problem on
    ``K`` variables, solved by projected gradient descent with backtracking."""
    k = gram.shape[0]
    gw = gram @ w  # g_i . g0
    g0_norm = float(torch.sqrt(torch.clamp(w @ gw, min=0)))
    scale = c * g0_norm

    def objective(p: torch.Tensor) -> float:
        return float(p @ gw + scale * torch.sqrt(torch.clamp(p @ gram @ p, min=1e-30)))

    p = torch.full((k,), 1.0 / k, dtype=torch.float64)
    f = objective(p)
    step = 1.0 / max(float(torch.linalg.matrix_norm(gram, ord=2)), 1e-30)
    for _ in range(iters):
        norm = torch.sqrt(torch.clamp(p @ gram @ p, min=1e-30))
        grad = gw + scale * (gram @ p) / norm
        while True:
            q = project_simplex(p - step * grad)
            fq = objective(q)
            if fq <= f - 1e-12 * float(grad @ (p - q)) or step < 1e-20:
                break
            step *= 0.5
        if float(torch.abs(q - p).max()) < 1e-13:
            p = q
            break
        p, f = q, fq
        step *= 2.0
    return p


def _cagrad_direction(g: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad's ``d = g0 + c |g0| g_p / |g_p|`` (not rescaled)."""
    g0 = w @ g
    p = cagrad_weights(g @ g.T, w, c)
    gp = p @ g
    gp_norm = torch.linalg.vector_norm(gp)
    if float(gp_norm) < 1e-30:
        return g0
    return g0 + c * torch.linalg.vector_norm(g0) * gp / gp_norm


def combine(
    grads: torch.Tensor,
    task_weights: Sequence[float] | torch.Tensor | None = None,
    method: Method = "linear",
    *,
    c: float = 0.5,
    rho: float = 0.5,
    kappa: float = 1.5,
    nu: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One update direction from the ``[K, P]`` per-task gradients (see the module docstring).

    ``c`` is CAGrad's radius; ``rho``, ``kappa`` and ``nu`` are CAME-Grad's; ``generator`` orders
    PCGrad's projections. Returns a new tensor; ``grads`` is not modified and no ``.grad`` is
    touched."""
    if grads.ndim != 2 or grads.shape[0] == 0:
        raise ValueError(f"grads: expected a [tasks, parameters] tensor, got {tuple(grads.shape)}")
    g = grads.to(torch.float64)
    w = _weights(g.shape[0], task_weights)
    if method == "linear" or g.shape[0] == 1 and method != "came_grad":
        out = w @ g
    elif method == "pcgrad":
        out = _pcgrad(g * w[:, None], generator)
    elif method == "cagrad":
        out = _cagrad_direction(g, w, c) / (1 + c * c)
    elif method == "came_grad":
        out = _came_grad(g, w, rho, kappa, nu)
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    return out.to(grads.dtype)


def _pcgrad(g: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    k = g.shape[0]
    projected = g.clone()
    for i in range(k):
        others = [j for j in torch.randperm(k, generator=generator).tolist() if j != i]
        for j in others:
            dot = projected[i] @ g[j]
            if dot < 0:
                projected[i] -= dot / torch.clamp(g[j] @ g[j], min=1e-30) * g[j]
    return projected.sum(0)


def _came_grad(
    g: torch.Tensor, w: torch.Tensor, rho: float, kappa: float, nu: float
) -> torch.Tensor:
    g0 = w @ g
    d = _cagrad_direction(g, w, rho)
    d_norm = torch.linalg.vector_norm(d)
    if float(d_norm) < 1e-30:
        return g0
    restored = w @ torch.linalg.vector_norm(g, dim=1)
    return (1 - nu) * kappa * restored * d / d_norm + nu * g0
