"""Checkpoints from which a run continues bit-exactly, with no pickle anywhere.

``out/checkpoint-<step>/`` holds:

- ``adapter/``: the LoRA adapter in peft's own format (``adapter_model.safetensors`` +
  ``adapter_config.json``), loadable with ``PeftModel.from_pretrained``;
- ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's tensors and its structure;
- ``rng-<rank>.safetensors`` + ``rng-<rank>.json``: each rank's torch CPU (and CUDA) RNG,
  NumPy's and Python's;
- ``state.json``: the step, the loader's state (with its sampler's), the curricula, the config;
- ``tokenizer/`` (when the run hands it over): the run's tokenizer (``save_pretrained``, JSON
  only, the chat template inside ``tokenizer_config.json``), so a tiny model's byte-level BPE,
  trained from the run's manifests, is restored as it was (``load_tokenizer``) instead of
  being retrained (``gradatim predict``).

``latest(out)`` finds the newest complete checkpoint (``--resume auto``); a checkpoint is written
to a temporary folder and renamed, so a run killed while saving leaves the previous one intact.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["save", "load", "latest", "save_tokenizer", "load_tokenizer"]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - global state
    tensors["numpy.keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python.state"] = torch.tensor(internal, dtype=torch.int64)
    meta = {
        "numpy": {
            "kind": kind,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "gauss_next": gauss_next},
    }
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    keys = tensors["numpy.keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    p = meta["python"]
    random.setstate((p["version"], tuple(int(v) for v in tensors["python.state"]), p["gauss_next"]))


def _barrier(world_size: int) -> None:
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def save(
    out: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    rank: int = 0,
    world_size: int = 1,
    tokenizer: Any | None = None,
) -> Path:
    """Write ``out/checkpoint-<step>`` (atomically) and return its path. ``state`` is JSON data
    (loader, curricula, config). Data-parallel ranks hold equal adapters and optimizers: rank 0
    writes them (and ``tokenizer``, when given, to ``tokenizer/``); every rank writes its own RNG
    states (``rng-<rank>.*``)."""
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.tmp"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(world_size)
    rng_tensors, rng_meta = _rng_state()
    save_file(rng_tensors, tmp / f"rng-{rank}.safetensors")
    (tmp / f"rng-{rank}.json").write_text(json.dumps(rng_meta))
    if rank == 0:
        with warnings.catch_warnings():  # peft < 0.21 warns for a model built from a config
            warnings.filterwarnings("ignore", message="Could not find a config file in  - ")
            model.save_pretrained(tmp / "adapter", safe_serialization=True)  # type: ignore[operator]
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(meta))
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}))
        if tokenizer is not None:
            save_tokenizer(tmp / "tokenizer", tokenizer)
    _barrier(world_size)
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    _barrier(world_size)
    return final


def load(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, rank: int = 0
) -> dict[str, Any]:
    """Restore the adapter, the optimizer and this rank's RNGs from ``path``; returns
    ``state.json``."""
    from peft import set_peft_model_state_dict

    weights = load_file(path / "adapter" / "adapter_model.safetensors")
    set_peft_model_state_dict(model, weights)
    meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta))
    rng_meta = json.loads((path / f"rng-{rank}.json").read_text())
    _set_rng_state(load_file(path / f"rng-{rank}.safetensors"), rng_meta)
    return json.loads((path / "state.json").read_text())


def save_tokenizer(path: Path, tokenizer: Any) -> None:
    """``tokenizer.save_pretrained(path)`` with JSON files only: the chat template goes into
    ``tokenizer_config.json`` (not a ``.jinja`` file), as every transformers version reads it."""
    tokenizer.save_pretrained(str(path), save_jinja_files=False)


def load_tokenizer(path: Path) -> Any:
    """The tokenizer saved in checkpoint ``path`` (``path/tokenizer``), or None when the run did
    not save one. Read from the folder only (never downloaded)."""
    folder = Path(path) / "tokenizer"
    if not (folder / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def latest(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out``, or None."""
    found = [
        (int(p.name.split("-", 1)[1]), p)
        for p in out.glob("checkpoint-*")
        if p.is_dir() and (p / "state.json").is_file()
    ]
    return max(found)[1] if found else None
