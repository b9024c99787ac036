"""ITAS, RRGCL's second learning-difficulty measure (paper 002, Section 3.2.3, Eq. 5-9), by MINE.

The image-text mutual information ``M(I; R) = D_KL(P_IR || P_I x P_R)`` (Eq. 5) is bounded below
by the Donsker-Varadhan representation (Eq. 6-7)::

    M(I; R) >= E_P[T(v, t)] - log E_Q[exp T(v, t')]

with ``P`` the paired embeddings and ``Q`` the product of the marginals (text of an independently
drawn sample). A statistics network ``T_theta`` maximises the bound (Eq. 8; MINE, Belghazi et al.
2018) and the score of sample ``i`` is ``dif2(i) = T_theta*(v_i, t_i)`` (Eq. 9).

Training follows MINE's Algorithm 1 with the bias-corrected gradient of its Section 3.2: the
mini-batch gradient of ``log E_Q[e^T]`` is biased, so the denominator of its gradient
``E_Q[grad T e^T] / E_Q[e^T]`` is replaced by an exponential moving average of ``E_Q[e^T]``
over batches (rate ``ema_rate``, kept in the log domain so it cannot overflow). The loss whose
gradient is exactly that is ``-(mean_P T - mean_Q e^T / ema)`` with ``ema`` held constant.

Network: each modality is projected by a linear layer to ``hidden`` units, the two projections
are concatenated and a 2-layer ReLU MLP gives the scalar ``T`` (ReLU rather than ELU: the same
estimates here, and ELU's CPU kernel was 100x slower than ReLU's in the torch build measured).
Inputs are standardised per feature over the data set first (an invertible affine map: the mutual
information is unchanged).

Notes for users:
- ``T`` is defined up to an additive constant (the DV bound is invariant to ``T + c``), so the
  scores are only meaningful relative to each other, as Eq. 10 uses them (z-scored).
- Higher ``T`` means a better aligned pair, which the paper calls *easier*; Eq. 10 as printed
  adds ``+beta z(dif2)``. :func:`gradatim.difficulty.combine` subtracts it by default (the
  paper's intent) and keeps the printed form as ``itas_sign="literal"``.
- Deterministic on CPU for a given ``seed``: all randomness comes from a private
  ``torch.Generator`` (the caller's global RNG is left untouched), and training runs with a fixed
  number of torch threads (``threads``, default 1), so the result does not depend on the
  machine's core count or on ``torchrun``'s ``OMP_NUM_THREADS=1``. One thread is also the fast
  choice for this small network: with 2 threads a step took 4x longer on the 2-core machine
  measured. On CUDA, cuBLAS may differ in the last bits between runs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim.difficulty._checks import check_finite, check_pair
from gradatim.errors import InvalidArgumentError

__all__ = ["MINEResult", "fit_mine", "itas"]

log = logging.getLogger("gradatim.difficulty")

_EVAL_BATCH = 8192


@dataclass
class MINEResult:
    """What :func:`fit_mine` returns."""

    scores: NDArray[np.float64]
    """``dif2(i) = T(v_i, t_i)`` per sample (Eq. 9)."""
    mi_history: list[float]
    """DV estimate of the mutual information (nats) on the whole data set after each epoch,
    with one fixed shuffled pairing as the marginal sample."""
    network: Any = field(repr=False)
    """The trained statistics network (a ``torch.nn.Module`` on CPU)."""
    seconds: float = 0.0

    @property
    def mi(self) -> float:
        """The final epoch's estimate (nats)."""
        return self.mi_history[-1]


