"""``worker_init_fn`` on the fast path, where workers are threads of the calling process.

torch calls ``worker_init_fn(i)`` first thing in worker process ``i``, after seeding that process
(``torch``, ``random`` and NumPy) from ``base_seed + i``, with
``torch.utils.data.get_worker_info()`` describing the worker. The fast path calls it in the
calling process, so it recreates that context for the duration of the call: the same worker info
and seeds, and afterwards the caller's random states are put back, so reseeding inside
``worker_init_fn`` does not reseed the training process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data._utils import worker as _torch_worker

__all__ = ["call_worker_init"]


def call_worker_init(
    worker_init_fn: Callable[[int], None], num_workers: int, base_seed: int, dataset: Any
) -> None:
    """Call ``worker_init_fn(i)`` for every worker ``i`` as a torch worker process would."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 - torch seeds the legacy global RNG
    try:
        with torch.random.fork_rng(devices=devices):
            for worker in range(num_workers):
                seed = base_seed + worker
                random.seed(seed)
                torch.default_generator.manual_seed(seed)  # CPU only: no lazy CUDA seeding
                np.random.seed(_torch_worker._generate_state(base_seed, worker))  # noqa: NPY002
                _torch_worker._worker_info = _torch_worker.WorkerInfo(
                    id=worker, num_workers=num_workers, seed=seed, dataset=dataset
                )
                try:
                    worker_init_fn(worker)
                finally:
                    _torch_worker._worker_info = None
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002
