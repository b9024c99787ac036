"""Run by tests/test_loader_clients.py: Lightning's Trainer with DDP on 2 CPU processes, given a
gradatim.DataLoader; Lightning re-instantiates it with a DistributedSampler. Each process writes
the loader class it trained with and the samples it received per epoch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch

import gradatim as ga


class Probe(L.LightningModule):
    def __init__(self, out: str) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.out = out
        self.seen: list[list[int]] = []

    def on_train_epoch_start(self) -> None:
        self.seen.append([])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen[-1] += batch["index"].tolist()
        x = batch["pixel_values"].mean(dim=(1, 2, 3)).unsqueeze(1)
        return self.layer(x).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        loader = self.trainer.train_dataloader
        result = {
            "rank": self.global_rank,
            "type": type(loader).__name__,
            "fast": bool(getattr(loader, "fast_path", False)),
            "sampler": type(loader.sampler).__name__,
            "seen": self.seen,
        }
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(result))


def main(manifest: str, out: str) -> None:
    ds = ga.ManifestDataset(manifest, image_size=(32, 32))
    loader = ga.DataLoader(ds, batch_size=4, shuffle=True)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Probe(out), train_dataloaders=loader)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
