"""The demo's training part: the mission end to end on SYNTHETIC phantom data, on the CPU (the GPU
when present), in a few minutes.

1. phantom studies (three sources, several tasks, a validation split);
2. RRGCL difficulty (``gradatim difficulty``: VNS-Gap + ITAS on the offline MiniLM text encoder
   and the image fallback embeddings);
3. a short LoRA run of a tiny LLaVA (random weights, built from a config): CURE's phase 1 on the
   anatomy-grounded task, then the multi-task phase with RRGCL's class-level epoch subsets
   inside each source and CURE's error-aware weights across sources (validation generation
   every few steps re-weights them), one sampler;
4. a short run with RRGCL's class-level epoch subsets alone, for comparison;
5. generation on the validation split and ``gradatim evaluate``;
6. ``out/metrics.json`` (per-source IoU and text scores, the curriculum weight history) and PNG
   plots (loss, curriculum weights over steps, per-source IoU).

A tiny random model learns little in a few dozen steps: the numbers show that every part runs
and how they connect, not a trained model.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

SOURCES = ("phantom-a", "phantom-b", "phantom-c")


def _config(out: Path, manifest: Path, kind: str, steps: int, extra: str = "") -> Path:
    lines = [
        '[model]\nname = "tiny-llava"\nvocab_size = 512\n',
        '[optim]\nlr = 3e-3\nmethod = "linear"\n',
        f'[train]\nsteps = {steps}\nbatch_size = 8\ncheckpoint_every = {steps}\nout = "{out}"\n',
    ]
    for name in SOURCES:
        lines.append(
            f'[[data.sources]]\nname = "{name}"\nmanifest = "{manifest}"\nsplit = "train"\n'
            f'select = "{name}"\n'
        )
    lines.append(f'[curriculum]\nkind = "{kind}"\n{extra}')
    path = out.parent / f"{out.name}.toml"
    path.write_text("\n".join(lines))
    return path


def _predictions(run_out: Path, cfg_path: Path, path: Path) -> None:
    """Generate on every validation record with the trained model; write evaluate's input."""
    from gradatim.train.config import load_config
    from gradatim.train.data import make_dataset, source_records
    from gradatim.train.loop import build_model
    from gradatim.train.validation import Validator

    cfg = load_config(cfg_path)
    bundle = build_model(cfg, source_records(cfg))
    from peft import PeftModel

    with warnings.catch_warnings():  # a transformers deprecation notice raised inside peft
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        model = PeftModel.from_pretrained(
            bundle.model, str(run_out / f"checkpoint-{cfg.train.steps}" / "adapter")
        )
    val = make_dataset(cfg, bundle, source_records(cfg, split="validate"), augment=None)
    rows = Validator(val, bundle, per_source=10_000, max_new_tokens=48).generate_rows(model)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _plots(log: list[dict[str, Any]], summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    steps = [r["step"] for r in log if "loss" in r]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [r["loss"] for r in log if "loss" in r])
    ax.set(xlabel="step", ylabel="loss", title="training loss (tiny LLaVA, CURE run)")
    paths.append(out / "loss.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    weights = [r["weights"] for r in log if r.get("weights")]
    for k, name in enumerate(SOURCES):
        ax.plot(steps[: len(weights)], [w[k] for w in weights], label=name)
    ax.set(xlabel="step", ylabel="sampling weight", title="CURE curriculum weights")
    ax.legend()
    paths.append(out / "curriculum_weights.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = list(summary["sources"])
    ax.bar(names, [summary["sources"][n]["iou"] or 0.0 for n in names])
    ax.set(ylabel="union IoU", title="validation IoU per source")
    paths.append(out / "iou_per_source.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close("all")
    return paths


def run_training(out: Path, n: int = 240, steps: int = 40) -> dict[str, Any]:
    """Steps 1-6 of the module docstring under ``out``; returns the metrics."""
    from gradatim.datasets import phantom
    from gradatim.evaluate import evaluate_rows, read_predictions, summarize
    from gradatim.train.config import load_config
    from gradatim.train.loop import train

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = phantom.generate(out / "data", n=n, seed=0, size=(256, 256))
    print(f"[1] phantom data (synthetic): {n} studies -> {manifest}")
    dif = out / "difficulty.parquet"
    cmd = [
        sys.executable,
        "-m",
        "gradatim",
        "difficulty",
        "--manifest",
        str(manifest),
        "--out",
        str(dif),
        "--mine-epochs",
        "5",
        "--no-progress",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"[2] RRGCL difficulty (VNS-Gap + ITAS) -> {dif}")
    phase1 = max(1, steps // 8)  # CURE's phase 1, then three curriculum updates
    period = max(1, (steps - phase1) // 3)
    cure_cfg = _config(
        out / "cure",
        manifest,
        "cure+rrgcl",
        steps,
        f'period = {period}\nper_source = 4\nmax_new_tokens = 24\nval_split = "validate"\n'
        f'difficulty = "{dif}"\nepochs = 3\nphase1_steps = {phase1}\n',
    )
    run = train(load_config(cure_cfg))
    print(
        f"[3] CURE + RRGCL run (phase 1 on anatomy-grounded reports, then RRGCL's subsets inside "
        f"each source, CURE's weights across): {run.step} steps, loss {run.losses[0]:.3f} -> "
        f"{run.losses[-1]:.3f}"
    )
    rrgcl_cfg = _config(
        out / "rrgcl", manifest, "rrgcl", steps // 2, f'difficulty = "{dif}"\nepochs = 3\n'
    )
    rr = train(load_config(rrgcl_cfg))
    print(f"[4] RRGCL run: {rr.step} steps, loss {rr.losses[0]:.3f} -> {rr.losses[-1]:.3f}")
    preds = out / "predictions.jsonl"
    _predictions(run.out, cure_cfg, preds)
    summary = summarize(evaluate_rows(read_predictions(preds)))
    print(f"[5] evaluated {summary['overall']['n']} validation samples")
    log = [json.loads(line) for line in (run.out / "log.jsonl").read_text().splitlines()]
    history = [
        {"step": r["step"], "weights": r["curriculum_weights"], "validation": r["validation"]}
        for r in log
        if "curriculum_weights" in r
    ]
    metrics = {
        "note": "synthetic phantom data and a tiny random model: a pipeline check, not a result",
        "evaluation": summary,
        "curriculum_history": history,
        "cure_losses": run.losses,
        "rrgcl_losses": rr.losses,
        "checkpoint": str(run.out / f"checkpoint-{run.step}"),
        "seconds": time.perf_counter() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots = _plots(log, summary, out)
    print(f"[6] {out / 'metrics.json'}, plots: {', '.join(p.name for p in plots)}")
    return metrics
