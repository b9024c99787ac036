"""Hugging Face ``accelerate`` with the fast path kept.

``Accelerator.prepare(loader)`` rebuilds every ``torch.utils.data.DataLoader`` it is given as its
own loader class over the same dataset, so a :class:`gradatim.DataLoader` would come back as
accelerate's loader: correctly sharded, and still building each batch in one Rust call (through
``ManifestDataset.__getitems__``), but in worker processes, with accelerate's resume rather than
gradatim's. One line keeps gradatim's loader instead::

    loader = gradatim.data.accelerate.prepare_data_loader(accelerator, loader)

It shards the loader's batches exactly as ``Accelerator.prepare`` does (accelerate's own
``BatchSamplerShard``, with the accelerator's ``split_batches`` and ``even_batches``), makes a
``RandomSampler`` draw the same permutation on every process (one seed, broadcast from process
0, as accelerate's synchronised generator does), moves batches to ``accelerator.device`` when
device placement is on, and marks the loader as prepared, so a later ``accelerator.prepare``
passes it through.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.data as tud

from gradatim.data.loader import DataLoader

__all__ = ["prepare_data_loader"]


def prepare_data_loader(accelerator: Any, loader: DataLoader) -> DataLoader:
    """A :class:`gradatim.DataLoader` serving this process's shard of ``loader``'s batches."""
    from accelerate.data_loader import BatchSamplerShard
    from accelerate.utils import broadcast

    if not isinstance(loader, DataLoader):
        raise TypeError(f"expected a gradatim.DataLoader, got {type(loader).__name__}")
    if loader.batch_sampler is None:
        raise ValueError("prepare_data_loader needs batches (batch_size or batch_sampler)")
    processes = int(accelerator.num_processes)
    sampler = getattr(loader.batch_sampler, "sampler", None)
    if processes > 1 and isinstance(sampler, tud.RandomSampler) and sampler.generator is None:
        drawn = torch.empty((1,), dtype=torch.int64).random_().to(accelerator.device)
        seed = int(broadcast(drawn, from_process=0).item())  # a tensor: nothing is pickled
        sampler.generator = torch.Generator().manual_seed(seed)
    batch_sampler: Any = loader.batch_sampler
    if processes > 1:
        batch_sampler = BatchSamplerShard(
            loader.batch_sampler,
            num_processes=processes,
            process_index=int(accelerator.process_index),
            split_batches=bool(accelerator.split_batches),
            even_batches=bool(accelerator.even_batches),
        )
    prepared = DataLoader(
        loader.dataset,
        batch_sampler=batch_sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        in_order=loader.in_order,
        snapshot_every_n_steps=loader.snapshot_every_n_steps,
    )
    if accelerator.device_placement:
        prepared.device = accelerator.device
    prepared._is_accelerate_prepared = True
    accelerator._dataloaders.append(prepared)
    return prepared
