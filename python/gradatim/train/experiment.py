"""``gradatim experiment CONFIG``: the effect of the curricula, measured. The same LoRA budget on
the same pre-trained base under several curricula ("arms"), each with several seeds, evaluated on
the held-out validation split; a table (mean and 95 % interval per arm, source and task), plots, the
Spearman correlation of RRGCL's difficulty with the data's true difficulty, and where CURE's
weights went.

CONFIG (TOML)::

    [experiment]
    out = "runs/experiment"
    seeds = [0, 1, 2]
    steps = 120                    # LoRA steps per run (every arm the same)
    arms = ["uniform", "cure", "cure-interleave", "rrgcl", "medclm", "cure+rrgcl"]

    [data]                         # phantom data made here (or: manifest = "...", truth = "...")
    phantom = 3000
    size = 256
    pretrain_phantom = 12000       # the base's own corpus: other studies (seed 1); 0: the
                                   # training split of the data above

    [model]                        # the tiny base, pre-trained once (or: path = "a local model")
    grounding_steps = 5000
    pretrain_steps = 1500
    image_size = 64
    patch = 16
    hidden = 128

Arms: ``uniform`` (no curriculum: the sources at equal weight, independent draws), ``cure``
(CURE's error-aware source weights, independent draws), ``cure-interleave`` (the same with
CURE's own deterministic interleave), ``rrgcl`` (RRGCL's class-level epoch subsets, difficulty
from ``gradatim difficulty``), ``medclm`` (MedCLM's Easy/Medium/Hard stages), ``cure+rrgcl``
(both in one sampler). Every CURE arm validates and re-weights three times after a phase 1 of
1/8 of the steps.

The 95 % interval is the mean +- t(0.975, n-1) x sd / sqrt(n) over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import tomllib

from gradatim import cli_paths

__all__ = ["ARMS", "run_config", "run_experiment", "summarize_runs", "add_parser"]

ARMS = ("uniform", "cure", "cure-interleave", "rrgcl", "medclm", "cure+rrgcl")
SOURCES = ("phantom-a", "phantom-b", "phantom-c")


def _arm_curriculum(arm: str, steps: int, difficulty: Path) -> tuple[str, str]:
    """``(curriculum TOML lines, data TOML lines)`` of one arm."""
    phase1 = max(1, steps // 8)
    period = max(1, (steps - phase1) // 3)
    cure = (
        f'period = {period}\nper_source = 12\nmax_new_tokens = 64\nval_split = "validate"\n'
        f"phase1_steps = {phase1}\n"
    )
    rrgcl = f'difficulty = "{difficulty}"\nepochs = 3\n'
    if arm == "uniform":
        return 'kind = "none"\n', ""
    if arm == "cure":
        return f'kind = "cure"\n{cure}', ""
    if arm == "cure-interleave":
        return f'kind = "cure"\n{cure}', 'draw = "interleave"\n'
    if arm == "rrgcl":
        return f'kind = "rrgcl"\n{rrgcl}', ""
    if arm == "medclm":
        return 'kind = "medclm"\n', ""
    if arm == "cure+rrgcl":
        return f'kind = "cure+rrgcl"\n{cure}{rrgcl}', ""
    raise ValueError(f"unknown arm {arm!r} (known: {', '.join(ARMS)})")


def run_config(
    out: Path,
    manifest: Path,
    base: Path,
    steps: int,
    curriculum: str,
    data: str = "",
    seed: int = 0,
    lr: float = 2e-4,
) -> Path:
    """Write ``out.toml``: a LoRA run (CURE's ``modules_to_save``; ``lr``, CURE's 2e-4 by default)
    of ``steps`` on the local
    ``base`` over the phantom sources of ``manifest``, with the given ``[curriculum]`` and extra
    ``[data]`` lines; the demo's and every arm's runs differ only in those."""
    lines = [
        f'[model]\npath = "{base}"\n',
        '[lora]\nmodules_to_save = ["lm_head", "embed_tokens"]\n',
        f'[optim]\nlr = {lr}\nmethod = "linear"\n',
        f"[train]\nsteps = {steps}\nbatch_size = 8\nseed = {seed}\ncheckpoint_every = {steps}\n"
        f'out = "{out}"\n',
        f"[data]\n{data}",
    ]
    for name in SOURCES:
        lines.append(
            f'[[data.sources]]\nname = "{name}"\nmanifest = "{manifest}"\nsplit = "train"\n'
            f'select = "{name}"\n'
        )
    lines.append(f"[curriculum]\n{curriculum}")
    path = out.parent / f"{out.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def _interval(values: list[float]) -> dict[str, float | int | None]:
    n = len(values)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "ci95": _t975(n - 1) * sd / math.sqrt(n), "n": n}


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm: the mean and 95 % interval over seeds of the grounding IoU and ROUGE-L, overall
    and per source and task (``runs``: one ``{"arm", "seed", "rows"}`` per run, ``rows`` being
    ``evaluate_rows``' output on the validation split)."""
    from gradatim.evaluate import grounding_iou

    table: dict[str, Any] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        cells: dict[str, list[float]] = {}

        def add(key: str, value: float | None, cells: dict[str, list[float]] = cells) -> None:
            if value is not None:
                cells.setdefault(key, []).append(float(value))

        for run in mine:
            rows = run["rows"]
            add("grounding_iou", grounding_iou(rows))
            text = [r["rougeL"] for r in rows if r.get("rougeL") is not None]
            add("rouge_l", sum(text) / len(text) if text else None)
            for source in sorted({r["source"] for r in rows}):
                for task in sorted({r["task"] for r in rows if r["source"] == source}):
                    part = [r for r in rows if r["source"] == source and r["task"] == task]
                    ious = [r["iou"] for r in part if r.get("iou") is not None]
                    add(f"{source}/{task}/iou", sum(ious) / len(ious) if ious else None)
                    texts = [r["rougeL"] for r in part if r.get("rougeL") is not None]
                    add(f"{source}/{task}/rouge_l", sum(texts) / len(texts) if texts else None)
        table[arm] = {key: _interval(values) for key, values in sorted(cells.items())}
    return table


