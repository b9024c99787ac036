"""Multi-task gradient combination over the tasks present in a batch.

Every method takes the per-task gradients ``g_1 .. g_K`` of the shared (LoRA) parameters,
flattened into the rows of a ``[K, P]`` tensor, and the task weights ``w`` of the linear objective
``L = sum_i w_i L_i``, and returns one update direction ``[P]``. The weights keep their scale by
default (``normalize_weights=False``): the CAME-Grad authors call ``step([loss_lm, loss_cls],
task_weights=[1.0, cls_weight])`` for the baseline ``loss_lm + cls_weight * loss_cls``
(github vpsg-research/CAME-Grad, ``modules/trainer.py`` at 79059e3), so ``g0 = sum_i w_i g_i`` is
that baseline's gradient. ``normalize_weights=True`` divides ``w`` by its sum first (the training
loop's weights are the tasks' sample counts and its objective the batch's mean loss). Without
weights every task weighs 1 (``1 / K`` normalised). The methods, their conventions named where a
source leaves a choice (:func:`describe` returns them as a record for logs and checkpoints):

- ``linear`` (default): ``g0 = sum_i w_i g_i``, linear scalarisation.
- ``pcgrad``: PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
  Algorithm 1) on the weighted task gradients ``w_i g_i``: each, in a random order of the *other*
  tasks, loses its component along every ``w_j g_j`` it conflicts with (negative dot product);
  the projected gradients are **summed**, as Algorithm 1 and LibMTL's ``PCGrad``
  (median-research-group/LibMTL, ``LibMTL/weighting/PCGrad.py`` at 4336804) do.
  WeiChengTseng/Pytorch-PCGrad (``pcgrad.py`` at e987ac6) takes their **mean** (its ``"sum"``
  reduction is unreachable: ``if self._reduction:`` is true for ``"sum"`` too), i.e. ``1 / K`` of
  this with equal weights: pass ``w_i = 1 / K`` for that scale.
- ``cagrad``: CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
  NeurIPS 2021, Eq. 3 and its dual) on the weighted losses ``w_i L_i`` as LibMTL's ``CAGrad``
  (``LibMTL/weighting/CAGrad.py`` at 4336804) computes it, **times K**: with ``h_i = w_i g_i``
  and ``g0 = sum_i h_i``, ``p`` ranges over the simplex of the ``h_i``,
  ``p* = argmin_p g_p . g0 + c |g0| |g_p|`` with ``g_p = sum_i p_i h_i``;
  ``d = g0 + c |g0| g_p / |g_p|``, rescaled by ``1 / (1 + c^2)`` (``rescale=1``); ``c = 0.5``.
  LibMTL (and the paper) centre on the task *average* ``g0 / K``, which gives the same direction
  and ``1 / K`` of this update; gradatim keeps every method at the scale of the objective's
  gradient ``g0`` (so a step's scale does not change with the number of tasks in its batch);
  weights ``w_i / K`` give LibMTL's update on the losses ``w_i L_i`` exactly.
  (The other reading, ``g0 = sum_i w_i g_i`` for normalised ``w`` with ``p`` over the
  *unweighted* ``g_i``, gives the same update for equal weights but not for unequal ones: 8 % of
  the update's norm on the pair ``(1, 0), (-1, 1)`` weighted 0.6 / 0.4.)
- ``came_grad``: a *reconstruction* of CAME-Grad (Zhang et al., "The Double Dilemma in Multi-Task
  Radiology Report Generation: A Gradient Dynamics Analysis and Solution", ICML 2026). The
  authors published only the interface (``CAME_Grad(base_optimizer, rho=0.5, kappa=1.5,
  nu=0.2)``, ``step([losses], task_weights=...)``) and withheld the optimizer core; their
  abstract names three steps. Every choice below is gradatim's guess, listed in
  :data:`CAME_GRAD_GUESSES` (recorded with every run) and marked ``GUESS[key]`` where it is made:

  1. *conflict-averse direction rectification*: the direction of ``cagrad``'s ``d`` with radius
     ``c = rho`` (``GUESS["direction"]``);
  2. *magnitude-enhanced energy injection*: ``d' = kappa * m * d / |d|`` with
     ``m = sum_i w_i |g_i|``, the magnitude the tasks would have without cancelling
     (``GUESS["magnitude"]``);
  3. *adaptive gradient fusion*: ``g = (1 - nu) d' + nu g0`` with a **constant** ``nu`` where the
     paper says adaptive (``GUESS["fusion_weight"]``) and ``g0 = sum_i w_i g_i`` taken as the
     "task-specific inductive bias" (``GUESS["inductive_bias"]``); the weights keep the authors'
     scale (``GUESS["task_weights"]``).

With one task (``K = 1``) every method but ``came_grad`` returns ``w_1 g_1``.
Gradients are combined in float64 so the small solves are stable, and returned in the input dtype.
Everything here is a pure function of the tensors it is given: no parameter's ``.grad`` is read or
written (:class:`gradatim.train.multitask.MultiTaskOptimizer` does that, and for ``linear`` it
needs no per-task rows: one backward pass of the weighted loss gives ``g0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

__all__ = [
    "Method",
    "METHODS",
    "CAME_GRAD_GUESSES",
    "combine",
    "describe",
    "cagrad_weights",
    "project_simplex",
]

Method = Literal["linear", "pcgrad", "cagrad", "came_grad"]
METHODS: tuple[str, ...] = ("linear", "pcgrad", "cagrad", "came_grad")

#: Each choice of gradatim's CAME-Grad reconstruction that no published source fixes (the
#: abstract and the authors' interface, github vpsg-research/CAME-Grad at 79059e3). The same text
#: goes into ``describe("came_grad")``, hence into the training log and the checkpoints.
CAME_GRAD_GUESSES: dict[str, str] = {
    "direction": "step 1 (direction rectification) is the direction of CAGrad's d with radius "
    "c = rho for the weighted task gradients w_i g_i (LibMTL's CAGrad on the losses w_i L_i, "
    "before its rescaling)",
    "magnitude": "step 2 (energy injection) sets |d'| = kappa * sum_i w_i |g_i|: the magnitude "
    "the weighted task gradients would have without cancelling, enhanced by kappa",
    "fusion_weight": "step 3 (fusion) uses a constant nu; the paper calls the fusion adaptive "
    "but its rule is unpublished",
    "inductive_bias": "step 3 fuses with g0 = sum_i w_i g_i, the linear objective's gradient, "
    "taken as the paper's 'task-specific inductive bias': g = (1 - nu) d' + nu g0",
    "task_weights": "task weights keep their scale (the authors' step([loss_lm, loss_cls], "
    "task_weights=[1, cls_weight]) for the baseline loss_lm + cls_weight * loss_cls), "
    "unless normalize_weights=True",
}


def _weights(
    k: int, weights: Sequence[float] | torch.Tensor | None, normalize: bool
) -> torch.Tensor:
    if weights is None:
        return torch.full((k,), 1.0 / k if normalize else 1.0, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if w.numel() != k:
        raise ValueError(f"task_weights: expected {k} weights, got {w.numel()}")
    if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"task_weights must be finite, non-negative, not all zero: {w.tolist()}")
    return w / w.sum() if normalize else w


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


def _cagrad_direction(h: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad's ``d = g0 + c |g0| g_p / |g_p|`` (not rescaled) for the task gradients ``h``
    (the weighted ones ``w_i g_i``): ``g0`` is their sum and ``g_p`` a point of their convex
    hull; K times LibMTL's ``CAGrad.backward`` (``LibMTL/weighting/CAGrad.py`` at 4336804), whose
    ``g0`` is their mean (the dual's minimiser does not depend on that factor)."""
    k = h.shape[0]
    g0 = h.sum(0)
    p = cagrad_weights(h @ h.T, torch.ones(k, dtype=h.dtype), c)
    gp = p @ h
    gp_norm = torch.linalg.vector_norm(gp)
    if float(gp_norm) < 1e-30:
        return g0
    return g0 + c * torch.linalg.vector_norm(g0) * gp / gp_norm


