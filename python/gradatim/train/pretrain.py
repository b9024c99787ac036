"""A small base model that knows the data: full-parameter pre-training of a tiny random
vision-language model, saved as a local Hugging Face checkpoint that ``gradatim train`` loads with
``[model] path = ...`` exactly as it loads a real base model.

Why: LoRA adapts a model that already has useful weights. On a randomly initialised tiny model the
adapters (rank 16 on random matrices) and the frozen random head learn little in minutes on a CPU:
token cross-entropy floors near 4 nats and greedy generation collapses to the most frequent report.
Full-parameter steps give the tiny base what a real one brings (where things are in the image, the
vocabulary, the templates); the curricula then run as they do on a real model, as LoRA phases on
a frozen base. Grounding comes first (``grounding_steps`` on the phrase and anatomy grounding
records only, as CURE's own phase 1 trains on anatomy-grounded reports before the other tasks): a
tiny model learns the prompt's prior within a hundred steps and only later starts to read the
image; then ``steps`` on every task, the grounding records kept at ``grounding_share`` of the
samples (CURE's interleave of two groups, grounding and the rest) so that the long reports do not
wash out what the grounding steps taught. Only the ``split`` records are read.

What to pre-train on: a corpus of other studies than the curricula's data, as a real base model is
pre-trained on other data of its domain. On the 2,438 training studies of the demo's own data the
tiny model memorises (0.77 IoU on its training rows, 0.41 held out after 6,500 steps); on a
separate 12,000-study phantom corpus (seed 1) the defaults reach 0.537 mean held-out validation
IoU over three seeds against 0.334 for the prompt alone (docs/training.md, "What held the tiny
base back"). The 16 px patches (4 x 4 image tokens at 64 px) cost 56 % of the time per step of 8 px
patches at the same IoU, which pays for the 6,500 steps.

The checkpoint folder holds the model (``model.safetensors``, ``config.json``), its tokenizer (the
byte-level BPE trained on the manifest's text) and a processor whose image processor gives the
size, mean and std ``ManifestDataset`` needs. Supported: ``tiny-llava`` (the family whose processor
saves a plain tokenizer).
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradatim import cli_paths

__all__ = ["PretrainSettings", "pretrain_tiny", "phantom_corpus", "add_parser", "PROMPT_WORDS"]

#: Prompt words the dataset's task templates use, added to the tokenizer's training text.
PROMPT_WORDS = "Ground the phrase: Locate the Describe the Location of the Description:"

#: The tasks of the grounding part of pre-training.
GROUNDING_TASKS = ("phrase_grounding", "anatomy_grounded_report")


@dataclass
class PretrainSettings:
    """What to build and how long to train it (defaults: the demo's tiny base)."""

    family: str = "llava"
    image_size: int = 64
    patch: int = 16  # the vision tower's patch side: 64 px -> 4 x 4 image tokens
    hidden: int = 128
    vocab_size: int = 1024
    grounding_steps: int = 5000  # first: phrase and anatomy grounding records only
    steps: int = 1500  # then: every task
    grounding_share: float = 0.5  # of the samples of those later steps (the rest: other tasks)
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 50
    seed: int = 0
    box_format: str = "cure"
    split: str = "train"


#: The seed of the phantom pre-training corpus: the data the curricula train and are evaluated on
#: is drawn with seed 0, so the corpus holds other studies.
CORPUS_SEED = 1


def phantom_corpus(out: str | Path, n: int, size: int) -> Path:
    """Write a phantom pre-training corpus of ``n`` studies (``size`` px, seed
    :data:`CORPUS_SEED`) under ``out``; returns its manifest."""
    from gradatim.datasets import phantom

    return phantom.generate(out, n=n, seed=CORPUS_SEED, size=(size, size))


def _records(manifests: Sequence[str | Path], split: str) -> list[dict[str, Any]]:
    """Every record of ``split`` in ``manifests``, images made absolute."""
    from gradatim.data import ManifestDataset
    from gradatim.manifest import read_manifest

    out = []
    for m in manifests:
        path = Path(m)
        ManifestDataset(path, image_size=(8, 8))  # validation: errors name the file and line
        for r in read_manifest(path):
            if r["split"] == split:
                image = Path(r["image"])
                r["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
                out.append(r)
    if not out:
        raise ValueError(f"no records of split {split!r} in {', '.join(map(str, manifests))}")
    return out


def _sampler(part: list[dict[str, Any]], samples: int, s: PretrainSettings, mixed: bool) -> Any:
    """The order of one part: ``samples`` draws, grounding records at ``s.grounding_share`` of
    them in the mixed part (CURE's interleave of two sources: grounding and every other task),
    a plain shuffle of the grounding records in the first."""
    import numpy as np

    from gradatim.sampling import MultiSourceSampler

    is_grounding = np.array([r["task"] in GROUNDING_TASKS for r in part])
    groups = [np.flatnonzero(is_grounding), np.flatnonzero(~is_grounding)]
    weights = [s.grounding_share, 1.0 - s.grounding_share] if mixed else [1.0, 0.0]
    keep = [k for k, g in enumerate(groups) if len(g) and weights[k] > 0]
    return MultiSourceSampler(
        [len(groups[k]) for k in keep], [weights[k] for k in keep], samples, seed=s.seed,
        mode="interleave", replacement=False, members=[groups[k] for k in keep],
    )  # fmt: skip


def _save(bundle: Any, model: Any, out: Path, settings: PretrainSettings) -> None:
    """The model, its tokenizer and a processor, as a Hugging Face checkpoint folder."""
    from transformers import LlavaProcessor

    try:  # transformers 5: the PIL-backed processor has its own name
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4.56 (the declared minimum): it is CLIPImageProcessor
        from transformers import CLIPImageProcessor as ImageProcessor

    side = settings.image_size
    images = ImageProcessor(
        size={"height": side, "width": side},
        crop_size={"height": side, "width": side},
        do_center_crop=False,
        image_mean=list(bundle.mean),
        image_std=list(bundle.std),
    )
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=bundle.tokenizer,
        patch_size=settings.patch,
        vision_feature_select_strategy="default",
        chat_template=bundle.tokenizer.chat_template,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    bundle.tokenizer.save_pretrained(out)


def pretrain_tiny(
    manifests: Sequence[str | Path], out: str | Path, settings: PretrainSettings | None = None
) -> Path:
    """Pre-train a tiny ``settings.family`` model on the ``settings.split`` records of
    ``manifests`` (every parameter, AdamW, linear warm-up then linear decay over both parts,
    gradient norm clipped at 1; grounding records first, then every record) and save it under
    ``out``; returns ``out`` (0 steps: the randomly initialised model, the untrained baseline).
    Writes ``out/pretrain.json`` (settings, losses, seconds). Deterministic for a given seed on
    one machine."""
    import torch

    from gradatim.data import DataLoader
    from gradatim.train.data import model_dataset
    from gradatim.train.loss import per_sample_loss
    from gradatim.train.models import texts_of, tiny_model
    from gradatim.train.text import encode_batch
    from gradatim.train.tokenizer import train_bpe

    s = settings or PretrainSettings()
    if not 0.0 <= s.grounding_share <= 1.0:
        raise ValueError(f"pretrain_tiny: grounding_share must be in [0, 1]: {s.grounding_share}")
    if s.family != "llava":
        raise ValueError(f"pretrain_tiny: only the llava family is supported, not {s.family!r}")
    out = Path(out)
    t0 = time.perf_counter()
    torch.manual_seed(s.seed)
    records = _records(manifests, s.split)
    tok = train_bpe([*texts_of(records), PROMPT_WORDS], vocab_size=s.vocab_size)
    bundle = tiny_model(
        s.family, tok, image_size=s.image_size, hidden=s.hidden, seed=s.seed, patch=s.patch
    )
    model = bundle.model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
    total = s.grounding_steps + s.steps

    def rate(step: int) -> float:
        return min(1.0, (step + 1) / max(1, s.warmup)) * max(0.0, 1.0 - step / max(1, total))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    losses: list[float] = []
    grounding = [r for r in records if r["task"] in GROUNDING_TASKS]
    model.train()
    for part, n, mixed in ((grounding, s.grounding_steps, False), (records, s.steps, True)):
        if n == 0 or not part:
            continue
        data = model_dataset(bundle, part, None, s.box_format, s.seed)
        loader = DataLoader(data, batch_size=s.batch_size, drop_last=True,
                            sampler=_sampler(part, n * s.batch_size, s, mixed))  # fmt: skip
        for batch in loader:
            enc = encode_batch(bundle, batch["prompt"], batch["target"])
            labels = enc.pop("labels")
            logits = model(pixel_values=batch["pixel_values"], **enc).logits
            loss = per_sample_loss(logits, labels).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # generation-config notices of a from-config model
        _save(bundle, model, out, s)
    summary = {
        "settings": asdict(s),
        "manifests": [str(m) for m in manifests],
        "records": len(records),
        "losses": losses,
        "seconds": time.perf_counter() - t0,
    }
    (out / "pretrain.json").write_text(json.dumps(summary, indent=1))
    if losses and not math.isfinite(losses[-1]):
        raise RuntimeError(f"pretrain_tiny: the loss diverged ({losses[-1]})")
    return out


def _main(args: argparse.Namespace) -> int:
    settings = PretrainSettings(
        image_size=args.image_size,
        patch=args.patch,
        hidden=args.hidden,
        vocab_size=args.vocab_size,
        grounding_steps=args.grounding_steps,
        steps=args.steps,
        grounding_share=args.grounding_share,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        box_format=args.box_format,
    )
    out = pretrain_tiny(args.manifest, args.out, settings)
    losses = json.loads((out / "pretrain.json").read_text())["losses"] or [math.nan]
    print(f"pre-trained tiny-llava: loss {losses[0]:.3f} -> {losses[-1]:.3f}, saved to {out}")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``gradatim pretrain MANIFEST... -o DIR``."""
    p = sub.add_parser(
        "pretrain",
        help="pre-train a tiny base model on a manifest's training split (a local checkpoint)",
    )
    p.add_argument("manifest", nargs="+", type=Path, help="manifest(s) whose train split to use")
    p.add_argument("-o", "--out", type=Path, required=True, help="checkpoint folder to write")
    defaults = PretrainSettings()
    p.add_argument(
        "--grounding-steps",
        type=int,
        default=defaults.grounding_steps,
        help="first steps on phrase and anatomy grounding records only",
    )
    p.add_argument("--steps", type=int, default=defaults.steps, help="then steps on every task")
    p.add_argument(
        "--grounding-share",
        type=float,
        default=defaults.grounding_share,
        help="share of grounding records in those later steps",
    )
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument(
        "--patch",
        type=int,
        default=defaults.patch,
        help="the vision tower's patch side in pixels (divides --image-size)",
    )
    p.add_argument("--hidden", type=int, default=defaults.hidden)
    p.add_argument("--vocab-size", type=int, default=defaults.vocab_size)
    p.add_argument("--box-format", default=defaults.box_format)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.set_defaults(func=_main)
    cli_paths.declare(p, inputs=["manifest"], output_dirs=["out"])
