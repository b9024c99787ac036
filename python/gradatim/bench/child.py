"""Inside a measuring subprocess: time a loader (warm-up, timed epochs, stalls), mark the
phases the watching parent samples memory in, and the entry point :func:`child_main`."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gradatim.bench.baseline import make_torch_opencv_loader
from gradatim.bench.config import GRADATIM, TORCH_OPENCV
from gradatim.bench.gradatim_loader import make_gradatim_loader

__all__ = ["ChildKinds", "child_main", "mark", "measure_loader", "memory_pass", "peak_rss_mb"]


def _mb_from_ru(value: int) -> float:
    return value / (1024 * 1024) if sys.platform == "darwin" else value / 1024


def peak_rss_mb() -> float | None:
    """``ru_maxrss`` of this process (its peak resident set size), in MiB."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    return _mb_from_ru(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


_MARKERS: Path | None = None


def mark(phase: str) -> None:
    """Tell the watching parent that a phase starts: ``"timed"`` (it samples each process's
    RSS, cheaply) or ``"memory"`` (it also reads the tree's PSS, which costs ~10 ms a read for a
    process that imported torch, so only in the untimed memory pass)."""
    if _MARKERS is not None:
        (_MARKERS / phase).touch()


def memory_pass(loader: Iterable[Any], min_seconds: float = 1.5) -> None:
    """Untimed: iterate ``loader`` (at least one epoch and ``min_seconds``) while the parent
    reads the process tree's PSS."""
    mark("memory")
    t0 = time.perf_counter()
    while True:
        for _ in loader:
            pass
        if time.perf_counter() - t0 >= min_seconds:
            break


def measure_loader(
    loader: Iterable[Any], *, epochs: int, warmup_batches: int, step_ms: float = 0.0
) -> dict[str, Any]:
    """Iterate ``loader`` and time it: the first ``warmup_batches`` batches are untimed, then the
    rest of that epoch and ``epochs`` further epochs are (``epochs`` epochs if no warm-up)."""
    n_batches = len(loader)  # type: ignore[arg-type]
    warmup = min(int(warmup_batches), n_batches)
    total_epochs = epochs + (1 if warmup > 0 else 0)
    step_s = step_ms / 1e3
    seen = samples = batches = 0
    stall = 0.0
    shape: list[int] | None = None
    dtype = ""
    t_begin = time.perf_counter()
    t_start = t_begin if warmup == 0 else None
    first_batch_s: float | None = None
    mark("timed")
    for _ in range(total_epochs):
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            t1 = time.perf_counter()
            if batch is None:
                break
            if first_batch_s is None:
                first_batch_s = t1 - t_begin
            pixels = batch["pixel_values"]
            if shape is None:
                shape, dtype = list(pixels.shape), str(pixels.dtype).replace("torch.", "")
            seen += 1
            if t_start is not None:
                stall += t1 - t0
                samples += int(pixels.shape[0])
                batches += 1
            elif seen >= warmup:
                t_start = t1
            if step_s:
                time.sleep(step_s)
        del it
    t_end = time.perf_counter()
    wall = t_end - (t_start if t_start is not None else t_end)
    return {
        "images_per_s": samples / wall if wall > 0 else 0.0,
        "ms_per_batch": wall / batches * 1e3 if batches else None,
        "wall_s": wall,
        "stall_s": stall,
        "batches": batches,
        "samples": samples,
        "first_batch_s": first_batch_s,
        "epochs_iterated": total_epochs,
        "warmup_batches": warmup,
        "output": {"shape": shape, "dtype": dtype},
    }


def _run_loader_kind(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    import gc

    make = {GRADATIM: make_gradatim_loader, TORCH_OPENCV: make_torch_opencv_loader}[kind]
    loader = make(config)
    result = measure_loader(
        loader,
        epochs=int(config["epochs"]),
        warmup_batches=int(config["warmup_batches"]),
        step_ms=float(config.get("step_ms", 0.0)),
    )
    if kind == GRADATIM:
        stats = loader.stats()
        result["last_epoch_stats"] = {k: v for k, v in stats.items() if k != "skipped_samples"}
    memory_pass(loader)
    del loader  # stops torch's persistent workers
    gc.collect()
    return result


ChildKinds = Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]]


def child_main(argv: Sequence[str], kinds: ChildKinds | None = None) -> int:
    """Entry point of a measuring subprocess: ``argv = [REQUEST_JSON_PATH]``; the request holds
    ``kind``, ``config``, ``out`` (where the result JSON goes) and ``markers`` (a folder for
    :func:`mark`). ``kinds`` adds measurement kinds (name -> function(config) -> result dict) to
    the built-in loaders; a loader kind calls :func:`measure_loader` then :func:`memory_pass`."""
    global _MARKERS
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    kind, config = request["kind"], request["config"]
    _MARKERS = Path(request["markers"]) if request.get("markers") else None
    import torch  # noqa: F401  - every kind needs it: count it as "imports"

    import gradatim.data  # noqa: F401

    if importlib.util.find_spec("cv2") is not None:
        import cv2  # noqa: F401
    rss_imports = peak_rss_mb()
    table: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
        GRADATIM: lambda c: _run_loader_kind(GRADATIM, c),
        TORCH_OPENCV: lambda c: _run_loader_kind(TORCH_OPENCV, c),
    }
    table.update(kinds or {})
    result = table[kind](config)
    result["rss_peak_mb"] = peak_rss_mb()
    result["rss_after_imports_mb"] = rss_imports
    Path(request["out"]).write_text(json.dumps(result), encoding="utf-8")
    return 0
