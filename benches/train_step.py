"""Training-step time and loader stall: a LoRA step of a tiny vision-language model fed by
gradatim's DataLoader and by torch's DataLoader over the same ManifestDataset, in one run.

Loader stall = time the step waited for its batch / step time; the target is < 2 %. On CPU the
tiny model (random weights, built from a config) stands in for the model; on a CUDA machine pass
``--model PATH`` (a local checkpoint of LLaVA / PaliGemma / Gemma 3) for a bf16 LoRA step of a real
one. Data: synthetic phantom radiographs (``gradatim.datasets.phantom``), written to a temporary
folder. Writes ``benches/results/train_step.json``.

    python benches/train_step.py [--steps 30] [--batch 8] [--workers 2] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.utils.data as tud

import gradatim as ga
from gradatim.bench import machine_info
from gradatim.datasets import phantom
from gradatim.train.loss import per_sample_loss
from gradatim.train.models import LoraSettings, apply_lora, load_model, texts_of, tiny_model
from gradatim.train.text import encode_batch
from gradatim.train.tokenizer import train_bpe


def measure(
    loader: Any, bundle: Any, model: torch.nn.Module, steps: int, device: torch.device
) -> dict:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    bf16 = device.type == "cuda"
    step_s, wait_s = [], []
    it = iter(loader)
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        t1 = time.perf_counter()
        enc = {
            k: v.to(device)
            for k, v in encode_batch(bundle, batch["prompt"], batch["target"]).items()
        }
        labels = enc.pop("labels")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(pixel_values=batch["pixel_values"].to(device), **enc).logits
        loss = per_sample_loss(logits, labels).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            step_s.append(time.perf_counter() - t0)
            wait_s.append(t1 - t0)
    step = statistics.median(step_s)
    return {"step_ms": 1000 * step, "stall_pct": 100 * sum(wait_s) / sum(step_s)}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--model", help="a local checkpoint (LLaVA / PaliGemma / Gemma 3)")
    p.add_argument("--out", type=Path, default=Path("benches/results/train_step.json"))
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        manifest = phantom.generate(tmp, args.images, size=(1024, 1024))
        records = [json.loads(line) for line in manifest.read_text().splitlines()]
        if args.model:
            bundle = load_model(args.model, dtype=torch.bfloat16 if device.type == "cuda" else None)
        else:
            tok = train_bpe(texts_of(records), vocab_size=1024)
            bundle = tiny_model("llava", tok, image_size=224, hidden=128)
        model = apply_lora(bundle.model, LoraSettings()).to(device)
        ds = ga.ManifestDataset(
            manifest,
            image_size=bundle.image_size,
            channels=3,
            mean=bundle.mean,
            std=bundle.std,
            augment=ga.Augment.cure_train(),
        )
        common = {
            "batch_size": args.batch,
            "shuffle": True,
            "num_workers": args.workers,
            "drop_last": True,
            "pin_memory": device.type == "cuda",
        }
        if args.workers > 0:
            common["persistent_workers"] = True
        results = {
            "gradatim": measure(ga.DataLoader(ds, **common), bundle, model, args.steps, device),
            "torch": measure(tud.DataLoader(ds, **common), bundle, model, args.steps, device),
        }
    model_name = args.model or "tiny-llava (224 px, hidden 128, random)"
    print(f"LoRA step, {model_name}, batch {args.batch}, {args.workers} workers, {device}")
    print("| loader | step ms | loader stall % |\n|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['step_ms']:.1f} | {r['stall_pct']:.2f} |")
    ratio = results["torch"]["step_ms"] / results["gradatim"]["step_ms"]
    print(f"step time, torch DataLoader / gradatim: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "model": model_name,
                "batch": args.batch,
                "workers": args.workers,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
