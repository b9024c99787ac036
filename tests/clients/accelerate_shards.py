"""Run by tests/test_loader_clients.py under ``torchrun --nproc_per_node 2``: each process writes
which samples it received, two epochs, through gradatim's one-line recipe and through plain
``Accelerator.prepare``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator

import gradatim as ga
from gradatim.data.accelerate import prepare_data_loader


def main(manifest: str, out: str) -> None:
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(100 + accelerator.process_index)  # ranks' RNGs differ, as in real runs
    ds = ga.ManifestDataset(manifest, image_size=(32, 32))
    result: dict[str, object] = {"rank": accelerator.process_index}
    recipe = prepare_data_loader(accelerator, ga.DataLoader(ds, batch_size=3, shuffle=True))
    recipe = accelerator.prepare(recipe)  # already prepared: passed through
    result["recipe_type"] = type(recipe).__name__
    result["recipe_fast"] = bool(getattr(recipe, "fast_path", False))
    result["recipe"] = [[b["index"].tolist() for b in recipe] for _ in range(2)]
    plain = accelerator.prepare(ga.DataLoader(ds, batch_size=3, shuffle=True, num_workers=1))
    result["plain"] = [[b["index"].tolist() for b in plain] for _ in range(2)]
    shape = next(iter(plain))["pixel_values"].shape
    result["plain_shape"] = list(shape)
    Path(out, f"rank{accelerator.process_index}.json").write_text(json.dumps(result))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
