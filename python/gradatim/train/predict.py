"""``gradatim predict CHECKPOINT --manifest M --split S -o predictions.jsonl``: generation with a
trained checkpoint on any manifest, written as ``gradatim evaluate``'s rows.

The checkpoint says how to rebuild its model: ``state.json`` holds the run's configuration, and
the base model is rebuilt exactly as the run built it: a local checkpoint (``[model].path``) is
loaded again; a tiny architecture gets the same config and seed (so the same random base weights)
with the tokenizer saved beside the adapter (``checkpoint-<step>/tokenizer/``). A checkpoint
without a saved tokenizer falls back to retraining the byte-level BPE on the run's own training
manifests (deterministic, as the run did: those manifests must still be where the run read
them). The LoRA adapter is then loaded with ``PeftModel.from_pretrained``.

The manifest's records of the split are built with the run's evaluation pipeline (the one its
validation used: CURE's after CURE's training augmentation, none after none; nothing random; the
model's image size, mean and std, the run's box format), prompts pinned at epoch 0 and the run's
seed (a record gets the prompt the run's validation gave it), and generated greedily in batches
(``--num-beams N``: beam search). ``--blank-images`` replaces every image by the blank image (a
constant mid-grey after normalisation), so the same model is scored without seeing the image;
``--base-model`` leaves the adapter out: the model as the run started (LoRA's B matrices start at
zero), the untrained baseline. Both are baselines for ``gradatim evaluate
--baseline-predictions`` (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

from gradatim import cli_paths

__all__ = ["predict", "load_checkpoint", "config_from_dict", "manifest_records", "add_parser"]


def config_from_dict(data: dict[str, Any]) -> Any:
    """The :class:`~gradatim.train.config.TrainConfig` a checkpoint's ``state.json`` holds
    (``TrainConfig.as_dict``'s output), without re-checking paths: the run already did."""
    from gradatim.train.config import (
        CurriculumSection,
        DataSection,
        ModelSection,
        OptimSection,
        Source,
        TrainConfig,
        TrainSection,
    )
    from gradatim.train.models import LoraSettings

    def make(cls: type, raw: dict[str, Any] | None, where: str) -> Any:
        try:
            return cls(**(raw or {}))
        except TypeError as e:
            raise ValueError(f"state.json: config [{where}]: {e}") from None

    data_raw = dict(data.get("data") or {})
    sources = [make(Source, s, "data.sources") for s in data_raw.pop("sources", [])]
    section = make(DataSection, data_raw, "data")
    section.sources = sources
    return TrainConfig(
        model=make(ModelSection, data.get("model"), "model"),
        lora=make(LoraSettings, data.get("lora"), "lora"),
        optim=make(OptimSection, data.get("optim"), "optim"),
        train=make(TrainSection, data.get("train"), "train"),
        data=section,
        curriculum=make(CurriculumSection, data.get("curriculum"), "curriculum"),
    )


def _bundle(cfg: Any, checkpoint: Path) -> Any:
    """The run's base model, rebuilt as ``loop.build_model`` built it, with the checkpoint's
    tokenizer for a tiny model."""
    from gradatim.train import checkpoint as ckpt
    from gradatim.train.loop import build_model

    if cfg.model.path is not None:
        return build_model(cfg, [])  # a local checkpoint: records are not used
    tok = ckpt.load_tokenizer(checkpoint)
    if tok is None:  # an older checkpoint: retrain the BPE on the run's manifests, as the run did
        from gradatim.train.data import source_records

        warnings.warn(
            f"{checkpoint} has no tokenizer/: retraining the tiny model's tokenizer from the "
            "run's training manifests",
            stacklevel=3,
        )
        return build_model(cfg, source_records(cfg))
    return build_model(cfg, [], tokenizer=tok)


def load_checkpoint(
    checkpoint: str | Path,
    device: Any = None,
    *,
    base_model: bool = False,
    base: str | Path | None = None,
) -> tuple[Any, Any, Any]:
    """``(config, bundle, model)``: the run's configuration, its rebuilt base model (with its
    tokenizer) and the model with the checkpoint's LoRA adapter (``base_model``: without it, the
    untrained model), in eval mode on ``device`` (default: CUDA when available). ``base`` (with
    ``base_model`` only) loads that local model instead of the run's: e.g. the randomly
    initialised tiny model a pre-trained base started from."""
    import torch
    from peft import PeftModel

    path = Path(checkpoint)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise cli_paths.CliError(f"{path}: not a checkpoint folder (no state.json)")
    state = json.loads(state_file.read_text())
    if "config" not in state:
        raise cli_paths.CliError(f"{state_file}: no run configuration in it")
    cfg = config_from_dict(state["config"])
    if base is not None:
        if not base_model:
            raise cli_paths.CliError("a replacement base model is scored without the adapter")
        cfg.model.path = str(base)
    bundle = _bundle(cfg, path)
    model = bundle.model
    if not base_model:
        with warnings.catch_warnings():  # a transformers deprecation notice raised inside peft
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            model = PeftModel.from_pretrained(bundle.model, str(path / "adapter"))
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    return cfg, bundle, model


def manifest_records(manifest: str | Path, split: str | None) -> list[dict[str, Any]]:
    """The records of ``split`` (all with ``None``) of a manifest, image paths made absolute, each
    keeping its own ``source``. The manifest is validated first (errors name file and line)."""
    from gradatim.data import ManifestDataset
    from gradatim.manifest.common import read_manifest

    path = Path(manifest)
    ManifestDataset(path, image_size=(8, 8))  # validation only: errors name file and line
    records = []
    for r in read_manifest(path):
        if split is not None and r["split"] != split:
            continue
        image = Path(r["image"])
        r["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
        records.append(r)
    if not records:
        raise cli_paths.CliError(f"{path}: no records of split {split!r}")
    return records


def predict(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str | None,
    out: str | Path,
    *,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    blank_images: bool = False,
    limit: int | None = None,
    base_model: bool = False,
    base: str | Path | None = None,
) -> Path:
    """Generate for every record of ``split`` of ``manifest`` (the first ``limit`` in manifest
    order) with ``checkpoint``'s model (``base_model``: without its adapter); write ``gradatim
    evaluate``'s rows (JSON lines, one per record, in manifest order) to ``out``; return it."""
    from gradatim.train.data import eval_augment, make_dataset
    from gradatim.train.validation import generate_rows

    if batch_size < 1 or max_new_tokens < 1 or num_beams < 1:
        raise cli_paths.CliError("batch size, max new tokens and beams must be >= 1")
    cfg, bundle, model = load_checkpoint(checkpoint, base_model=base_model, base=base)
    records = manifest_records(manifest, split)
    if limit is not None:
        records = records[: max(0, limit)]
    dataset = make_dataset(cfg, bundle, records, augment=eval_augment(cfg))
    rows = generate_rows(
        model,
        bundle,
        dataset,
        list(range(len(dataset))),
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        box_format=cfg.data.box_format,
        seed=cfg.train.seed,
        num_beams=num_beams,
        blank_images=blank_images,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, out)
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "predict",
        help="generate with a trained checkpoint on a manifest split (evaluate's input)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", type=Path, help="a checkpoint folder (out/checkpoint-<step>)")
    p.add_argument("--manifest", type=Path, required=True, help="the manifest to generate for")
    p.add_argument("--split", required=True, help="the manifest's split (e.g. validate, test)")
    p.add_argument("-o", "--out", type=Path, required=True, help="prediction rows (JSON lines)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--num-beams", type=int, default=1, help="beam search with N > 1 beams")
    p.add_argument(
        "--blank-images",
        action="store_true",
        help="replace every image by the blank (mid-grey) image: the model without the image",
    )
    p.add_argument(
        "--base-model",
        action="store_true",
        help="leave the adapter out: the model as the run started (the untrained baseline)",
    )
    p.add_argument(
        "--base",
        type=Path,
        help="with --base-model: score this local model instead of the run's base",
    )
    p.add_argument("--limit", type=int, help="only the first N records of the split")
    p.set_defaults(func=_run)
    cli_paths.declare(p, inputs=["checkpoint", "manifest"], outputs=["out"])


def _run(args: argparse.Namespace) -> int:
    out = predict(
        args.checkpoint,
        args.manifest,
        args.split,
        args.out,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_beams=args.num_beams,
        blank_images=args.blank_images,
        limit=args.limit,
        base_model=args.base_model,
        base=args.base,
    )
    n = sum(1 for line in out.read_text(encoding="utf-8").splitlines() if line.strip())
    how = [w for w, on in (("blank images", args.blank_images), ("base model", args.base_model))
           if on]  # fmt: skip
    note = f" ({', '.join(how)})" if how else ""
    print(f"{n} predictions{note} from {args.checkpoint} -> {out}")
    return 0
