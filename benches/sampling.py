"""Index throughput of gradatim's samplers against torch and NumPy, in one run.

1. Weighted draws: 10 million draws over 4 sources (1 million samples in all, weights
   0.4 / 0.3 / 0.2 / 0.1), with replacement:
   - torch ``WeightedRandomSampler`` over per-sample weights ``w_s / size_s`` (what a user writes
     today), single-threaded torch;
   - a NumPy two-stage implementation (``Generator.choice`` of the source, then a uniform index);
   - gradatim ``MultiSourceSampler`` (random mode; also without replacement and interleaved).
   Three measurements: *array* = the whole epoch as one array (``torch.multinomial``, the work
   inside ``WeightedRandomSampler.__iter__``; NumPy; ``epoch_indices``); *chunks* = gradatim's
   epoch as 64k-index arrays (``chunks()``, what its iterator and a batching loader consume)
   against the same one-array baselines; *iterate* = every index consumed one by one in Python
   (``for i in sampler``), which is what a DataLoader does.
2. RRGCL epoch over 1 million samples (14 classes, multi-label): one epoch's subset at ``t = T/2``
   (gradatim vs a NumPy implementation of Algorithm 1 with the per-class sorts done beforehand),
   and that subset shuffled and consumed (gradatim ``CurriculumSampler``, subset computation
   included, vs torch ``SubsetRandomSampler`` given the subset).

Rates are indices per second (median of repeats); ratio = gradatim rate / baseline rate. Writes
``benches/results/sampling.json``.

    python benches/sampling.py [--repeats 3] [--draws 10000000]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import SubsetRandomSampler, WeightedRandomSampler

from gradatim.bench import machine_info
from gradatim.curriculum import RRGCLScheduler
from gradatim.sampling import CurriculumSampler, MultiSourceSampler

RESULTS = Path(__file__).parent / "results" / "sampling.json"
SIZES = np.array([200_000, 50_000, 500_000, 250_000])
WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])


def median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def consume(it: Any) -> None:
    collections.deque(it, maxlen=0)


def numpy_weighted(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    src = rng.choice(len(SIZES), size=n, p=WEIGHTS)
    return offsets[src] + (rng.random(n) * SIZES[src]).astype(np.int64)


def weighted_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    per_sample = torch.from_numpy(np.repeat(WEIGHTS / SIZES, SIZES))
    wrs = WeightedRandomSampler(per_sample, n, replacement=True)
    ours = {
        "random": MultiSourceSampler(SIZES, WEIGHTS, n, seed=0),
        "random, without replacement": MultiSourceSampler(SIZES, WEIGHTS, n, replacement=False),
        "interleave": MultiSourceSampler(SIZES, WEIGHTS, n, mode="interleave"),
    }
    base = {
        ("array", "torch"): median_s(lambda: torch.multinomial(per_sample, n, True), repeats),
        ("array", "numpy"): median_s(lambda: numpy_weighted(n, 0), repeats),
        ("iterate", "torch"): median_s(lambda: consume(iter(wrs)), repeats),
        ("iterate", "numpy"): median_s(lambda: consume(numpy_weighted(n, 0).tolist()), repeats),
    }
    rows = []
    for label, s in ours.items():
        g = {
            "array": median_s(s.epoch_indices, repeats),
            "chunks": median_s(lambda s=s: consume(s.chunks()), repeats),
            "iterate": median_s(lambda s=s: consume(iter(s)), repeats),
        }
        base[("chunks", "torch")] = base[("array", "torch")]
        base[("chunks", "numpy")] = base[("array", "numpy")]
        for kind in ("array", "chunks", "iterate"):
            rows.append(
                {
                    "case": f"weighted draws, {label}",
                    "measure": kind,
                    "indices": n,
                    "gradatim_per_s": n / g[kind],
                    "torch_per_s": n / base[(kind, "torch")],
                    "numpy_per_s": n / base[(kind, "numpy")],
                    "vs_torch": base[(kind, "torch")] / g[kind],
                    "vs_numpy": base[(kind, "numpy")] / g[kind],
                }
            )
    return rows


def rrgcl_rows(n: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    k = 14
    n_labels = rng.integers(0, 4, size=n)  # 0 to 3 classes per sample, as in CheXpert
    offsets = np.concatenate([[0], np.cumsum(n_labels)])
    ids = rng.integers(0, k, size=int(offsets[-1]))
    dif = rng.standard_normal(n)
    T, t = 20, 10

    t0 = time.perf_counter()
    sched = RRGCLScheduler.from_csr(offsets, ids, dif, T)
    build_s = time.perf_counter() - t0

    # NumPy Algorithm 1; the per-class sorts are done once, outside the timing
    rows_of = np.repeat(np.arange(n), n_labels)
    members = [np.unique(rows_of[ids == c]) for c in range(k)] + [np.flatnonzero(n_labels == 0)]
    members = [m[np.lexsort((m, dif[m]))] for m in members]
    means = np.array([dif[m].mean() for m in members])
    sizes = np.array([m.size for m in members])

    def numpy_epoch() -> np.ndarray:
        d = (means - means.min()) / (means.max() - means.min())
        gamma = 1 + (1 - d) * len(members)
        l0 = gamma / gamma.sum()
        lam = np.minimum(1, (l0**gamma + (1 - l0**gamma) * t / T) ** (1 / gamma))
        keep = np.zeros(n, dtype=bool)
        for m, c in zip(members, np.ceil(lam * sizes).astype(int), strict=True):
            keep[m[:c]] = True
        return np.flatnonzero(keep)

    subset = sched.epoch_indices(t)
    assert np.array_equal(subset, numpy_epoch())
    m = subset.size
    g_epoch = median_s(lambda: sched.epoch_indices(t), repeats)
    np_epoch = median_s(numpy_epoch, repeats)

    torch_sub = SubsetRandomSampler(subset.tolist())

    def ours_iter() -> None:  # the subset, its shuffle and the iteration (torch: iteration only)
        sampler = CurriculumSampler(sched, seed=0)
        sampler.set_epoch(t)
        consume(iter(sampler))

    g_iter = median_s(ours_iter, repeats)
    t_iter = median_s(lambda: consume(iter(torch_sub)), repeats)
    return [
        {
            "case": f"RRGCL epoch subset, {n} samples, t={t}/{T}",
            "measure": "array",
            "indices": m,
            "gradatim_per_s": m / g_epoch,
            "numpy_per_s": m / np_epoch,
            "vs_numpy": np_epoch / g_epoch,
            "build_s": build_s,
        },
        {
            "case": f"RRGCL epoch shuffled + consumed, {m} indices",
            "measure": "iterate",
            "indices": m,
            "gradatim_per_s": m / g_iter,
            "torch_per_s": m / t_iter,
            "vs_torch": t_iter / g_iter,
        },
    ]


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:9.1f}M"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:7.1f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--draws", type=int, default=10_000_000)
    parser.add_argument("--rrgcl-samples", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = weighted_rows(args.draws, args.repeats) + rrgcl_rows(args.rrgcl_samples, args.repeats)
    head = (
        f"{'case':<52} {'measure':<8} {'gradatim/s':>10} {'torch/s':>10} {'numpy/s':>10} "
        f"{'vs torch':>8} {'vs numpy':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['case']:<52} {r['measure']:<8} {fmt_rate(r.get('gradatim_per_s')):>10} "
            f"{fmt_rate(r.get('torch_per_s')):>10} {fmt_rate(r.get('numpy_per_s')):>10} "
            f"{fmt_ratio(r.get('vs_torch')):>8} {fmt_ratio(r.get('vs_numpy')):>8}"
        )
    for kind in ("array", "chunks", "iterate"):
        r = next(r for r in rows if r["case"] == "weighted draws, random" and r["measure"] == kind)
        print(
            f"weighted draws ({kind}) vs WeightedRandomSampler: {r['vs_torch']:.1f}x "
            f"(target >= 20x: {'met' if r['vs_torch'] >= 20 else 'not met'})"
        )
    machine = {
        **machine_info(),
        "torch_threads": 1,
        "gradatim_threads": 1,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