def _network(dv: int, dt: int, hidden: int) -> Any:
    import torch
    from torch import nn

    class StatisticsNetwork(nn.Module):
        """``T(v, t)``: linear projections of both inputs, concatenated, then a ReLU MLP."""

        def __init__(self) -> None:
            super().__init__()
            self.proj_v = nn.Linear(dv, hidden)
            self.proj_t = nn.Linear(dt, hidden)
            self.mlp = nn.Sequential(
                nn.ReLU(), nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
            )

        def forward(self, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.mlp(torch.cat([self.proj_v(v), self.proj_t(t)], dim=-1)).squeeze(-1)

    return StatisticsNetwork()


def _standardize(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32)


def _positive_int(name: str, x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise InvalidArgumentError(f"itas: {name} must be a positive int, got {x!r}")
    return int(x)


def fit_mine(
    visual: ArrayLike,
    text: ArrayLike,
    *,
    epochs: int = 30,
    batch_size: int = 512,
    hidden: int = 128,
    lr: float = 1e-3,
    ema_rate: float = 0.01,
    seed: int = 0,
    device: Any = "auto",
    threads: int | None = 1,
    on_epoch: Callable[[int, float], None] | None = None,
    progress: bool = False,
) -> MINEResult:
    """Train a MINE statistics network on the pairs ``(visual[i], text[i])`` (RRGCL Eq. 6-8).

    Args:
        visual: ``(N, dv)`` visual embeddings.
        text: ``(N, dt)`` text embeddings of the same samples.
        epochs: passes over the data.
        batch_size: pairs per step (the marginal sample of a step has the same size).
        hidden: width of the projections and of the MLP.
        lr: Adam learning rate.
        ema_rate: rate of the moving average of ``E_Q[e^T]`` in the bias-corrected gradient.
        seed: seeds the initialisation, the batch order and the marginal draws.
        device: ``"auto"`` | ``"cpu"`` | ``"cuda[:N]"``.
        threads: torch intra-op threads while training on CPU (restored afterwards); ``None``
            keeps the current setting (results may then depend on it).
        on_epoch: called as ``on_epoch(epoch, mi_estimate)`` after each epoch (also logged at
            INFO level on the ``gradatim.difficulty`` logger).
        progress: a tqdm bar over epochs.

    Returns:
        :class:`MINEResult` with the per-sample scores ``T(v_i, t_i)`` (Eq. 9) and the MI estimate
        of every epoch.
    """
    import torch

    from gradatim.difficulty.vns_gap import resolve_device

    v, t = check_pair(visual, text, "itas")
    check_finite(v, "visual", "itas")
    check_finite(t, "text", "itas")
    n = v.shape[0]
    if n < 2:
        raise InvalidArgumentError("itas: at least 2 samples are needed (pairs vs shuffled pairs)")
    epochs = _positive_int("epochs", epochs)
    batch_size = min(_positive_int("batch_size", batch_size), n)
    hidden = _positive_int("hidden", hidden)
    if not (0.0 < ema_rate <= 1.0):
        raise InvalidArgumentError(f"itas: ema_rate must be in (0, 1], got {ema_rate!r}")
    if not lr > 0:
        raise InvalidArgumentError(f"itas: lr must be > 0, got {lr!r}")
    dev = torch.device(resolve_device(device))
    if threads is not None:
        threads = _positive_int("threads", threads)
    prev_threads = torch.get_num_threads()
    if threads is not None and dev.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return _train(v, t, dev, epochs, batch_size, hidden, lr, ema_rate, seed, on_epoch, progress)
    finally:
        torch.set_num_threads(prev_threads)


def _train(
    v: np.ndarray,
    t: np.ndarray,
    dev: Any,
    epochs: int,
    batch_size: int,
    hidden: int,
    lr: float,
    ema_rate: float,
    seed: int,
    on_epoch: Callable[[int, float], None] | None,
    progress: bool,
) -> MINEResult:
    import torch

    n = v.shape[0]
    t0 = time.perf_counter()

    vs = torch.from_numpy(_standardize(v)).to(dev)
    ts = torch.from_numpy(_standardize(t)).to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        net = _network(v.shape[1], t.shape[1], hidden)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    eval_perm = torch.randperm(n, generator=gen).to(dev)
    log1m, logr = math.log1p(-ema_rate) if ema_rate < 1 else -math.inf, math.log(ema_rate)
    log_ema: torch.Tensor | None = None
    history: list[float] = []
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=epochs, desc="ITAS (MINE)", unit="epoch")
        except ImportError:  # pragma: no cover - tqdm is optional
            bar = None

    def scores_of(tv: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        out = [
            net(tv[s : s + _EVAL_BATCH], tt[s : s + _EVAL_BATCH]) for s in range(0, n, _EVAL_BATCH)
        ]
        return torch.cat(out).double()

    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.randperm(n, generator=gen).to(dev)
        marg = torch.randperm(n, generator=gen).to(dev)
        for s in range(0, n - batch_size + 1, batch_size):  # full batches only
            idx = order[s : s + batch_size]
            joint = net(vs[idx], ts[idx])
            et = net(vs[idx], ts[marg[idx]])
            lme = torch.logsumexp(et, dim=0) - math.log(batch_size)
            cur = lme.detach()
            if log_ema is None:
                log_ema = cur
            else:
                log_ema = torch.logaddexp(log_ema + log1m, cur + logr)
            loss = -(joint.mean() - torch.exp(lme - log_ema))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            tj = scores_of(vs, ts)
            tm = scores_of(vs, ts[eval_perm])
            mi = float(tj.mean() - (torch.logsumexp(tm, dim=0) - math.log(n)))
        history.append(mi)
        log.info("ITAS (MINE) epoch %d/%d: MI estimate %.4f nats", epoch, epochs, mi)
        if on_epoch is not None:
            on_epoch(epoch, mi)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(mi=f"{mi:.3f}")
    if bar is not None:
        bar.close()
    scores = tj.cpu().numpy().astype(np.float64)
    return MINEResult(
        scores=scores, mi_history=history, network=net.cpu(), seconds=time.perf_counter() - t0
    )


def itas(visual: ArrayLike, text: ArrayLike, **kwargs: Any) -> NDArray[np.float64]:
    """ITAS ``dif2`` of every sample: ``T(v_i, t_i)`` of a MINE statistics network trained on the
    pairs (RRGCL Eq. 6-9). Keyword arguments are those of :func:`fit_mine`, which also returns
    the per-epoch MI estimates.

    Returns:
        ``(N,)`` float64 scores; higher means a better aligned image-text pair.
    """
    return fit_mine(visual, text, **kwargs).scores