def _markdown(table: dict[str, Any], keys: list[str]) -> str:
    def cell(v: dict[str, Any]) -> str:
        if v.get("mean") is None:
            return "-"
        ci = v.get("ci95")
        return f"{v['mean']:.3f}" + (f" +- {ci:.3f}" if ci is not None else "")

    lines = ["| arm | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for arm, row in table.items():
        lines.append(f"| {arm} | " + " | ".join(cell(row.get(k, {})) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _plot(table: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(table)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "grounding_iou", "grounding IoU"),
                           (axes[1], "rouge_l", "ROUGE-L")):  # fmt: skip
        means = [table[a].get(key, {}).get("mean") or 0.0 for a in arms]
        errs = [table[a].get(key, {}).get("ci95") or 0.0 for a in arms]
        ax.bar(range(len(arms)), means, yerr=errs, capsize=3)
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
        ax.set(ylabel=label, title=f"{label}, mean and 95 % interval over seeds")
    fig.tight_layout()
    path = out / "experiment.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_experiment(config: str | Path) -> dict[str, Any]:
    """Run every arm x seed of ``config`` (module docstring); write ``results.json``,
    ``table.md`` and ``experiment.png`` under ``[experiment].out``; return the results."""
    from gradatim.datasets import phantom
    from gradatim.demo_training import difficulty_vs_truth
    from gradatim.evaluate import evaluate_rows, read_predictions
    from gradatim.train.config import load_config
    from gradatim.train.loop import train
    from gradatim.train.predict import predict
    from gradatim.train.pretrain import PretrainSettings, phantom_corpus, pretrain_tiny

    path = Path(config)
    raw = tomllib.loads(path.read_text())
    exp, data, model = raw.get("experiment", {}), raw.get("data", {}), raw.get("model", {})
    out = Path(exp.get("out", "runs/experiment")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in exp.get("seeds", [0, 1, 2])]
    steps = int(exp.get("steps", 120))
    arms = [str(a) for a in exp.get("arms", ARMS)]
    for arm in arms:
        _arm_curriculum(arm, steps, out)  # unknown arms fail before anything runs
    t0 = time.perf_counter()
    if "manifest" in data:
        manifest = Path(data["manifest"]).resolve()
        truth = Path(data["truth"]).resolve() if "truth" in data else None
    else:
        size = int(data.get("size", 256))
        manifest = phantom.generate(
            out / "data", n=int(data.get("phantom", 3000)), size=(size, size)
        )
        truth = manifest.parent / phantom.TRUTH
    difficulty = out / "difficulty.parquet"
    if not difficulty.is_file():
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "gradatim", "difficulty", "--manifest", str(manifest),
               "--out", str(difficulty), "--mine-epochs", "5", "--no-progress"]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    if "path" in model:
        base = Path(model["path"]).resolve()
    else:
        base = out / "base"
        if not (base / "config.json").is_file():
            defaults = PretrainSettings()
            settings = PretrainSettings(
                image_size=int(model.get("image_size", defaults.image_size)),
                patch=int(model.get("patch", defaults.patch)),
                hidden=int(model.get("hidden", defaults.hidden)),
                grounding_steps=int(model.get("grounding_steps", defaults.grounding_steps)),
                steps=int(model.get("pretrain_steps", defaults.steps)),
            )
            corpus = manifest
            if int(data.get("pretrain_phantom", 0)) > 0:  # other studies than the data's
                corpus = phantom_corpus(out / "pretrain_data", int(data["pretrain_phantom"]),
                                        int(data.get("size", 256)))  # fmt: skip
            pretrain_tiny([corpus], base, settings)
    runs: list[dict[str, Any]] = []
    weights: dict[str, list[dict[str, float]]] = {}
    for arm in arms:
        for seed in seeds:
            run_out = out / "runs" / f"{arm}-seed{seed}"
            preds = run_out / "predictions.jsonl"
            if not preds.is_file():
                curriculum, extra = _arm_curriculum(arm, steps, difficulty)
                cfg = load_config(
                    run_config(run_out, manifest, base, steps, curriculum, extra, seed)
                )
                run = train(cfg)
                predict(run.out / f"checkpoint-{run.step}", manifest, "validate", preds,
                        batch_size=16, max_new_tokens=64)  # fmt: skip
            rows = evaluate_rows(read_predictions(preds))
            runs.append({"arm": arm, "seed": seed, "rows": rows})
            log = [json.loads(x) for x in (run_out / "log.jsonl").read_text().splitlines()]
            history = [r["curriculum_weights"] for r in log if r.get("curriculum_weights")]
            if history:
                weights.setdefault(arm, []).append(history[-1])
            print(f"{arm} seed {seed}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = summarize_runs(runs)
    results: dict[str, Any] = {"config": raw, "steps": steps, "seeds": seeds, "table": table}
    if truth is not None and truth.is_file():
        results["difficulty_vs_truth"] = difficulty_vs_truth(difficulty, truth)
        hard = _hardest_source(truth)
        results["hardest_source"] = hard
    if weights:
        results["final_cure_weights"] = {
            arm: {s: sum(w.get(s, 0.0) for w in ws) / len(ws) for s in SOURCES}
            for arm, ws in weights.items()
        }
    results["seconds"] = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=1))
    keys = ["grounding_iou", "rouge_l"] + sorted(
        {k for row in table.values() for k in row if k.count("/") == 2}
    )
    (out / "table.md").write_text(_markdown(table, keys))
    _plot(table, out)
    return results


