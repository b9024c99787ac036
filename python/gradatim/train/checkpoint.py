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
``read_state`` checks ``state.json`` against the checkpoint's own records before anything is
restored (its step against the folder's name and, with ``check_optimizer_steps``, against the
optimizer's step count; the loader's positions are integers >= 0): a damaged or edited
checkpoint is refused with one line (:class:`CheckpointError`) naming the file and key.
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

from gradatim.errors import GradatimError

__all__ = [
    "CheckpointError",
    "save",
    "load",
    "read_state",
    "check_optimizer_steps",
    "check_loader_state",
    "latest",
    "save_tokenizer",
    "load_tokenizer",
]


class CheckpointError(GradatimError, ValueError):
    """A checkpoint that cannot be resumed from (damaged, edited, or not a checkpoint); the message
    names the file and the key."""


#: The loader state's positions (and its sampler's): non-negative integers.
_POSITIONS = ("epoch", "batches_done", "position", "base_seed")
_MAX_POSITION = 2**63 - 1


def _check_positions(state: Any, where: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: expected an object, got {type(state).__name__}")
    for key in _POSITIONS:
        if key in state and state[key] is not None:
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int):
                raise CheckpointError(f"{where}.{key}: expected an integer, got {value!r}")
            if not 0 <= value <= _MAX_POSITION:
                raise CheckpointError(f"{where}.{key}: expected an integer >= 0, got {value}")
    ahead = state.get("ahead", [])
    if not isinstance(ahead, list) or any(
        isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _MAX_POSITION for v in ahead
    ):
        raise CheckpointError(f"{where}.ahead: expected a list of integers >= 0")


def read_state(path: Path) -> dict[str, Any]:
    """``path/state.json``, checked: a JSON object whose ``step`` is the step in the folder's name
    (``checkpoint-<step>``) and whose loader positions (``loader.epoch``, ``batches_done``, its
    sampler's ``epoch`` and ``position``, ...) are integers >= 0. Raises :class:`CheckpointError`
    naming the file and key."""
    path = Path(path)
    file = path / "state.json"
    if not file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder (no state.json)")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{file}: step: expected an integer >= 0, got {step!r}")
    named = path.name.removeprefix("checkpoint-")
    if path.name.startswith("checkpoint-") and named.isdigit() and int(named) != step:
        raise CheckpointError(
            f"{file}: step: {step}, but the checkpoint was saved at step {named} "
            "(its folder's name)"
        )
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{file}: config: missing (not a checkpoint of gradatim train)")
    loader = state.get("loader")
    _check_positions(loader, f"{file}: loader")
    if loader.get("sampler") is not None:
        _check_positions(loader["sampler"], f"{file}: loader.sampler")
    return state


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


def check_optimizer_steps(path: Path, expected: int) -> None:
    """The checkpoint's optimizer took ``expected`` steps (AdamW's per-parameter ``step``: the
    most any parameter has, read from ``optimizer.safetensors`` without restoring it): an edited
    ``step`` in ``state.json`` (and folder name) would otherwise skip training steps silently.
    Raises :class:`CheckpointError`."""
    from safetensors import safe_open

    file = Path(path) / "optimizer.safetensors"
    try:
        with safe_open(str(file), framework="pt") as f:
            counts = [int(float(f.get_tensor(k))) for k in f.keys() if k.endswith(".step")]
        meta = json.loads((Path(path) / "optimizer.json").read_text(encoding="utf-8"))
        scalars = meta.get("scalars", {}) if isinstance(meta, dict) else {}
        counts += [int(v["step"]) for v in scalars.values() if "step" in v]  # a float step
    except OSError:
        raise
    except Exception as e:  # not a safetensors file, not the optimizer's JSON
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{Path(path)}: the optimizer cannot be read ({first})") from None
    taken = max(counts) if counts else 0
    if taken != expected:
        raise CheckpointError(
            f"{Path(path) / 'state.json'}: step: implies {expected} optimizer steps, but the "
            f"checkpoint's optimizer took {taken}"
        )


def check_loader_state(
    path: Path, state: dict[str, Any], grad_accum: int, loader: Any = None
) -> None:
    """The loader positions of ``state`` (:func:`read_state`'s) are ones the run can have reached
    by its step: the run drew ``step x grad_accum`` batches, so that bounds the batches done in
    the epoch and, as an epoch takes at least one batch, the loader's (and its sampler's) epoch;
    with the restored ``loader``, the batches done are at most its batches per epoch and the
    sampler's position at most its length. Raises
    :class:`CheckpointError` naming the key."""
    file = Path(path) / "state.json"
    done = int(state["step"]) * grad_accum  # the batches the run has drawn
    saved = state["loader"]
    parts = [("loader", saved)]
    if isinstance(saved.get("sampler"), dict):
        parts.append(("loader.sampler", saved["sampler"]))
    for where, part in parts:
        epoch = part.get("epoch")
        if isinstance(epoch, int) and epoch > done:
            raise CheckpointError(
                f"{file}: {where}.epoch: {epoch}, but {state['step']} steps of {grad_accum} "
                f"batches reach epoch {done} at most"
            )
    batches = saved.get("batches_done")
    if isinstance(batches, int) and batches > done:
        raise CheckpointError(
            f"{file}: loader.batches_done: {batches}, but {state['step']} steps of {grad_accum} "
            f"batches drew {done}"
        )
    if loader is None:
        return
    bounds = [("loader.batches_done", saved.get("batches_done"), loader)]
    if isinstance(saved.get("sampler"), dict):
        sampler = getattr(loader, "sampler", None)
        bounds.append(("loader.sampler.position", saved["sampler"].get("position"), sampler))
    for where, value, sized in bounds:
        try:
            limit = len(sized)
        except TypeError:  # no length: nothing to compare with
            continue
        if isinstance(value, int) and value > limit:
            raise CheckpointError(f"{file}: {where}: {value}, but an epoch has {limit} at most")


def load(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    rank: int = 0,
) -> dict[str, Any]:
    """Restore the adapter, the optimizer and this rank's RNGs from ``path``; returns
    ``state.json`` (checked by :func:`read_state`)."""
    from peft import set_peft_model_state_dict

    path = Path(path)
    state = read_state(path)
    try:
        weights = load_file(path / "adapter" / "adapter_model.safetensors")
        set_peft_model_state_dict(model, weights)
        meta = json.loads((path / "optimizer.json").read_text())
        tensors = load_file(path / "optimizer.safetensors")
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
        rng_meta = json.loads((path / f"rng-{rank}.json").read_text())
        _set_rng_state(load_file(path / f"rng-{rank}.safetensors"), rng_meta)
    except OSError:
        raise
    except Exception as e:  # safetensors, JSON, shapes: a damaged checkpoint, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot be restored ({first})") from None
    return state


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
