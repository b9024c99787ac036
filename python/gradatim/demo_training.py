"""The demo's training part: the mission end to end on SYNTHETIC phantom data, on the CPU (the GPU
when present), in minutes, with what it learned measured against honest baselines.

1. phantom studies (three sources, one harder than the others, several tasks, a validation
   split, and each record's true difficulty in ``truth.jsonl``);
2. RRGCL difficulty (``gradatim difficulty``: VNS-Gap + ITAS on the offline MiniLM text encoder
   and the image fallback embeddings), and its Spearman correlation with the true difficulty;
3. a tiny LLaVA pre-trained on a separate phantom corpus (``pretrain_n`` other studies, seed 1:
   none of them is a study of step 1; ``gradatim pretrain`` on its training split: every
   parameter, saved as a local checkpoint, the base model the curricula adapt, as a real base
   model comes pre-trained on other data of its domain; the same random model before
   pre-training is kept as the untrained baseline);
4. a LoRA run on that base (CURE's ``modules_to_save``, lr 1e-4, no augmentation: the head and
   embeddings train too): CURE's phase 1 on anatomy-grounded reports, then the multi-task phase
   with CURE's error-aware weights across sources (validation every ``period`` steps re-weights
   them); RRGCL's subsets are not combined with it here: on this data they cost the VQA answers
   (``make experiment``'s ``cure+rrgcl`` arm, docs/experiment/table.md);
5. a LoRA run with RRGCL's class-level epoch subsets alone, for comparison;
6. ``gradatim predict`` on the whole validation split with the CURE run's model, the same model
   on blank images, and the untrained model; ``gradatim evaluate`` with the training manifest
   (the prompt-only baseline: mean training box per phrase or region, majority answer, most
   frequent report);
7. ``out/metrics.json`` (``"learning"``: the held-out figures against the baselines; per-source
   evaluation, the curriculum weight history) and PNG plots (loss, validation IoU over training
   against the baselines, CURE's weights).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gradatim.train.experiment import SOURCES

#: What the demo trains: phantom studies, image side of the phantom, the studies of the separate
#: pre-training corpus (``pretrain.phantom_corpus``), the tiny model's input side, patch side and
#: width, pre-training steps, LoRA steps (and how many of them are CURE's phase 1).
DEMO = {"n": 3000, "size": 256, "pretrain_n": 12000, "image_size": 64, "patch": 16,
        "hidden": 128, "grounding_steps": 5000, "pretrain_steps": 1500, "steps": 120,
        "lora_lr": 1e-4}  # fmt: skip


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def difficulty_vs_truth(difficulty: Path, truth: Path) -> dict[str, float]:
    """Spearman correlation of a ``gradatim difficulty`` file's VNS-Gap (``dif1``), ITAS
    (``dif2``) and combined (``dif``) difficulty with the generator's true difficulty, over the
    records both cover, and (``*_findings``) over those about a finding (true difficulty > 0;
    a study without findings has true difficulty 0)."""
    from gradatim.difficulty.io import read_difficulty_table

    table = read_difficulty_table(difficulty)
    true = {
        row["id"]: float(row["difficulty"])
        for row in map(json.loads, truth.read_text().splitlines())
    }
    keep = [k for k, i in enumerate(table["ids"]) if i in true]
    seen = [k for k in keep if true[table["ids"][k]] > 0]  # records about a finding
    out: dict[str, float] = {}
    for rows, suffix in ((keep, ""), (seen, "_findings")):
        target = [true[table["ids"][k]] for k in rows]
        for name, column in (("vns_gap", "dif1"), ("itas", "dif2"), ("combined", "dif")):
            out[name + suffix] = spearman([float(table[column][k]) for k in rows], target)
    out["n"], out["n_findings"] = len(keep), len(seen)
    return out


def _plots(log: list[dict[str, Any]], learning: dict[str, float], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    steps = [r["step"] for r in log if "loss" in r]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [r["loss"] for r in log if "loss" in r])
    ax.set(xlabel="step", ylabel="loss", title="LoRA training loss (CURE run)")
    paths.append(out / "loss.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    validations = [r for r in log if "validation" in r]
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    for name in SOURCES:
        points = [(r["step"], r["validation"][name].get("iou")) for r in validations
                  if name in r["validation"]]  # fmt: skip
        points = [(s, v) for s, v in points if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=f"model, {name}")
    styles = {"prompt_only_iou": ("prompt only", "k", "--"),
              "blank_image_iou": ("blank image", "tab:red", ":"),
              "untrained_iou": ("untrained", "tab:gray", "-.")}  # fmt: skip
    for key, (label, colour, dash) in styles.items():
        ax.axhline(learning[key], color=colour, linestyle=dash, label=f"{label} (held out)")
    ax.axhline(learning["grounding_iou"], color="tab:green", label="model (held out)")
    ax.set(xlabel="step", ylabel="grounding IoU", title="validation IoU vs baselines")
    ax.legend(fontsize=6, loc="lower right")
    paths.append(out / "validation_iou.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    history = [r for r in log if r.get("curriculum_weights")]
    for name in SOURCES:
        ax.plot([r["step"] for r in history], [r["curriculum_weights"].get(name) for r in history],
                marker="o", label=name)  # fmt: skip
    ax.set(xlabel="step", ylabel="sampling weight", title="CURE curriculum weights")
    ax.legend()
    paths.append(out / "curriculum_weights.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close("all")
    return paths


def learning_figures(
    checkpoint: Path, manifest: Path, out: Path, untrained: Path, max_new_tokens: int = 64
) -> dict[str, Any]:
    """Held-out validation figures of ``checkpoint`` against the baselines: the same model on
    blank images, the ``untrained`` local model, and the prompt-only baseline from the training
    split. IoU is the union IoU over phrase and anatomy grounding rows together."""
    from gradatim.evaluate import (
        evaluate_rows,
        grounding_iou,
        prompt_only_rows,
        read_predictions,
        summarize,
        training_stats,
    )
    from gradatim.train.predict import predict

    files = {
        "model": out / "predictions.jsonl",
        "blank_image": out / "predictions_blank.jsonl",
        "untrained": out / "predictions_untrained.jsonl",
    }
    common = {"batch_size": 16, "max_new_tokens": max_new_tokens}
    predict(checkpoint, manifest, "validate", files["model"], **common)
    predict(checkpoint, manifest, "validate", files["blank_image"], blank_images=True, **common)
    predict(checkpoint, manifest, "validate", files["untrained"], base_model=True,
            base=untrained, **common)  # fmt: skip
    rows = {name: evaluate_rows(read_predictions(path)) for name, path in files.items()}
    model_rows = read_predictions(files["model"])
    box_format = model_rows[0].get("box_format", "cure") if model_rows else "cure"
    stats = training_stats([manifest], "train", box_format)
    rows["prompt_only"] = evaluate_rows(prompt_only_rows(model_rows, stats))

    def text(name: str) -> float:
        values = [r["rougeL"] for r in rows[name] if r.get("rougeL") is not None]
        return sum(values) / len(values) if values else 0.0

    def iou(name: str) -> float:
        return grounding_iou(rows[name]) or 0.0

    learning = {
        "grounding_iou": iou("model"),
        "prompt_only_iou": iou("prompt_only"),
        "blank_image_iou": iou("blank_image"),
        "untrained_iou": iou("untrained"),
        "rouge_l": text("model"),
        "prompt_only_rouge_l": text("prompt_only"),
        "blank_image_rouge_l": text("blank_image"),
        "untrained_rouge_l": text("untrained"),
        "n": len(rows["model"]),
    }
    return {"learning": learning, "evaluation": summarize(rows["model"])}


def run_training(
    out: Path,
    n: int = DEMO["n"],
    steps: int = DEMO["steps"],
    grounding_steps: int = DEMO["grounding_steps"],
    pretrain_steps: int = DEMO["pretrain_steps"],
    image_size: int = DEMO["image_size"],
    hidden: int = DEMO["hidden"],
    pretrain_n: int = DEMO["pretrain_n"],
) -> dict[str, Any]:
    """Steps 1-7 of the module docstring under ``out``; returns the metrics."""
    from gradatim.datasets import phantom
    from gradatim.train.config import load_config
    from gradatim.train.experiment import run_config
    from gradatim.train.loop import train
    from gradatim.train.pretrain import PretrainSettings, phantom_corpus, pretrain_tiny

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = phantom.generate(out / "data", n=n, seed=0, size=(DEMO["size"], DEMO["size"]))
    print(f"[1] phantom data (synthetic): {n} studies -> {manifest}")
    dif = out / "difficulty.parquet"
    cmd = [sys.executable, "-m", "gradatim", "difficulty", "--manifest", str(manifest),
           "--out", str(dif), "--mine-epochs", "5", "--no-progress"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    agreement = difficulty_vs_truth(dif, manifest.parent / phantom.TRUTH)
    print(
        f"[2] RRGCL difficulty -> {dif}; Spearman with the true difficulty: "
        + ", ".join(f"{k} {v:+.2f}" for k, v in agreement.items() if not k.startswith("n"))
    )
    corpus = phantom_corpus(out / "pretrain_data", pretrain_n, DEMO["size"])
    shape = {"image_size": image_size, "patch": DEMO["patch"], "hidden": hidden}
    settings = PretrainSettings(grounding_steps=grounding_steps, steps=pretrain_steps, **shape)
    base = pretrain_tiny([corpus], out / "base", settings)
    untrained = pretrain_tiny(
        [corpus], out / "untrained", PretrainSettings(grounding_steps=0, steps=0, **shape)
    )
    pre = json.loads((base / "pretrain.json").read_text())
    print(
        f"[3] tiny LLaVA pre-trained on a separate phantom corpus ({pretrain_n} other studies, "
        f"its training split): {grounding_steps} grounding + {pretrain_steps} all-task steps, loss "
        f"{pre['losses'][0]:.3f} -> {pre['losses'][-1]:.3f} ({pre['seconds']:.0f} s) -> {base}"
    )
    phase1 = max(1, steps // 8)  # CURE's phase 1, then three curriculum updates
    period = max(1, (steps - phase1) // 3)
    # The LoRA runs see the images as the base saw them in pre-training (no augmentation), at a
    # learning rate chosen on the validation split (docs/training.md: 1e-4, 2e-4 and 1e-3 tried).
    plain = 'augment = "none"\n'
    cure_cfg = run_config(
        out / "cure", manifest, base, steps,
        f'kind = "cure"\nperiod = {period}\nper_source = 12\nmax_new_tokens = 64\n'
        f'val_split = "validate"\nphase1_steps = {phase1}\n',
        plain, lr=DEMO["lora_lr"],
    )  # fmt: skip
    run = train(load_config(cure_cfg))
    print(
        f"[4] CURE LoRA run (phase 1 on anatomy-grounded reports, then CURE's error-aware "
        f"weights across the sources): {run.step} steps, loss "
        f"{run.losses[0]:.3f} -> {run.losses[-1]:.3f}"
    )
    rrgcl_cfg = run_config(
        out / "rrgcl", manifest, base, steps // 2,
        f'kind = "rrgcl"\ndifficulty = "{dif}"\nepochs = 3\n', plain, lr=DEMO["lora_lr"],
    )  # fmt: skip
    rr = train(load_config(rrgcl_cfg))
    print(f"[5] RRGCL LoRA run: {rr.step} steps, loss {rr.losses[0]:.3f} -> {rr.losses[-1]:.3f}")
    checkpoint = run.out / f"checkpoint-{run.step}"
    figures = learning_figures(checkpoint, manifest, out, untrained)
    learning = figures["learning"]
    print(
        f"[6] held-out validation ({learning['n']} rows): grounding IoU "
        f"{learning['grounding_iou']:.3f} (prompt only {learning['prompt_only_iou']:.3f}, "
        f"blank image {learning['blank_image_iou']:.3f}, untrained "
        f"{learning['untrained_iou']:.3f}); ROUGE-L {learning['rouge_l']:.3f} (prompt only "
        f"{learning['prompt_only_rouge_l']:.3f})"
    )
    log = [json.loads(line) for line in (run.out / "log.jsonl").read_text().splitlines()]
    history = [
        {"step": r["step"], "weights": r["curriculum_weights"], "validation": r["validation"]}
        for r in log
        if "curriculum_weights" in r
    ]
    metrics = {
        "note": "SYNTHETIC phantom data; a tiny model pre-trained on a separate phantom corpus "
        "(other studies), then adapted with LoRA on the data's training split",
        "learning": learning,
        "difficulty_vs_truth": agreement,
        "evaluation": figures["evaluation"],
        "curriculum_history": history,
        "pretrain_losses": pre["losses"],
        "cure_losses": run.losses,
        "rrgcl_losses": rr.losses,
        "checkpoint": str(checkpoint),
        "seconds": time.perf_counter() - t0,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plots = _plots(log, learning, out)
    print(f"[7] {out / 'metrics.json'}, plots: {', '.join(p.name for p in plots)}")
    return metrics
