"""The clients that wrap or re-create loaders, run for real with 2 CPU processes: accelerate
(``torchrun``) and Lightning's Trainer (DDP). Each process reports what it received; the shards
must be disjoint and complete, and gradatim's fast path must survive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch.utils.data as tud

CLIENTS = Path(__file__).parent / "clients"


def run(cmd: list[str], out: Path) -> list[dict]:
    out.mkdir()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def assert_partition(per_rank: list[list[int]], n: int) -> None:
    a, b = per_rank
    assert not set(a) & set(b)
    assert sorted(a + b) == list(range(n))


def test_accelerate_two_processes(manifest: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    ranks = run(
        [*cmd, str(CLIENTS / "accelerate_shards.py"), str(manifest), str(tmp_path / "o")],
        tmp_path / "o",
    )
    for key in ("recipe", "plain"):
        for epoch in range(2):
            shards = [sum(r[key][epoch], []) for r in ranks]
            assert_partition(shards, 24)
            assert all(len(b) == 3 for r in ranks for b in r[key][epoch])
        first, second = (sum(ranks[0][key][e], []) for e in range(2))
        assert first != second  # reshuffled each epoch
    for r in ranks:
        assert r["recipe_type"] == "DataLoader" and r["recipe_fast"]  # gradatim's, fast path
        assert r["plain_shape"] == [3, 1, 32, 32]  # accelerate's own loader, whole batches


def test_lightning_ddp_reinstantiates_with_the_fast_path(manifest: Path, tmp_path: Path) -> None:
    ranks = run(
        [sys.executable, str(CLIENTS / "lightning_ddp.py"), str(manifest), str(tmp_path / "o")],
        tmp_path / "o",
    )
    for r in ranks:
        assert r["type"] == "DataLoader" and r["fast"] and r["sampler"] == "DistributedSampler"
    for epoch in range(2):
        assert_partition([r["seen"][epoch] for r in ranks], 24)
        for rank, r in enumerate(ranks):  # the oracle: torch's DistributedSampler, seed 0
            sampler = tud.DistributedSampler(
                range(24), num_replicas=2, rank=rank, shuffle=True, seed=0
            )
            sampler.set_epoch(epoch)
            assert r["seen"][epoch] == list(sampler)
