"""Multi-task gradient combination against the published formulas and public code, on hand-made
gradient pairs (conflicting, aligned, orthogonal): PCGrad against Yu et al.'s Algorithm 1 written
out (a sum, as LibMTL; Pytorch-PCGrad's mean is 1/K of it), CAGrad against LibMTL's ``CAGrad``
(median-research-group/LibMTL, ``LibMTL/weighting/CAGrad.py`` at 4336804) transcribed in NumPy
on the weighted losses ``w_i L_i``, times K (its dual by brute force for two tasks, SciPy's SLSQP
for three), CAME-Grad against its documented steps written out in NumPy, and the task weights at the
CAME-Grad authors' scale (``task_weights=[1, 4]`` for ``loss_lm + 4 * loss_cls``)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim.train import CAME_Grad, MultiTaskOptimizer, combine
from gradatim.train.gradients import (
    CAME_GRAD_GUESSES,
    cagrad_weights,
    describe,
    project_simplex,
)

CONFLICTING = [[1.0, 0.0], [-1.0, 1.0]]
ALIGNED = [[1.0, 2.0], [2.0, 4.0]]
ORTHOGONAL = [[3.0, 0.0], [0.0, 1.0]]
PAIRS = {"conflicting": CONFLICTING, "aligned": ALIGNED, "orthogonal": ORTHOGONAL}


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("name", list(PAIRS))
def test_linear_is_the_weighted_sum_at_the_weights_scale(name: str) -> None:
    g = t(PAIRS[name])
    a, b = g[0].numpy(), g[1].numpy()
    np.testing.assert_allclose(combine(g, [0.25, 0.75], "linear").numpy(), 0.25 * a + 0.75 * b)
    # the CAME-Grad authors' call: task_weights=[1, cls_weight] for loss_lm + cls_weight * loss_cls
    np.testing.assert_allclose(combine(g, [1.0, 4.0], "linear").numpy(), a + 4.0 * b)
    np.testing.assert_allclose(combine(g, None, "linear").numpy(), a + b)
    np.testing.assert_allclose(
        combine(g, [1.0, 4.0], "linear", normalize_weights=True).numpy(), 0.2 * a + 0.8 * b
    )


# --- PCGrad -----------------------------------------------------------------------------------


def pcgrad_algorithm_1(g: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """Yu et al. 2020, Algorithm 1: g_i^PC starts at g_i; for each other task j in the given
    order, if g_i^PC . g_j < 0 then g_i^PC -= (g_i^PC . g_j) / |g_j|^2 g_j; return sum_i g_i^PC."""
    out = np.zeros(g.shape[1])
    for i, order in enumerate(orders):
        gi = g[i].copy()
        for j in order:
            if gi @ g[j] < 0:
                gi = gi - (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        out += gi
    return out


def all_orders(k: int) -> list[list[list[int]]]:
    per_task = [list(itertools.permutations([j for j in range(k) if j != i])) for i in range(k)]
    return [[list(o) for o in combo] for combo in itertools.product(*per_task)]


def test_pcgrad_by_hand_is_the_sum() -> None:
    # conflicting: g1.g2 = -1. g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    np.testing.assert_allclose(combine(t(CONFLICTING), [1, 1], "pcgrad").numpy(), [0.5, 1.5])
    np.testing.assert_allclose(combine(t(CONFLICTING), None, "pcgrad").numpy(), [0.5, 1.5])
    # Pytorch-PCGrad's mean is the sum with weights 1/K
    np.testing.assert_allclose(
        combine(t(CONFLICTING), None, "pcgrad", normalize_weights=True).numpy(), [0.25, 0.75]
    )
    for name in ("aligned", "orthogonal"):  # no conflict: the plain (weighted) sum
        g = t(PAIRS[name])
        np.testing.assert_allclose(combine(g, None, "pcgrad").numpy(), g.sum(0).numpy())
        np.testing.assert_allclose(
            combine(g, [1.0, 4.0], "pcgrad").numpy(), (g[0] + 4 * g[1]).numpy()
        )


def test_pcgrad_three_tasks_is_algorithm_1_for_some_order() -> None:
    """Three tasks with order-dependent results: gradatim's update is Algorithm 1's (a sum) for
    one of the 8 combinations of projection orders, and the mean (Pytorch-PCGrad's reduction)
    is none of them."""
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(20):
        g = rng.normal(size=(3, 4))
        w = np.array([1.0, 4.0, 0.5])
        candidates = [pcgrad_algorithm_1(g * w[:, None], o) for o in all_orders(3)]
        if max(np.abs(c - candidates[0]).max() for c in candidates) < 1e-6:
            continue  # this draw does not depend on the order
        checked += 1
        for seed in range(3):
            gen = torch.Generator().manual_seed(seed)
            out = combine(torch.tensor(g), w, "pcgrad", generator=gen).numpy()
            assert min(np.abs(out - c).max() for c in candidates) < 1e-12
            assert min(np.abs(out / 3 - c).max() for c in candidates) > 1e-3
    assert checked >= 5


# --- CAGrad (LibMTL's, on the weighted losses) -------------------------------------------------


def libmtl_cagrad(h: np.ndarray, calpha: float, rescale: int = 1) -> np.ndarray:
    """LibMTL's CAGrad.backward on task gradients ``h`` (rows; the weighted losses' gradients),
    transcribed in NumPy without its 1e-8 guards: GG = h h^T, |g0| = sqrt(mean(GG)),
    x* = argmin over the simplex of x^T GG b + c sqrt(x^T GG x) with b = 1/K and
    c = calpha |g0|; gw = sum_i x_i h_i; g = mean(h) + c / |gw| gw; rescale 1: g / (1 + calpha^2).
    The dual is solved by a dense grid (two tasks) or SLSQP from several starts (more)."""
    k = len(h)
    gg = h @ h.T
    b = np.full(k, 1.0 / k)
    c = calpha * np.sqrt(gg.mean())

    def obj(x: np.ndarray) -> float:
        return float(x @ gg @ b + c * np.sqrt(max(x @ gg @ x, 0.0)))

    if k == 2:
        ts = np.linspace(0, 1, 200001)
        xs = np.stack([ts, 1 - ts], 1)
        vals = xs @ gg @ b + c * np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", xs, gg, xs), 0))
        x = xs[np.argmin(vals)]
    else:
        cons = {"type": "eq", "fun": lambda x: 1 - x.sum()}
        starts = [b] + list(np.eye(k))
        x = min(
            (
                scipy.optimize.minimize(
                    obj, s, bounds=[(0, 1)] * k, constraints=cons, method="SLSQP", tol=1e-14
                )
                for s in starts
            ),
            key=lambda r: r.fun,
        ).x
    gw = x @ h
    g = h.mean(0) + c / np.linalg.norm(gw) * gw
    return {0: g, 1: g / (1 + calpha**2), 2: g / (1 + calpha)}[rescale]


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("weights", [[1.0, 1.0], [0.5, 0.5], [0.6, 0.4], [1.0, 4.0], [0.2, 0.8]])
def test_cagrad_is_k_times_libmtl_on_the_weighted_losses(name: str, weights: list[float]) -> None:
    """gradatim centres on g0 = sum_i w_i g_i, LibMTL on their mean: K = 2 times LibMTL."""
    g, w = np.array(PAIRS[name]), np.array(weights)
    out = combine(t(PAIRS[name]), weights, "cagrad", c=0.5).numpy()
    np.testing.assert_allclose(out, 2 * libmtl_cagrad(g * w[:, None], 0.5), atol=4e-5)
    # weights w_i / K: LibMTL's update on the losses w_i L_i itself
    halved = combine(t(PAIRS[name]), [x / 2 for x in weights], "cagrad", c=0.5).numpy()
    np.testing.assert_allclose(halved, libmtl_cagrad(g * w[:, None], 0.5), atol=2e-5)


def test_cagrad_three_tasks_against_libmtl_slsqp() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = rng.normal(size=(3, 6))
        w = rng.uniform(0.2, 4.0, size=3)
        out = combine(torch.tensor(g), w, "cagrad", c=0.5).numpy()
        np.testing.assert_allclose(out, 3 * libmtl_cagrad(g * w[:, None], 0.5), atol=3e-6)


def test_the_other_weighted_cagrad_convention_is_told_apart() -> None:
    """The test above can fail: ``g0`` = the normalised weighted mean with the dual over the
    unweighted gradients (the convention gradatim does not take) is 8 % of the update away from
    LibMTL on the conflicting pair weighted 0.6 / 0.4, though equal for equal weights."""

    def other(g: np.ndarray, w: np.ndarray, c: float) -> np.ndarray:
        w = w / w.sum()
        g0 = w @ g
        ts = np.linspace(0, 1, 200001)
        ps = np.stack([ts, 1 - ts], 1)
        gp = ps @ g
        p = ps[np.argmin(gp @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gp, axis=1))]
        return (g0 + c * np.linalg.norm(g0) * (p @ g) / np.linalg.norm(p @ g)) / (1 + c * c)

    g = np.array(CONFLICTING)
    ours = combine(t(CONFLICTING), [0.6, 0.4], "cagrad").numpy()
    np.testing.assert_allclose(ours, 2 * libmtl_cagrad(g * np.array([0.6, 0.4])[:, None], 0.5),
                               atol=4e-5)  # fmt: skip
    gap = np.linalg.norm(other(g, np.array([0.6, 0.4]), 0.5) - ours) / np.linalg.norm(ours)
    assert 0.07 < gap < 0.10
    same = other(g, np.array([0.5, 0.5]), 0.5)
    np.testing.assert_allclose(same, combine(t(CONFLICTING), [0.5, 0.5], "cagrad"), atol=2e-5)


def test_cagrad_improves_the_worst_task_on_a_conflict() -> None:
    """CAGrad's purpose: on a conflict the worst task's first-order decrease is larger than
    with the average gradient."""
    g = t(CONFLICTING)
    avg = combine(g, None, "linear")
    ca = combine(g, None, "cagrad")
    worst = lambda d: float((g @ d).min())  # noqa: E731
    assert worst(ca / ca.norm()) > worst(avg / avg.norm())


# --- CAME-Grad (gradatim's reconstruction) -----------------------------------------------------


def came_grad_reference(
    g: np.ndarray, w: np.ndarray, rho: float, kappa: float, nu: float
) -> np.ndarray:
    """The documented steps, each a named guess: h_i = w_i g_i at the weights' scale; the
    direction of LibMTL's CAGrad on h (calpha = rho, not rescaled; the factor K does not change
    it); magnitude kappa * sum_i |h_i|; fused with g0 = sum_i h_i by a constant nu."""
    h = g * w[:, None]
    d = libmtl_cagrad(h, rho, rescale=0)
    m = float(np.linalg.norm(h, axis=1).sum())
    return (1 - nu) * kappa * m * d / np.linalg.norm(d) + nu * h.sum(0)


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("weights", [[0.6, 0.4], [1.0, 4.0]])
def test_came_grad_equals_its_documented_steps(name: str, weights: list[float]) -> None:
    g, w = np.array(PAIRS[name]), np.array(weights)
    out = combine(t(PAIRS[name]), w, "came_grad", rho=0.5, kappa=1.5, nu=0.2).numpy()
    np.testing.assert_allclose(out, came_grad_reference(g, w, 0.5, 1.5, 0.2), atol=5e-5)


def test_came_grad_keeps_the_authors_weight_scale() -> None:
    """The authors' ``task_weights=[1, 4]``: the fused linear part is the gradient of their
    baseline ``loss_lm + 4 loss_cls`` (nu = 1 leaves only it), and the magnitude target is
    kappa (|g_lm| + 4 |g_cls|); normalised weights would give 1/5 of both."""
    g = t(CONFLICTING)
    a, b = np.array(CONFLICTING[0]), np.array(CONFLICTING[1])
    np.testing.assert_allclose(combine(g, [1.0, 4.0], "came_grad", nu=1.0).numpy(), a + 4 * b)
    out = combine(g, [1.0, 4.0], "came_grad", nu=0.0, kappa=1.5)
    assert float(out.norm()) == pytest.approx(1.5 * (1.0 + 4.0 * np.sqrt(2.0)))
    small = combine(g, [1.0, 4.0], "came_grad", nu=0.0, kappa=1.5, normalize_weights=True)
    assert float(small.norm()) == pytest.approx(1.5 * (1.0 + 4.0 * np.sqrt(2.0)) / 5)


def test_came_grad_restores_the_magnitude_lost_to_a_conflict() -> None:
    g = t(CONFLICTING)
    linear = combine(g, None, "linear")
    came = combine(g, None, "came_grad", nu=0.0, kappa=1.0)
    expected = float(g[0].norm() + g[1].norm())  # 1 + sqrt(2)
    assert float(linear.norm()) < expected
    assert float(came.norm()) == pytest.approx(expected)


def test_describe_names_every_guess_and_convention() -> None:
    rec = describe("came_grad", rho=0.3)
    assert rec["name"] == "came_grad" and rec["reconstruction"] is True
    assert rec["options"] == {"rho": 0.3, "kappa": 1.5, "nu": 0.2}
    assert set(rec["guesses"]) == {
        "direction", "magnitude", "fusion_weight", "inductive_bias", "task_weights"
    }  # fmt: skip
    assert "kappa * sum_i w_i |g_i|" in rec["guesses"]["magnitude"]
    assert "constant nu" in rec["guesses"]["fusion_weight"]
    assert "inductive bias" in rec["guesses"]["inductive_bias"]
    assert rec["task_weights"].startswith("unnormalized")
    assert rec["guesses"] == CAME_GRAD_GUESSES
    json.dumps(rec)  # goes into log.jsonl and state.json as is
    pc = describe("pcgrad", normalize_weights=True)
    assert pc["reconstruction"] is False and "guesses" not in pc
    assert pc["conventions"]["reduction"].startswith("sum")
    assert pc["task_weights"].startswith("normalized")
    assert "LibMTL" in describe("cagrad")["conventions"]["tasks"]
    with pytest.raises(ValueError, match="unknown options"):
        describe("pcgrad", rho=0.5)


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


def flat_grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat(
        [torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1) for p, g in
         zip(params, grads, strict=True)]
    )  # fmt: skip


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("method", ["linear", "pcgrad", "cagrad", "came_grad"])
def test_optimizer_sets_combined_grads_and_plain_sum_for_heads(
    method: str, normalize: bool
) -> None:
    """Weights [1, 4]: the shared parameters get the combination at the weights' scale (1/5 of
    it normalised); the head gets autograd's gradient of L_0 + 4 L_1 (of its fifth)."""
    shared, head, losses = two_task_model()
    params = list(shared.parameters())
    per_task = torch.stack([flat_grads(loss, params) for loss in losses]).double().numpy()
    w = np.array([0.2, 0.8]) if normalize else np.array([1.0, 4.0])
    expected = {
        "linear": lambda: w @ per_task,
        "pcgrad": lambda: pcgrad_algorithm_1(per_task * w[:, None], [[1], [0]]),
        "cagrad": lambda: 2 * libmtl_cagrad(per_task * w[:, None], 0.5),
        "came_grad": lambda: came_grad_reference(per_task, w, 0.5, 1.5, 0.2),
    }[method]()
    head_expected = torch.autograd.grad(
        w[0] * losses[0] + w[1] * losses[1],
        list(head.parameters()),
        retain_graph=True,
        allow_unused=True,
    )
    opt = MultiTaskOptimizer(
        torch.optim.SGD([*shared.parameters(), *head.parameters()], lr=0.1),
        shared=shared.parameters(),
        method=method,  # type: ignore[arg-type]
        normalize_weights=normalize,
    )
    opt.backward(losses, [1.0, 4.0])
    opt.apply()
    got = torch.cat([p.grad.reshape(-1) for p in shared.parameters()]).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    for p, g in zip(head.parameters(), head_expected, strict=True):
        torch.testing.assert_close(p.grad, g.float())


