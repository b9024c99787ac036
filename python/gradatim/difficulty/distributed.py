"""Sharding the difficulty computation over ``torchrun`` ranks (``torch.distributed``).

Launch ``torchrun --nproc_per_node=G -m gradatim difficulty ...``: every rank computes a disjoint
range of row blocks, the partial sums are added with one ``all_reduce`` and rank 0 writes the file.
Backends: ``gloo`` on CPU, ``nccl`` on CUDA. Only tensors travel between ranks (no pickled
objects, so no ``all_gather_object``/``broadcast_object_list``).

Why the result does not depend on the number of ranks: the blocks are fixed by their global row
index (never by the rank's share), each block is computed by the same code wherever it runs, and
the partial sums are added as int64 fixed-point numbers (see :mod:`gradatim.difficulty.vns_gap`),
whose addition is associative. So ``G`` processes give bit-for-bit the numbers of one process.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "is_distributed",
    "rank_and_world",
    "init_from_env",
    "shard_triangular",
    "shard_even",
    "all_reduce_sum",
    "broadcast_array",
    "barrier",
]


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group of more than one rank."""
    try:
        dist = _dist()
    except ImportError:  # pragma: no cover - torch is optional for the CPU path
        return False
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if not is_distributed():
        return 0, 1
    dist = _dist()
    return int(dist.get_rank()), int(dist.get_world_size())


def init_from_env(device: str) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    ``gloo`` for CPU work, ``nccl`` for CUDA (each rank then uses GPU ``LOCAL_RANK``). Returns
    whether this process runs distributed. A no-op under a plain ``python`` launch."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist = _dist()
    if not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return is_distributed()


def shard_triangular(num_blocks: int, world: int, rank: int) -> range:
    """The contiguous range of block rows that ``rank`` computes in the upper-triangular scheme.

    Block row ``a`` holds ``num_blocks - a`` block pairs, so equal row counts would give rank 0
    about ``2 - 1/G`` times the mean work; the cut points are placed where the cumulative pair
    count crosses ``r / G`` of the total instead."""
    work = np.arange(num_blocks, 0, -1, dtype=np.float64)  # pairs in block row a
    cum = np.concatenate([[0.0], np.cumsum(work)])
    total = cum[-1]
    cuts = [int(np.searchsorted(cum, total * r / world, side="left")) for r in range(world + 1)]
    cuts[0], cuts[-1] = 0, num_blocks
    return range(cuts[rank], max(cuts[rank], cuts[rank + 1]))


def shard_even(num_blocks: int, world: int, rank: int) -> range:
    """Contiguous, equal-as-possible ranges (for work that is uniform per block, e.g. k-NN)."""
    base, extra = divmod(num_blocks, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def _comm_device() -> Any:
    import torch

    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(acc: Any) -> Any:
    """Sum ``acc`` (a NumPy array or a torch tensor) over all ranks; returns the same kind.

    Meant for the int64 fixed-point accumulators, whose sum is exact in any order."""
    if not is_distributed():
        return acc
    import torch

    dist = _dist()
    is_numpy = isinstance(acc, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(acc)) if is_numpy else acc
    dev = _comm_device()
    moved = t.to(dev) if t.device != dev else t
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    if is_numpy:
        return moved.cpu().numpy()
    return moved.to(t.device) if moved is not t else moved


_DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.float16]


def broadcast_array(arr: np.ndarray | None, src: int = 0) -> np.ndarray:
    """Send a NumPy array (up to 6-D) from ``src`` to every rank; other ranks pass ``None``."""
    if not is_distributed():
        if arr is None:
            raise ValueError("broadcast_array: no array outside a process group")
        return arr
    import torch

    dist = _dist()
    dev = _comm_device()
    header = torch.zeros(8, dtype=torch.int64)
    if dist.get_rank() == src:
        assert arr is not None
        arr = np.ascontiguousarray(arr)
        code = [i for i, d in enumerate(_DTYPES) if arr.dtype == d]
        if not code or arr.ndim > 6:
            raise ValueError(f"broadcast_array: unsupported array {arr.dtype} {arr.shape}")
        header[0], header[1] = code[0], arr.ndim
        header[2 : 2 + arr.ndim] = torch.tensor(arr.shape, dtype=torch.int64)
    header = header.to(dev)
    dist.broadcast(header, src=src)
    h = header.cpu().tolist()
    dtype, shape = _DTYPES[h[0]], tuple(h[2 : 2 + h[1]])
    if dist.get_rank() == src:
        data = torch.from_numpy(arr).to(dev)
    else:
        data = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, device=dev)
    dist.broadcast(data, src=src)
    return data.cpu().numpy()


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if is_distributed():
        _dist().barrier()
