"""MultiTaskOptimizer's bookkeeping on a real module: ``linear`` is one backward pass of the
weighted loss (gradient equal to autograd's on the hand-written objective, with gradient
accumulation, a ``modules_to_save``-style plain head and two data-parallel ranks: the weighted
mean with ``normalize_weights=True``, as the training loop calls it, and the mean over
micro-batches of ``sum_i w_i L_i`` at the weights' own scale by default), the per-task methods one
pass per task, and the all-in-one ``step(losses, ...)`` consumes its gradients, so repeated calls
without ``zero_grad`` repeat the same update."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradatim.train import CAME_Grad, MultiTaskOptimizer
from gradatim.train.loss import group_losses

TASKS = ["report", "phrase_grounding", "vqa"]


class Net(torch.nn.Module):
    """A shared trunk (its parameters play the LoRA adapters) and a plain head (a peft
    ``modules_to_save`` copy: trained, outside the multi-task combination)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh())
        self.head = torch.nn.Linear(16, 3)
        self.passes = 0  # backward passes through the whole network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.trunk(x))
        if out.requires_grad:
            out.register_hook(self._count)  # runs once per backward pass that reaches `out`
        return out

    def _count(self, grad: torch.Tensor) -> None:
        self.passes += 1

    def shared(self) -> list[torch.nn.Parameter]:
        return list(self.trunk.parameters())

    def params(self) -> list[torch.nn.Parameter]:
        return [*self.trunk.parameters(), *self.head.parameters()]