def _hardest_source(truth: Path) -> str:
    """The source whose records have the highest mean true difficulty (records with findings)."""
    sums: dict[str, list[float]] = {}
    for row in map(json.loads, truth.read_text().splitlines()):
        if row["difficulty"] > 0:
            sums.setdefault(row["source"], []).append(float(row["difficulty"]))
    return max(sums, key=lambda s: sum(sums[s]) / len(sums[s]))


def _main(args: argparse.Namespace) -> int:
    results = run_experiment(args.config)
    out = Path(tomllib.loads(Path(args.config).read_text()).get("experiment", {}).get(
        "out", "runs/experiment"))  # fmt: skip
    print((out / "table.md").read_text())
    if "difficulty_vs_truth" in results:
        print("Spearman with the true difficulty:", results["difficulty_vs_truth"])
    if "final_cure_weights" in results:
        print(f"final CURE weights (hardest source: {results.get('hardest_source')}):",
              results["final_cure_weights"])  # fmt: skip
    return 0


def add_parser(sub: Any) -> None:
    """Register ``gradatim experiment CONFIG``."""
    p = sub.add_parser("experiment", help="the curricula's effect: arms x seeds, table and plots")
    p.add_argument("config", type=Path, help="experiment TOML (see the module docstring)")
    p.set_defaults(func=_main)
    cli_paths.declare(p, inputs=["config"])