def test_linear_step_equals_backward_of_the_weighted_loss() -> None:
    """The CAME-Grad authors' baseline: ``(loss_lm + 4 * loss_cls).backward()``."""
    shared, head, losses = two_task_model()
    params = [*shared.parameters(), *head.parameters()]
    (1.0 * losses[0] + 4.0 * losses[1]).backward(retain_graph=True)
    reference = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    opt = MultiTaskOptimizer(torch.optim.SGD(params, lr=0.1))
    opt.backward(losses, [1.0, 4.0])
    opt.apply()
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.grad, r)


def test_came_grad_interface_steps_the_base_optimizer() -> None:
    """The authors' call ``step([loss_lm, loss_cls], task_weights=[1.0, 4.0])`` moves the
    parameters by the reconstruction at the weights' scale (written out above) and consumes the
    gradients it produced (``.grad`` is cleared)."""
    shared, head, losses = two_task_model()
    params = list(shared.parameters())
    per_task = torch.stack([flat_grads(loss, params) for loss in losses]).double().numpy()
    direction = came_grad_reference(per_task, np.array([1.0, 4.0]), 0.5, 1.5, 0.2)
    before = torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()
    opt = CAME_Grad(torch.optim.SGD(params, lr=0.1), rho=0.5, kappa=1.5, nu=0.2)
    assert opt.record["reconstruction"] and set(opt.record["guesses"]) == set(CAME_GRAD_GUESSES)
    opt.step(losses, task_weights=[1.0, 4.0])
    after = torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()
    np.testing.assert_allclose(after, before - 0.1 * direction, rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("normalize", [False, True])
def test_accumulated_micro_batches_combine_once_per_step(normalize: bool) -> None:
    """Two micro-batches of the same tasks: the step combines the tasks' weighted mean gradients
    over both, not each micro-batch on its own. Unnormalised, the step's objective is the mean
    over micro-batches of sum_i w_i L_i (task weights (3 + 1) / 2 each); normalised, the weighted
    mean over the step (1/2 each)."""
    shared, _, _ = two_task_model()
    torch.manual_seed(1)
    xs = [torch.randn(8, 4), torch.randn(8, 4)]

    def forward() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        a, b = (shared(x) for x in xs)
        return (
            [a[:, 0].pow(2).mean(), (a[:, 1] - a[:, 0]).abs().mean()],
            [b[:, 0].pow(2).mean(), (b[:, 1] - b[:, 0]).abs().mean()],
        )

    losses_a, losses_b = forward()
    params = list(shared.parameters())
    counts_a, counts_b = [3.0, 1.0], [1.0, 3.0]
    means = np.stack(
        [
            (
                (counts_a[k] * flat_grads(losses_a[k], params)
                 + counts_b[k] * flat_grads(losses_b[k], params))
                / (counts_a[k] + counts_b[k])
            ).double().numpy()
            for k in range(2)
        ]
    )  # fmt: skip
    w = np.array([0.5, 0.5]) if normalize else np.array([2.0, 2.0])
    expected = 2 * libmtl_cagrad(means * w[:, None], 0.5)
    opt = MultiTaskOptimizer(
        torch.optim.SGD(params, lr=0.1), method="cagrad", normalize_weights=normalize
    )
    opt.backward(losses_a, counts_a, ["report", "grounding"])
    opt.backward(losses_b, counts_b, ["report", "grounding"])
    opt.apply()
    got = torch.cat([p.grad.reshape(-1) for p in params]).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # linear: autograd's gradient of the step's objective
    linear = MultiTaskOptimizer(torch.optim.SGD(params, lr=0.1), normalize_weights=normalize)
    for p in params:
        p.grad = None
    losses_a, losses_b = forward()
    linear.backward(losses_a, counts_a)
    linear.backward(losses_b, counts_b)
    linear.apply()
    losses_a, losses_b = forward()  # a graph for the reference
    total = sum(c * loss for c, loss in zip(counts_a + counts_b, losses_a + losses_b, strict=True))
    objective = total / (sum(counts_a) + sum(counts_b)) if normalize else total / 2
    want = flat_grads(objective, params)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in params]), want)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_training_log_and_checkpoint_record_the_gradient_method(
    manifest: Path, tmp_path: Path
) -> None:
    """A came_grad run's outputs say what was run: the first log row each process writes (the
    fresh run's, the resumed run's) and every checkpoint's state carry the method's record, with
    the reconstruction's guesses and the loop's weight convention (sample shares)."""
    from test_train_loop import write_run

    from gradatim.train.config import load_config
    from gradatim.train.loop import train

    config = write_run(tmp_path, manifest, steps=3, checkpoint_every=1)
    config.write_text(config.read_text().replace('method = "pcgrad"', 'method = "came_grad"'))
    train(load_config(config), max_steps=2)
    train(load_config(config), resume="auto")
    rows = [json.loads(x) for x in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert ["gradient_method" in r for r in rows] == [True, False, True]
    rec = rows[0]["gradient_method"]
    assert rows[2]["gradient_method"] == rec
    assert rec["name"] == "came_grad" and rec["reconstruction"] is True
    assert rec["guesses"] == CAME_GRAD_GUESSES
    assert rec["options"] == {"rho": 0.5, "kappa": 1.5, "nu": 0.2}
    assert rec["task_weights"].startswith("normalized")
    for step in (1, 2, 3):
        state = json.loads((tmp_path / "out" / f"checkpoint-{step}" / "state.json").read_text())
        assert state["gradient_method"] == rec
        assert state["config"]["optim"]["method"] == "came_grad"