def micro_batch(seed: int, n: int = 10, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` samples of the first ``k`` tasks, each present, in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = torch.randn(n, 3, generator=g)
    tasks = [TASKS[int(i) % k] for i in torch.randperm(n, generator=g)]
    return x, y, tasks


def per_sample(net: Net, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (net(x) - y).pow(2).mean(1)


# each task's extra weight on top of its sample count (the loop passes counts alone)
SCALE = {"report": 1.0, "phrase_grounding": 2.5, "vqa": 0.5}


def optimizer_grads(
    net: Net,
    batches: list[tuple[torch.Tensor, torch.Tensor, list[str]]],
    method: str,
    normalize: bool = True,
) -> list[torch.Tensor]:
    """The loop's calls (``normalize_weights=True``): per micro-batch ``backward(task_losses,
    counts, names)``, then ``apply(step)``."""
    opt = MultiTaskOptimizer(
        torch.optim.SGD(net.params(), lr=0.1),
        shared=net.shared(),
        method=method,  # type: ignore[arg-type]
        tasks=TASKS,
        normalize_weights=normalize,
    )
    for x, y, tasks in batches:
        names, losses = group_losses(per_sample(net, x, y), tasks)
        weights = [sum(t == n for t in tasks) * SCALE[n] for n in names]
        opt.backward(losses, weights, names)
    opt.apply(0)
    return [p.grad.clone() for p in net.params()]


def reference_grads(
    net: Net, batches: list[tuple[torch.Tensor, torch.Tensor, list[str]]], normalize: bool = True
) -> list[torch.Tensor]:
    """autograd on the hand-written objective: the sum over micro-batches and tasks of
    ``w_i L_i`` (``L_i`` the task's mean loss) over the sum of the ``w_i`` (normalised), or over
    the number of micro-batches (the weights' own scale)."""
    num, den = torch.zeros(()), 0.0
    for x, y, tasks in batches:
        per = per_sample(net, x, y)
        for name in dict.fromkeys(tasks):
            mask = torch.tensor([t == name for t in tasks])
            w = float(mask.sum()) * SCALE[name]
            num = num + w * per[mask].mean()
            den += w
    return list(torch.autograd.grad(num / (den if normalize else len(batches)), net.params()))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_linear_gradient_is_the_weighted_loss_gradient(micro_batches: int, normalize: bool) -> None:
    """One micro-batch; two (gradient accumulation), the second of another size and fewer
    tasks."""
    batches = [micro_batch(0), micro_batch(1, n=7, k=2)][:micro_batches]
    net = Net()
    expected = reference_grads(net, batches, normalize)
    got = optimizer_grads(net, batches, "linear", normalize)
    for p, g, e in zip(net.params(), got, expected, strict=True):
        assert g.shape == p.shape
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    assert any(float(e.abs().max()) > 1e-2 for e in expected)  # not a vacuous comparison


def test_linear_runs_one_backward_pass_per_micro_batch_pcgrad_one_per_task() -> None:
    batches = [micro_batch(seed) for seed in range(2)]
    tasks_per_batch = [len(set(tasks)) for _, _, tasks in batches]
    assert tasks_per_batch == [3, 3]
    net = Net()
    optimizer_grads(net, batches, "linear")
    assert net.passes == 2
    net.passes = 0
    optimizer_grads(net, batches, "pcgrad")
    assert net.passes == sum(tasks_per_batch)  # the plain head rides on each task's pass


@pytest.mark.parametrize("method", ["linear", "pcgrad"])
def test_gradients_present_before_the_step_are_added_back(method: str) -> None:
    """``.grad`` held before the step's first ``backward`` is neither scaled nor combined: the
    step's gradient is added to it."""
    batches = [micro_batch(3)]
    net = Net()
    clean = optimizer_grads(net, batches, method)
    earlier = [torch.full_like(p, 0.25) for p in net.params()]
    for p, e in zip(net.params(), earlier, strict=True):
        p.grad = e.clone()
    with_earlier = optimizer_grads(net, batches, method)
    for g, c, e in zip(with_earlier, clean, earlier, strict=True):
        torch.testing.assert_close(g, c + e)


def test_unreached_shared_parameters_get_zero_and_plain_ones_none() -> None:
    net = Net()
    extra_shared = torch.nn.Parameter(torch.ones(2))
    extra_plain = torch.nn.Parameter(torch.ones(2))
    opt = MultiTaskOptimizer(
        torch.optim.SGD([*net.params(), extra_shared, extra_plain], lr=0.1),
        shared=[*net.shared(), extra_shared],
    )
    x, y, tasks = micro_batch(0)
    names, losses = group_losses(per_sample(net, x, y), tasks)
    opt.backward(losses, None, names)
    opt.apply()
    assert extra_shared.grad is not None and not extra_shared.grad.any()
    assert extra_plain.grad is None


# --- the all-in-one step(losses, task_weights) ------------------------------------------------


def linear_losses(w: torch.nn.Parameter, head: torch.nn.Parameter) -> list[torch.Tensor]:
    """Two conflicting task losses linear in the parameters: a constant gradient, so every step
    of plain SGD must move the parameters by the same amount."""
    return [
        (torch.tensor([1.0, 0.0, 2.0]) * w).sum() + 0.5 * head.sum(),
        (torch.tensor([-1.0, 1.0, 0.2]) * w).sum() - 2.0 * head.sum(),
    ]


def make(kind: str, w: torch.nn.Parameter, head: torch.nn.Parameter) -> MultiTaskOptimizer:
    base = torch.optim.SGD([w, head], lr=0.1)
    if kind == "CAME_Grad":
        return CAME_Grad(base, rho=0.5, kappa=1.5, nu=0.2, shared=[w])
    return MultiTaskOptimizer(base, shared=[w], method=kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["CAME_Grad", "linear", "pcgrad"])
def test_repeated_step_with_losses_needs_no_zero_grad(kind: str) -> None:
    def updates(zero_grad: bool) -> list[torch.Tensor]:
        w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
        head = torch.nn.Parameter(torch.tensor([0.5]))
        opt = make(kind, w, head)
        out = []
        for _ in range(3):
            before = torch.cat([w.detach(), head.detach()])
            if zero_grad:
                opt.zero_grad()
            opt.step(linear_losses(w, head), task_weights=[0.6, 0.4])
            out.append(torch.cat([w.detach(), head.detach()]) - before)
            cleared.append(w.grad is None and head.grad is None)
        return out

    cleared: list[bool] = []
    without, with_zero = updates(False), updates(True)
    assert float(without[0].abs().max()) > 1e-3
    for u in without[1:]:
        torch.testing.assert_close(u, without[0])
    for a, b in zip(without, with_zero, strict=True):
        torch.testing.assert_close(a, b)
    assert all(cleared)  # the step consumed the gradients it produced


def test_backward_and_apply_keep_grad_for_the_caller() -> None:
    """The loop's form: ``backward`` + ``apply`` leave the combined gradient in ``.grad`` for the
    base optimizer; ``zero_grad`` (the loop's) clears it."""
    w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))
    head = torch.nn.Parameter(torch.tensor([0.5]))
    opt = make("linear", w, head)
    opt.backward(linear_losses(w, head), [0.6, 0.4])
    opt.apply(0)
    torch.testing.assert_close(w.grad, torch.tensor([0.2, 0.4, 1.28]))
    torch.testing.assert_close(head.grad, torch.tensor([0.6 * 0.5 - 0.4 * 2.0]))
    opt.zero_grad()
    assert w.grad is None and head.grad is None


# --- two data-parallel ranks (gloo) ------------------------------------------------------------


def _rank(rank: int, store: str, out: str, runs: list[tuple[str, bool]]) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        for method, normalize in runs:
            net = Net()
            shards = [micro_batch(10 + 2 * rank + k, n=6 + 3 * rank) for k in range(2)]
            grads = optimizer_grads(net, shards, method, normalize)
            save_file(
                {str(i): g.contiguous() for i, g in enumerate(grads)},
                f"{out}/{method}-{normalize}-rank{rank}.st",
            )
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process_on_all_the_data(tmp_path: Path) -> None:
    """Under torch.distributed, ``linear`` all-reduces the summed gradient, the total weight and
    the number of micro-batches: every rank gets the gradient of the objective over both ranks'
    micro-batches (ranks of different sizes), normalised or at the weights' scale; ``pcgrad``
    all-reduces the per-task sums and micro-batch counts and gets what one process gets on all
    four micro-batches."""
    import torch.multiprocessing as mp

    runs = [("linear", True), ("linear", False), ("pcgrad", False)]
    args = (str(tmp_path / "store"), str(tmp_path), runs)
    # spawn, not fork: a fork of a process whose OpenMP pool is running can hang in the child
    mp.start_processes(_rank, args=args, nprocs=2, join=True, start_method="spawn")
    every = [micro_batch(10 + 2 * r + k, n=6 + 3 * r) for r in range(2) for k in range(2)]
    for method, normalize in runs:
        loaded = [load_file(tmp_path / f"{method}-{normalize}-rank{r}.st") for r in range(2)]
        ranks = [[d[str(i)] for i in range(len(d))] for d in loaded]
        if method == "linear":
            expected = reference_grads(Net(), every, normalize)
        else:
            expected = optimizer_grads(Net(), every, method, normalize)
        for a, b, e in zip(ranks[0], ranks[1], expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-6)
