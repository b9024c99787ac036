"""``gradatim bench``: measure your own data and augmentation with gradatim's loader against a
strong ``torch.utils.data.DataLoader`` baseline doing the same work, and guard it in CI.

    gradatim bench train.jsonl --augment augment.json --image-size 512 512 \\
        --batch-size 16 --workers 2 --epochs 2 --json bench.json --min-ratio 1.0

What is compared (both read the same manifest, same output size, batch size and worker count):

- ``gradatim``: :class:`gradatim.DataLoader` over :class:`gradatim.ManifestDataset` (Rust threads:
  reduced JPEG decode, crop/area resize, CLAHE, affine warp with boxes, normalise, one batch
  buffer; also renders the box-aware prompt/target text, which the baseline does not).
- ``torch+opencv``: ``torch.utils.data.DataLoader`` (worker *processes*, persistent, prefetch 2)
  over :class:`OpenCVDataset`, a deliberately strong baseline: the file is decoded by OpenCV at the
  same reduced JPEG scale (``IMREAD_REDUCED_GRAYSCALE_k``), then the same operations run with
  OpenCV at the output size (random resized crop, area resize, CLAHE, ``warpAffine`` with a random
  matrix drawn from the same distributions, boxes through the same matrix, flip, normalise to
  float32 CHW). OpenCV runs one thread per worker, so neither side oversubscribes the cores.

How it is measured: each loader runs in a fresh Python subprocess, so start-up, imports and peak
memory are its own. The first ``--warmup-batches`` batches are not timed (worker start-up, page
cache, allocator); the clock starts when the last of them arrives and runs through the rest of
that epoch plus ``--epochs`` further full epochs. ``images/s`` = timed samples / timed wall
time (with ``--repeats`` the runs interleave, each loader's median run is shown and the ratio is
the median of per-repeat ratios); ``stall`` = time the consumer waited inside ``next()`` (with
``--step-ms`` it simulates a training step per batch, so stall shows whether the loader keeps
up).

Peak memory, per loader (Linux; elsewhere only ``ru_maxrss``): while the timed epochs run, the
parent reads every process's ``VmHWM`` (peak RSS) every 0.1 s - the main process's, taken together
with its own ``ru_maxrss`` (which can miss a peak that glibc returned with ``madvise``), and each
worker process's (torch's workers are processes; gradatim's are threads). ``RSS total`` sums them,
counting pages shared between forked workers and their parent once per process, as ``ps`` would.
The fair total is the proportional set size (PSS) of the tree; reading it costs ~10 ms per process
that imported torch, so it is read only during one more, untimed epoch after the timed ones
(``memory_pass``). ``rss_after_imports_mb`` says how much was there before the loader was built
(torch alone is ~0.5 GB). ``RUSAGE_CHILDREN`` is not used: a helper that an import spawns
(``ldconfig -p`` from ``ctypes.util``) is charged the parent's whole RSS there.

Exit status: 0, or 2 when gradatim is below ``--min-ratio`` (its images/s divided by the
baseline's) or ``--min-images-per-s`` (1 when a loader fails).

Modules: :mod:`~gradatim.bench.config` (kinds, configuration, dataset),
:mod:`~gradatim.bench.baseline` (torch + OpenCV), :mod:`~gradatim.bench.gradatim_loader`,
:mod:`~gradatim.bench.child` (timing inside the measuring process),
:mod:`~gradatim.bench.runner` (subprocesses, memory watching, repeats, ratios),
:mod:`~gradatim.bench.machine` (machine description, CPU load), :mod:`~gradatim.bench.report`
(table, JSON) and :mod:`~gradatim.bench.cli` (the command).
"""

from __future__ import annotations

from gradatim.bench.baseline import (
    OpenCVDataset,
    apply_plan,
    centred_affine,
    crop_pixels,
    image_header_size,
    make_torch_opencv_loader,
    opencv_worker_init,
    random_crop_fractions,
    reduction_denominator,
)
from gradatim.bench.child import child_main, mark, measure_loader, memory_pass, peak_rss_mb
from gradatim.bench.cli import add_parser, run
from gradatim.bench.config import (
    EXIT_BELOW_THRESHOLD,
    EXIT_FAILED,
    GRADATIM,
    LABELS,
    SCHEMA,
    TORCH_OPENCV,
    bench_config,
    make_dataset,
)
from gradatim.bench.gradatim_loader import make_gradatim_loader
from gradatim.bench.machine import cpu_busy, library_version, machine_info, wait_until_quiet
from gradatim.bench.report import format_table, format_value, write_json
from gradatim.bench.runner import measure_subprocess, paired_ratios, run_bench

__all__ = [
    "EXIT_BELOW_THRESHOLD",
    "EXIT_FAILED",
    "GRADATIM",
    "LABELS",
    "SCHEMA",
    "TORCH_OPENCV",
    "OpenCVDataset",
    "add_parser",
    "apply_plan",
    "bench_config",
    "centred_affine",
    "child_main",
    "cpu_busy",
    "crop_pixels",
    "format_table",
    "format_value",
    "image_header_size",
    "library_version",
    "machine_info",
    "make_dataset",
    "make_gradatim_loader",
    "make_torch_opencv_loader",
    "mark",
    "measure_loader",
    "measure_subprocess",
    "memory_pass",
    "opencv_worker_init",
    "paired_ratios",
    "peak_rss_mb",
    "random_crop_fractions",
    "reduction_denominator",
    "run",
    "run_bench",
    "wait_until_quiet",
    "write_json",
]
