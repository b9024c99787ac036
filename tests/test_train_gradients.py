"""Multi-task gradient combination against the published formulas, on hand-made gradient pairs
(conflicting, aligned, orthogonal): PCGrad by hand, CAGrad against a brute-force solve of its dual
(grid for two tasks, SciPy's SLSQP for three), CAME-Grad against its three documented steps
written out in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim.train import CAME_Grad, MultiTaskOptimizer, combine
from gradatim.train.gradients import cagrad_weights, project_simplex

CONFLICTING = [[1.0, 0.0], [-1.0, 1.0]]
ALIGNED = [[1.0, 2.0], [2.0, 4.0]]
ORTHOGONAL = [[3.0, 0.0], [0.0, 1.0]]
PAIRS = {"conflicting": CONFLICTING, "aligned": ALIGNED, "orthogonal": ORTHOGONAL}


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("name", list(PAIRS))
def test_linear_is_the_weighted_sum(name: str) -> None:
    g = t(PAIRS[name])
    out = combine(g, [0.25, 0.75], "linear")
    np.testing.assert_allclose(out.numpy(), 0.25 * g[0].numpy() + 0.75 * g[1].numpy())


def test_pcgrad_by_hand() -> None:
    # conflicting: g1.g2 = -1. g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    out = combine(t(CONFLICTING), [1, 1], "pcgrad")  # weights 1/2 each: scale the sum by 1/2
    np.testing.assert_allclose(out.numpy(), 0.5 * np.array([0.5 + 0.0, 0.5 + 1.0]))
    for name in ("aligned", "orthogonal"):  # no conflict: the plain (weighted) sum
        g = t(PAIRS[name])
        np.testing.assert_allclose(combine(g, None, "pcgrad").numpy(), 0.5 * g.sum(0).numpy())


def cagrad_reference(g: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
    """CAGrad (Liu et al. 2021) with its dual solved by brute force, then rescaled by 1/(1+c^2)."""
    g0 = w @ g
    phi_sqrt = c * np.linalg.norm(g0)
    if len(g) == 2:
        ts = np.linspace(0, 1, 200001)
        ps = np.stack([ts, 1 - ts], 1)
    else:
        cons = {"type": "eq", "fun": lambda p: p.sum() - 1}

        def f(p: np.ndarray) -> float:
            return float(p @ g @ g0 + phi_sqrt * np.linalg.norm(p @ g))

        starts = [np.full(len(g), 1 / len(g))] + list(np.eye(len(g)))
        best = min(
            (
                scipy.optimize.minimize(
                    f, s, bounds=[(0, 1)] * len(g), constraints=cons, method="SLSQP", tol=1e-14
                )
                for s in starts
            ),
            key=lambda r: r.fun,
        )
        ps = best.x[None]
    gp = ps @ g
    vals = gp @ g0 + phi_sqrt * np.linalg.norm(gp, axis=1)
    p = ps[np.argmin(vals)]
    gp = p @ g
    d = g0 + phi_sqrt * gp / np.linalg.norm(gp)
    return d / (1 + c * c)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.8, 0.2]])
def test_cagrad_equals_brute_force_dual(name: str, weights: list[float]) -> None:
    g = np.array(PAIRS[name])
    out = combine(t(PAIRS[name]), weights, "cagrad", c=0.5).numpy()
    np.testing.assert_allclose(out, cagrad_reference(g, np.array(weights), 0.5), atol=2e-5)


def test_cagrad_three_tasks_against_slsqp() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = rng.normal(size=(3, 6))
        w = rng.dirichlet([1, 1, 1])
        out = combine(torch.tensor(g), w, "cagrad", c=0.5).numpy()
        np.testing.assert_allclose(out, cagrad_reference(g, w, 0.5), atol=1e-6)


def test_cagrad_improves_the_worst_task_on_a_conflict() -> None:
    """CAGrad's purpose: on a conflict the worst task's first-order decrease is larger than
    with the average gradient."""
    g = t(CONFLICTING)
    avg = combine(g, None, "linear")
    ca = combine(g, None, "cagrad")
    worst = lambda d: float((g @ d).min())  # noqa: E731
    assert worst(ca / ca.norm()) > worst(avg / avg.norm())


def came_grad_reference(
    g: np.ndarray, w: np.ndarray, rho: float, kappa: float, nu: float
) -> np.ndarray:
    """The three documented steps: CAGrad direction (radius rho, unscaled), magnitude restored to
    sum_i w_i |g_i| and enhanced by kappa, fused with the weighted gradient by nu."""
    g0 = w @ g
    d = cagrad_reference(g, w, rho) * (1 + rho * rho)
    m = float(w @ np.linalg.norm(g, axis=1))
    d2 = kappa * m * d / np.linalg.norm(d)
    return (1 - nu) * d2 + nu * g0


@pytest.mark.parametrize("name", list(PAIRS))
def test_came_grad_equals_its_three_steps(name: str) -> None:
    g = np.array(PAIRS[name])
    w = np.array([0.6, 0.4])
    out = combine(t(PAIRS[name]), w, "came_grad", rho=0.5, kappa=1.5, nu=0.2).numpy()
    np.testing.assert_allclose(out, came_grad_reference(g, w, 0.5, 1.5, 0.2), atol=5e-5)


def test_came_grad_restores_the_magnitude_lost_to_a_conflict() -> None:
    g = t(CONFLICTING)
    linear = combine(g, None, "linear")
    came = combine(g, None, "came_grad", nu=0.0, kappa=1.0)
    expected = float(0.5 * (g[0].norm() + g[1].norm()))
    assert float(linear.norm()) < expected
    assert float(came.norm()) == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=6))
def test_project_simplex_is_the_nearest_simplex_point(values: list[float]) -> None:
    v = torch.tensor(values, dtype=torch.float64)
    p = project_simplex(v)
    assert float(p.min()) >= 0 and float(p.sum()) == pytest.approx(1.0)
    # KKT: p_i = max(v_i - theta, 0) for one theta
    pos = p > 0
    theta = float((v[pos] - p[pos]).mean())
    np.testing.assert_allclose(p.numpy(), np.maximum(v.numpy() - theta, 0), atol=1e-9)


def test_cagrad_weights_on_the_simplex() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    p = cagrad_weights(g @ g.T, torch.full((3,), 1 / 3, dtype=torch.float64), 0.5)
    assert float(p.min()) >= 0 and float(p.sum()) == pytest.approx(1.0)


def test_bad_weights_and_methods_raise() -> None:
    g = t(ALIGNED)
    with pytest.raises(ValueError, match="task_weights"):
        combine(g, [1.0, -1.0])
    with pytest.raises(ValueError, match="expected 2 weights"):
        combine(g, [1.0])
    with pytest.raises(ValueError, match="method must be one of"):
        combine(g, None, "adam")  # type: ignore[arg-type]


# --- the optimizer step on a real module ------------------------------------------------------


def two_task_model() -> tuple[torch.nn.Module, torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    shared, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    x = torch.randn(8, 4)
    h = shared(x)
    losses = [h[:, 0].pow(2).mean() + head(h).mean(), (h[:, 1] - h[:, 0]).abs().mean()]
    return shared, head, losses


@pytest.mark.parametrize("method", ["linear", "pcgrad", "cagrad", "came_grad"])
def test_optimizer_sets_combined_grads_and_plain_sum_for_heads(method: str) -> None:
    shared, head, losses = two_task_model()
    w = [0.7, 0.3]
    per_task = [
        torch.cat(
            [
                g.reshape(-1)
                for g in torch.autograd.grad(loss, list(shared.parameters()), retain_graph=True)
            ]
        )
        for loss in losses
    ]
    expected = combine(torch.stack(per_task), w, method)  # type: ignore[arg-type]
    head_expected = torch.autograd.grad(
        0.7 * losses[0] + 0.3 * losses[1],
        list(head.parameters()),
        retain_graph=True,
        allow_unused=True,
    )
    opt = MultiTaskOptimizer(
        torch.optim.SGD([*shared.parameters(), *head.parameters()], lr=0.1),
        shared=shared.parameters(),
        method=method,  # type: ignore[arg-type]
    )
    opt.backward(losses, w)
    opt.apply()
    got = torch.cat([p.grad.reshape(-1) for p in shared.parameters()])
    torch.testing.assert_close(got, expected)
    for p, g in zip(head.parameters(), head_expected, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_linear_step_equals_backward_of_the_weighted_loss() -> None:
    shared, head, losses = two_task_model()
    params = [*shared.parameters(), *head.parameters()]
    (0.7 * losses[0] + 0.3 * losses[1]).backward(retain_graph=True)
    reference = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    opt = MultiTaskOptimizer(torch.optim.SGD(params, lr=0.1))
    opt.backward(losses, [0.7, 0.3])
    opt.apply()
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.grad, r)


def test_came_grad_interface_steps_the_base_optimizer() -> None:
    """``step(losses, task_weights=...)`` moves the parameters by the combined direction and
    consumes the gradients it produced (``.grad`` is cleared)."""
    shared, head, losses = two_task_model()
    params = list(shared.parameters())
    per_task = [
        torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])
        for loss in losses
    ]
    direction = combine(torch.stack(per_task), [0.5, 0.5], "came_grad", rho=0.5, kappa=1.5, nu=0.2)
    before = torch.cat([p.detach().reshape(-1) for p in params])
    opt = CAME_Grad(torch.optim.SGD(params, lr=0.1), rho=0.5, kappa=1.5, nu=0.2)
    opt.step(losses, task_weights=[0.5, 0.5])
    after = torch.cat([p.detach().reshape(-1) for p in params])
    torch.testing.assert_close(after, before - 0.1 * direction)
    assert all(p.grad is None for p in params)


def test_accumulated_micro_batches_combine_once_per_step() -> None:
    """Two micro-batches of the same tasks: the step combines the tasks' mean gradients over
    both (weighted by sample counts), not each micro-batch on its own."""
    shared, _, losses_a = two_task_model()
    torch.manual_seed(1)
    x = torch.randn(8, 4)
    h = shared(x)
    losses_b = [h[:, 0].pow(2).mean(), (h[:, 1] - h[:, 0]).abs().mean()]
    params = list(shared.parameters())

    def flat(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        return torch.cat([g.reshape(-1) for g in grads])

    counts_a, counts_b = [3.0, 1.0], [1.0, 3.0]
    means = torch.stack(
        [
            (counts_a[t] * flat(losses_a[t]) + counts_b[t] * flat(losses_b[t]))
            / (counts_a[t] + counts_b[t])
            for t in range(2)
        ]
    )
    expected = combine(means, [4.0, 4.0], "cagrad")
    opt = MultiTaskOptimizer(torch.optim.SGD(params, lr=0.1), method="cagrad")
    opt.backward(losses_a, counts_a, ["report", "grounding"])
    opt.backward(losses_b, counts_b, ["report", "grounding"])
    opt.apply()
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in params]), expected)