def combine(
    grads: torch.Tensor,
    task_weights: Sequence[float] | torch.Tensor | None = None,
    method: Method = "linear",
    *,
    normalize_weights: bool = False,
    c: float = 0.5,
    rho: float = 0.5,
    kappa: float = 1.5,
    nu: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One update direction from the ``[K, P]`` per-task gradients (see the module docstring).

    ``task_weights``: the ``w_i`` of the objective ``sum_i w_i L_i``, used at their scale unless
    ``normalize_weights`` (default: 1 each). ``c`` is CAGrad's radius; ``rho``, ``kappa`` and
    ``nu`` are CAME-Grad's; ``generator`` orders PCGrad's projections. Returns a new tensor;
    ``grads`` is not modified and no ``.grad`` is touched."""
    if grads.ndim != 2 or grads.shape[0] == 0:
        raise ValueError(f"grads: expected a [tasks, parameters] tensor, got {tuple(grads.shape)}")
    g = grads.to(torch.float64)
    w = _weights(g.shape[0], task_weights, normalize_weights)
    if method == "linear" or g.shape[0] == 1 and method != "came_grad":
        out = w @ g
    elif method == "pcgrad":
        out = _pcgrad(g * w[:, None], generator)
    elif method == "cagrad":
        out = _cagrad_direction(g * w[:, None], c) / (1 + c * c)
    elif method == "came_grad":
        out = _came_grad(g, w, rho, kappa, nu)
    else:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    return out.to(grads.dtype)


def _pcgrad(g: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Yu et al. 2020, Algorithm 1: ``g_i`` against the other tasks in a random order, then the
    sum of the projected gradients (LibMTL's ``pc_grads.sum(0)``)."""
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
    """gradatim's reconstruction; each ``GUESS[key]`` marks where the guess
    ``CAME_GRAD_GUESSES[key]`` is made."""
    h = g * w[:, None]  # GUESS["task_weights"]: w at the authors' scale unless normalised
    g0 = h.sum(0)  # GUESS["inductive_bias"]: the linear objective's gradient sum_i w_i g_i
    d = _cagrad_direction(h, rho)  # GUESS["direction"]: CAGrad's, radius rho
    d_norm = torch.linalg.vector_norm(d)
    if float(d_norm) < 1e-30:
        return g0
    restored = torch.linalg.vector_norm(h, dim=1).sum()  # GUESS["magnitude"]: sum_i w_i |g_i|
    # GUESS["fusion_weight"]: a constant nu (the paper's fusion is adaptive, its rule unpublished)
    return (1 - nu) * kappa * restored * d / d_norm + nu * g0


def describe(method: str, *, normalize_weights: bool = False, **options: Any) -> dict[str, Any]:
    """What a run records about its gradient method (the training log and the checkpoints carry
    it as ``gradient_method``): the name, the options in force (defaults filled in), how the task
    weights are scaled, the conventions taken where the sources differ and, for ``came_grad``,
    that it is a reconstruction and every guess it makes (:data:`CAME_GRAD_GUESSES`)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    defaults: dict[str, dict[str, float]] = {
        "linear": {},
        "pcgrad": {},
        "cagrad": {"c": 0.5},
        "came_grad": {"rho": 0.5, "kappa": 1.5, "nu": 0.2},
    }
    unknown = set(options) - set(defaults[method])
    if unknown:
        raise ValueError(f"{method}: unknown options {sorted(unknown)}")
    used = {k: float(options.get(k, v)) for k, v in defaults[method].items()}
    weights = (
        "normalized: w_i / sum_j w_j (the training loop: each task's share of the step's samples)"
        if normalize_weights
        else "unnormalized: the objective sum_i w_i L_i at the weights' own scale"
    )
    conventions: dict[str, str] = {
        "linear": {"rule": "g0 = sum_i w_i g_i"},
        "pcgrad": {
            "reduction": "sum of the projected weighted gradients w_i g_i (Yu et al. 2020 "
            "Algorithm 1; LibMTL PCGrad); Pytorch-PCGrad takes their mean",
            "order": "each task against the other tasks in a random order, drawn from the step",
        },
        "cagrad": {
            "tasks": "the weighted losses w_i L_i, as LibMTL's CAGrad: p over the simplex of "
            "the w_i g_i",
            "scale": "centred on g0 = sum_i w_i g_i: K times LibMTL's update, which centres on "
            "the mean of the w_i g_i",
            "rescale": "1 / (1 + c^2) (CAGrad's and LibMTL's rescale=1)",
        },
        "came_grad": {"rule": "g = (1 - nu) kappa (sum_i w_i |g_i|) d / |d| + nu g0"},
    }[method]
    conventions["single_task"] = (
        "one task: kappa-scaled fusion as for K tasks"
        if method == "came_grad"
        else "one task: w_1 g_1"
    )
    record: dict[str, Any] = {
        "name": method,
        "options": used,
        "task_weights": weights,
        "conventions": conventions,
        "reconstruction": method == "came_grad",
    }
    if method == "came_grad":
        record["source"] = (
            "Zhang et al., ICML 2026: abstract and published interface only; the optimizer "
            "core is withheld (github vpsg-research/CAME-Grad)"
        )
        record["guesses"] = dict(CAME_GRAD_GUESSES)
    return record
