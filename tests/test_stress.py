"""Stress: iterators created and abandoned leak no threads, files or memory; a training process
killed with SIGKILL at random batches and resumed from its last saved state delivers exactly the
uninterrupted stream (no sample lost or repeated, pixels equal); a slow batch with ``timeout``
raises torch's error and closing the iterator returns.

``make test`` runs the short version; ``make stress`` sets GRADATIM_STRESS=long (1,000 cycles,
at least 20 kills)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import gradatim as ga
from gradatim.datasets import phantom
from gradatim.image import encode_png

LONG = os.environ.get("GRADATIM_STRESS") == "long"
CYCLES = 1000 if LONG else 150
KILLS = 20 if LONG else 4


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom.generate(tmp_path_factory.mktemp("stress"), n=40, size=(64, 64))


def test_abandoned_iterators_leak_nothing(manifest: Path) -> None:
    ds = ga.ManifestDataset(manifest, image_size=(32, 32))
    loader = ga.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True)

    def cycle() -> None:
        it = iter(loader)
        next(it)
        del it  # abandoned mid-epoch: its worker threads must stop and be joined

    for _ in range(20):  # warm up allocator pools and caches
        cycle()
    threads, fds, rss = _threads(), _fds(), _rss()
    for _ in range(CYCLES):
        cycle()
    assert _threads() == threads
    assert _fds() == fds
    assert _rss() <= rss * 1.05, f"RSS grew from {rss >> 20} to {_rss() >> 20} MiB"


CHILD = textwrap.dedent("""
    import hashlib, json, os, sys, time
    import torch
    import gradatim as ga
    manifest, log, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ds = ga.ManifestDataset(manifest, image_size=(32, 32), augment=ga.Augment.cure_train())
    loader = ga.DataLoader(ds, batch_size=3, num_workers=2, shuffle=True,
                           generator=torch.Generator().manual_seed(7))
    state = None
    if os.path.exists(log):
        for line in open(log):
            try:
                state = json.loads(line)["state"]
            except (ValueError, KeyError):
                pass  # a line cut short by the kill
    if state is not None:
        loader.load_state_dict(state)
    with open(log, "a") as out:
        while loader.epoch < epochs:  # after a resume: the saved epoch, at its saved batch
            for batch in loader:
                digest = hashlib.sha256(batch["pixel_values"].numpy().tobytes()).hexdigest()
                row = {"ids": batch["id"], "pixels": digest, "state": loader.state_dict()}
                out.write(json.dumps(row) + "\\n")
                out.flush()
                time.sleep(0.03)  # the training step
    print("done")
""")


def _rows(log: Path) -> list[dict]:
    rows = []
    for line in log.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def test_sigkill_at_random_batches_then_resume_is_the_uninterrupted_stream(
    manifest: Path, tmp_path: Path
) -> None:
    epochs = 2
    ref_log = tmp_path / "ref.jsonl"
    subprocess.run([sys.executable, "-c", CHILD, str(manifest), str(ref_log), str(epochs)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    reference = [(r["ids"], r["pixels"]) for r in _rows(ref_log)]
    assert len(reference) == epochs * -(-len(ga.ManifestDataset(manifest)) // 3)
    log = tmp_path / "killed.jsonl"
    rng = random.Random(0)
    kills = 0
    while True:
        before = len(_rows(log)) if log.exists() else 0
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(manifest), str(log), str(epochs)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        # wait for progress, then kill at a random moment a few batches later
        deadline = time.monotonic() + 120
        while child.poll() is None and time.monotonic() < deadline:
            if log.exists() and len(_rows(log)) > before:
                break
            time.sleep(0.01)
        if kills < KILLS and child.poll() is None:
            time.sleep(rng.uniform(0.0, 0.05))
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()  # type: ignore[union-attr]
            kills += 1
            continue
        out, _ = child.communicate(timeout=300)
        assert "done" in out
        break
    assert kills == KILLS
    got = [(r["ids"], r["pixels"]) for r in _rows(log)]
    assert got == reference  # nothing lost, nothing repeated, the same pixels


def test_timeout_on_a_slow_batch_raises_and_closing_returns(tmp_path: Path) -> None:
    big = np.tile((np.arange(5000) % 256).astype(np.uint8), (5000, 1))
    (tmp_path / "big.png").write_bytes(encode_png(big))
    records = [{"id": f"r{i}", "image": "big.png", "source": "s", "task": "report",
                "split": "train", "text": "Normal."} for i in range(48)]  # fmt: skip
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = ga.ManifestDataset(path, image_size=(16, 16))
    loader = ga.DataLoader(ds, batch_size=48, num_workers=1, timeout=0.3)
    it = iter(loader)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.3 seconds"):
        next(it)
    assert time.monotonic() - start < 1.5
    closing = time.monotonic()
    del it
    assert time.monotonic() - closing < 3.0  # at most the close grace period
