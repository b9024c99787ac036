"""The measured side: :class:`gradatim.DataLoader` over the configured manifest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gradatim.bench.config import make_dataset

__all__ = ["make_gradatim_loader"]


def make_gradatim_loader(config: Mapping[str, Any]) -> Any:
    """:class:`gradatim.DataLoader` over the manifest (fast path), shuffled."""
    import torch

    from gradatim.data.loader import DataLoader

    loader = DataLoader(
        make_dataset(config),
        batch_size=int(config["batch_size"]),
        shuffle=True,
        num_workers=int(config["workers"]),
        generator=torch.Generator().manual_seed(int(config["seed"])),
    )
    if not loader.fast_path:  # pragma: no cover - a ManifestDataset always takes it
        raise RuntimeError("gradatim.DataLoader did not take the fast path")
    return loader
