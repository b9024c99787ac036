"""``gradatim train`` runs CURE's recipe as CURE's public code runs it (PabloMessina/CURE 9365333:
``scripts/train_medgemma.py``, ``vlm_research_kit/data/dataset_helpers.py``,
``vlm_research_kit/data/datasets/*.py``, ``configs/training/*.yaml``). Every rule is checked
against a transcription of that code written here, never against gradatim's own output: the
training order (its ``SequentialSampler`` over nested ``WeightedCompositeDataset`` s), the preset's
values, Hugging Face's linear schedule, the validation pipeline and fresh subsets, the text
cleaning and metric settings, and the three-level weights."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gradatim.cli import main
from gradatim.curriculum import TwoLevelCurriculum
from gradatim.data import Augment
from gradatim.evaluate import evaluate_rows, summarize
from gradatim.evaluate.text import clean_text, rouge_l
from gradatim.sampling import NestedInterleaveSampler
from gradatim.train.config import ConfigError, load_config
from gradatim.train.data import (
    build_loader,
    model_dataset,
    run_categories,
    source_ends,
    source_records,
    with_source_ends,
)
from gradatim.train.loop import _cure, build_model, lr_factor, train
from gradatim.train.validation import level_counts, spread_counts

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


# -- CURE's composite dataset, transcribed -----------------------------------------------------
def cure_slots(weights: list[float]) -> list[int]:
    """``_get_balancedly_distributed_class_indices``: equal weights give ``0..n-1``; else each
    class gets ``max(int(20 w / w_min), 1)`` slots (weights normalised), classes with more slots
    first (ties in class order), each placed at ``int(j * free / slots)`` of the free slots."""
    if len(set(weights)) == 1:
        return list(range(len(weights)))
    live = [i for i, w in enumerate(weights) if w > 0]
    ws = [weights[i] / sum(weights[k] for k in live) for i in live]
    low = min(ws)
    freq = [max(int(20 * w / low), 1) for w in ws]
    cells: list[int | None] = [None] * sum(freq)
    for c in sorted(range(len(live)), key=lambda c: -freq[c]):
        free = [k for k, v in enumerate(cells) if v is None]
        gap = len(free) / freq[c]
        for j in range(freq[c]):
            cells[free[int(j * gap)]] = c
    return [live[c] for c in cells if c is not None]


class Composite:
    """``WeightedCompositeDataset``: item ``i`` reads child ``pattern[i mod L]`` at that child's
    running count, modulo the child's length; length = periods of the slowest child x ``L``."""

    def __init__(self, children: list[Any], weights: list[float]) -> None:
        keep = [k for k, w in enumerate(weights) if w > 0]  # the constructor drops zero weights
        self.children = [children[k] for k in keep]
        self.pattern = cure_slots([weights[k] for k in keep])
        self.before = []  # per child: how many of its slots precede each slot
        for c in range(len(self.children)):
            run, row = 0, []
            for x in self.pattern:
                row.append(run)
                run += x == c
            self.before.append((row, run))
        periods = max(math.ceil(len(ch) / self.before[c][1]) for c, ch in enumerate(self.children))
        self.length = periods * len(self.pattern)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        period = len(self.pattern)
        c = self.pattern[i % period]
        row, per_period = self.before[c]
        j = (i // period) * per_period + row[i % period]
        child = self.children[c]
        return child[j % len(child)]


def sequential(dataset: Any, start: int, count: int) -> list[Any]:
    """CURE's trainer: a ``SequentialSampler`` over the dataset, epoch after epoch, resumed at
    its global position."""
    return [dataset[g % len(dataset)] for g in range(start, start + count)]


def test_interleave_order_equals_cures_sequential_sampler() -> None:
    """Sources, a source with categories and one with categories of sub-categories (Chest
    ImaGenome: prompt modes x locations); long enough to wrap the composite; two ranks; a weight
    change at a step continues CURE's global position under the new weights."""
    rng = np.random.default_rng(0)
    sizes = {("A",): 7, ("B", "x"): 13, ("B", "y"): 3, ("C", "loc", "l1"): 5,
             ("C", "loc", "l2"): 2, ("C", "desc", "l1"): 4, ("D",): 11}  # fmt: skip
    members, start = {}, 0
    for path, n in sizes.items():
        members[path] = list(range(start, start + n))
        start += n
    weights = {("A",): 0.5, ("B",): 0.3, ("C",): 0.15, ("D",): 0.05, ("B", "x"): 2.0,
               ("B", "y"): 1.0, ("C", "loc", "l1"): 0.7, ("C", "loc", "l2"): 0.2}  # fmt: skip

    def cure(w: dict) -> Composite:
        g = lambda p: w.get(p, 1.0)  # noqa: E731 - unset weights are CURE's uniform 1
        b = Composite([members[("B", "x")], members[("B", "y")]], [g(("B", "x")), g(("B", "y"))])
        loc = Composite([members[("C", "loc", "l1")], members[("C", "loc", "l2")]],
                        [g(("C", "loc", "l1")), g(("C", "loc", "l2"))])  # fmt: skip
        desc = Composite([members[("C", "desc", "l1")]], [1.0])
        c = Composite([loc, desc], [g(("C", "loc")), g(("C", "desc"))])
        return Composite([members[("A",)], b, c, members[("D",)]],
                         [g(("A",)), g(("B",)), g(("C",)), g(("D",))])  # fmt: skip

    expected = sequential(cure(weights), 0, 3000)
    kwargs: dict[str, Any] = {"num_samples": 3000, "shuffle": False}
    one = NestedInterleaveSampler(list(members.values()), list(members), weights, **kwargs)
    assert one.epoch_indices(0).tolist() == expected
    assert len(cure(weights)) < 3000  # the order ran past CURE's epoch and wrapped as it does
    for r in range(2):
        shard = NestedInterleaveSampler(list(members.values()), list(members), weights,
                                        rank=r, world_size=2, **kwargs)  # fmt: skip
        assert shard.epoch_indices(0).tolist() == expected[r::2]
    # epochs only count steps: epoch 1 goes on where epoch 0 stopped
    short = NestedInterleaveSampler(list(members.values()), list(members), weights,
                                    num_samples=700, shuffle=False)  # fmt: skip
    assert short.epoch_indices(1).tolist() == expected[700:1400]
    # a weight change at step 1000: CURE's next cycle reads its new composite at position 1000
    changed = {**weights, ("A",): 0.1, ("D",): 0.6, ("C", "loc", "l2"): 0.9}
    new = {p: float(rng.uniform(0.05, 1.0)) for p in changed} | changed
    one.set_node_weights(new, step=1000)
    got = one.epoch_indices(0).tolist()
    assert got[:1000] == expected[:1000]
    assert got[1000:] == sequential(cure(new), 1000, 2000)


def test_interleave_shuffled_leaves_repeat_nothing_before_they_wrap() -> None:
    members = [list(range(0, 9)), list(range(9, 30)), list(range(30, 34))]
    paths = [("a",), ("b",), ("c",)]
    s = NestedInterleaveSampler(members, paths, {"a": 0.2, "b": 0.5, "c": 0.3}, seed=3,
                                num_samples=600)  # fmt: skip
    plain = NestedInterleaveSampler(members, paths, {"a": 0.2, "b": 0.5, "c": 0.3},
                                    num_samples=600, shuffle=False)  # fmt: skip
    got, ref = s.epoch_indices(0), plain.epoch_indices(0)
    which = lambda idx: np.searchsorted([9, 30], idx, side="right")  # noqa: E731
    assert (which(got) == which(ref)).all()  # the same sources at the same positions
    assert len(Composite(members, [0.2, 0.5, 0.3])) == 100  # CURE's epoch: 100 positions
    for epoch in range(6):  # a leaf's count restarts with CURE's epoch, as its trainer's does
        part = got[100 * epoch : 100 * (epoch + 1)]
        for k, m in enumerate(members):
            seq = part[which(part) == k].tolist()
            for cycle in range(len(seq) // len(m)):
                assert sorted(seq[cycle * len(m) : (cycle + 1) * len(m)]) == m
    assert got.tolist() != ref.tolist()
    assert got[:100].tolist() != got[100:200].tolist()  # each CURE epoch reshuffled


def test_interleave_sampler_state_resumes_the_same_order() -> None:
    members = [list(range(0, 9)), list(range(9, 30))]
    s = NestedInterleaveSampler(members, [("a",), ("b",)], {"a": 0.3, "b": 0.7}, seed=1)
    it = iter(s)
    head = [next(it) for _ in range(11)]
    s.set_node_weights({"a": 0.9}, step=15)
    state = json.loads(json.dumps(s.state_dict()))
    rest = list(it)
    again = NestedInterleaveSampler(members, [("a",), ("b",)], seed=1)
    again.load_state_dict(state)
    assert list(again) == rest
    assert len(head) + len(rest) == len(s)


# -- the preset ----------------------------------------------------------------------------------
#: CURE's values, from its code: setup_and_train's LoraConfig / TrainingArguments defaults, the
#: v20 multi-task config and the phase-1 config (3000 steps, re-weighting every 500).
CURE: dict[str, dict[str, Any]] = {
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear",
             "modules_to_save": ["lm_head", "embed_tokens"]},
    "optim": {"lr": 2.0e-4, "weight_decay": 0.0, "schedule": "linear", "warmup_ratio": 0.03,
              "max_grad_norm": 0.3, "reset_at_phase2": True},
    "train": {"batch_size": 5, "grad_accum": 5, "steps": 3000 + 12000},
    "data": {"draw": "interleave", "augment": "cure_train"},
    "curriculum": {"kind": "cure", "period": 3000, "phase1_steps": 3000, "phase1_period": 500,
                   "phase1_tasks": ["anatomy_grounded_report"], "alpha": 0.8,
                   "val_subset": "fresh", "text_clean": "cure", "text_metrics": "cure"},
}  # fmt: skip


def write_config(tmp: Path, manifest: Path, text: str, names: tuple[str, ...] = ("alpha", "beta"))\
        -> Path:  # fmt: skip
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines = ['[model]\nname = "tiny-llava"\nvocab_size = 400\n', text]
    for src, name in zip(("alpha", "beta"), names, strict=True):
        p = manifest.parent / f"{src}-{tmp.name}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in rows if r["source"] == src))
        lines += ["[[data.sources]]", f'name = "{name}"', f'manifest = "{p}"', ""]
    config = tmp / "run.toml"
    config.write_text("\n".join(lines))
    return config


def test_preset_fills_cures_values_and_keys_set_win(manifest: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, manifest, '[train]\npreset = "cure"\nbatch_size = 2\n'
                          '[optim]\nlr = 1e-3\n', names=("alpha", "padchest-gr"))  # fmt: skip
    cfg = load_config(config)
    resolved = cfg.as_dict()
    for section, values in CURE.items():
        for key, value in values.items():
            if (section, key) in {("train", "batch_size"), ("optim", "lr")}:
                continue
            assert resolved[section][key] == value, (section, key)
    assert cfg.train.batch_size == 2 and cfg.optim.lr == 1e-3  # set in the file: they win
    filled = resolved["preset"]["filled"]
    assert "[train].batch_size" not in filled and "[optim].lr" not in filled
    assert "[lora].modules_to_save" in filled and "[data].draw" in filled
    assert [s["grounded_end"] for s in resolved["data"]["sources"]] == [None, ""]  # PadChest-GR
    assert "[[data.sources]][1].grounded_end" in filled
    # no preset: the defaults stay gradatim's
    plain = load_config(write_config(tmp_path, manifest, "[train]\nsteps = 3\n")).as_dict()
    assert plain["lora"]["modules_to_save"] == [] and plain["data"]["draw"] == "random"
    assert plain["optim"]["schedule"] == "constant" and plain["curriculum"]["kind"] == "none"
    assert plain["preset"] == {"name": None, "filled": []}
    # another curriculum chosen: the preset leaves the curriculum section alone
    medclm = '[train]\npreset = "cure"\n[curriculum]\nkind = "medclm"\n'
    other = load_config(write_config(tmp_path, manifest, medclm))
    assert other.curriculum.kind == "medclm" and other.curriculum.phase1_steps == 0
    assert other.lora.modules_to_save == ["lm_head", "embed_tokens"]
    bad = write_config(tmp_path, manifest, '[train]\npreset = "maira"\n')
    with pytest.raises(ConfigError, match=r"run.toml: \[train\].preset: expected one of cure"):
        load_config(bad)


def hf_linear(step: int, total: int, ratio: float) -> float:
    """transformers' ``get_linear_schedule_with_warmup`` with ``get_warmup_steps``'s
    ``ceil(ratio x total)``: the multiplier of the step after ``step`` optimizer steps."""
    warm = math.ceil(total * ratio)
    if step < warm:
        return float(step) / float(max(1, warm))
    return max(0.0, float(total - step) / float(max(1, total - warm)))


def test_linear_schedule_is_hugging_faces_per_phase(manifest: Path, tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, manifest, '[train]\npreset = "cure"\n'))
    got = [lr_factor(cfg, s) for s in range(15000)]
    want = [hf_linear(s, 3000, 0.03) for s in range(3000)]  # phase 1: its own run
    want += [hf_linear(s, 12000, 0.03) for s in range(12000)]  # phase 2: a new run
    assert got == pytest.approx(want, abs=1e-15)
    one = load_config(write_config(tmp_path, manifest, '[train]\nsteps = 50\n[optim]\n'
                                   'schedule = "linear"\nwarmup_ratio = 0.1\n'))  # fmt: skip
    assert [lr_factor(one, s) for s in range(50)] == [hf_linear(s, 50, 0.1) for s in range(50)]


# -- text ----------------------------------------------------------------------------------------
_NUM = r"(-?\d+\.?\d*)"
_BOX = re.compile(r"\[\s*" + r"\s*,\s*".join([_NUM] * 4) + r"\s*\]")


def cure_clean(text: str) -> str:
    """``_compute_iou_and_clean_text``'s cleaning: boxes out, whitespace collapsed, the text after
    ``Description...:`` kept, then ``": ."``, ``" ."``, ``":"`` to ``"."``."""
    out = " ".join(_BOX.sub("", text).strip().split())
    m = re.search(r"Description.*?:(.*)", out)
    if m:
        out = m.group(1).strip()
    return out.replace(": .", ".").replace(" .", ".").replace(":", ".")


TEXTS = [
    "Location of the left lung: [0.30,0.40,0.20,0.10]. Description: Small left effusion.",
    "Description of the right lung: No acute findings.",
    "Location of the heart: [0.50,0.55,0.30,0.25] [0.1, 0.2 ,0.3,0.4]",
    "left effusion: [0.34,0.51,0.20,0.18] [0.10,0.90,0.05,0.05]",
    "Small effusion [0.30,0.60,0.10,0.10]. Heart size normal",
    "Cardiomegaly [0.50,0.60,0.40,0.30]. No pneumothorax.",
    "  two   spaces : and colons: [1.00,2.5,-0.3,4] .",
    "",
]


def test_cure_text_cleaning_equals_cures_function() -> None:
    for t in TEXTS:
        assert clean_text(t, "cure") == cure_clean(t), t
        assert clean_text(t, "none") == t


def test_cleaned_text_no_longer_rewards_wrong_boxes() -> None:
    """The right phrase with a wrong box must not score better than with a close box."""
    ref = "left effusion: [0.34,0.51,0.20,0.18]"
    close = "left effusion: [0.30,0.49,0.20,0.18]"
    wrong = "left effusion: [0.80,0.10,0.10,0.10]"
    rows = [{"id": str(k), "source": "s", "task": "phrase_grounding", "prediction": p,
             "reference": ref, "reference_boxes": [[0.24, 0.42, 0.44, 0.60]]}
            for k, p in enumerate((close, wrong))]  # fmt: skip
    raw = evaluate_rows(rows)
    assert raw[0]["rougeL"] != raw[1]["rougeL"]  # as generated, coordinates count as words
    cleaned = evaluate_rows(rows, text_clean="cure", text_metrics="cure")
    assert cleaned[0]["rougeL"] == cleaned[1]["rougeL"] == 1.0
    assert cleaned[0]["bleu4"] == cleaned[1]["bleu4"]
    assert cleaned[0]["iou"] > 0.5 > cleaned[1]["iou"] == 0.0  # boxes are IoU's alone


def torchmetrics_bleu(preds: list[str], refs: list[str], n_gram: int = 4) -> float:
    """torchmetrics' ``BLEUScore`` (``_bleu_score_update`` / ``_bleu_score_compute``), one
    reference per prediction: whitespace tokens, clipped n-gram counts and lengths summed over
    the corpus, 0 when an order has no match, no smoothing, brevity penalty unless c > r."""
    num, den = [0.0] * n_gram, [0.0] * n_gram
    c = r = 0
    for p, t in zip(preds, refs, strict=True):
        pt, tt = (p.split() if p else []), (t.split() if t else [])
        c, r = c + len(pt), r + len(tt)

        def grams(toks: list[str]) -> Counter:
            out: Counter = Counter()
            for n in range(1, n_gram + 1):
                for k in range(len(toks) - n + 1):
                    out[tuple(toks[k : k + n])] += 1
            return out

        pc, tc = grams(pt), grams(tt)
        for g, v in (pc & tc).items():
            num[len(g) - 1] += v
        for g, v in pc.items():
            den[len(g) - 1] += v
    if min(num) == 0:
        return 0.0
    geo = math.exp(sum(math.log(a / b) / n_gram for a, b in zip(num, den, strict=True)))
    return geo * (1.0 if c > r else math.exp(1 - r / c))


def torchmetrics_rouge_l(pred: str, ref: str) -> float:
    """torchmetrics' ROUGE-L F without a stemmer: lower case, non-alphanumerics to spaces, LCS."""
    tok = lambda s: [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", s.lower())) if t]  # noqa: E731
    a, b = tok(pred), tok(ref)
    if not a or not b:
        return 0.0
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a)):
        for j in range(len(b)):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
            )
    lcs = table[-1][-1]
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(a), lcs / len(b)
    return 2 * p * rec / (p + rec)


CORPUS = [
    ("Small left pleural effusion. Heart size is normal.", "Small left effusion. Heart normal."),
    ("No acute findings.", "No acute findings."),
    ("Bilateral effusions with cardiomegaly", "Cardiomegaly. Bilateral pleural effusions."),
    ("the the the the", "the cat is on the mat"),
    ("Mild opacities in the lower lobes", "Opacity in the left lower lobe."),
]


def test_cure_metric_settings_equal_torchmetrics() -> None:
    rows = [{"id": str(k), "source": "a" if k < 3 else "b", "task": "report", "prediction": p,
             "reference": r} for k, (p, r) in enumerate(CORPUS)]  # fmt: skip
    per = evaluate_rows(rows, text_clean="none", text_metrics="cure")
    summary = summarize(per, text_clean="none", text_metrics="cure")
    preds, refs = [p for p, _ in CORPUS], [r for _, r in CORPUS]
    assert summary["overall"]["bleu4"] == pytest.approx(torchmetrics_bleu(preds, refs), rel=1e-6)
    assert summary["sources"]["a"]["bleu4"] == pytest.approx(
        torchmetrics_bleu(preds[:3], refs[:3]), rel=1e-6
    )
    for row, (p, r) in zip(per, CORPUS, strict=True):
        assert row["bleu4"] == pytest.approx(torchmetrics_bleu([p], [r]), rel=1e-6)
        assert row["rougeL"] == pytest.approx(torchmetrics_rouge_l(p, r), abs=1e-12)
    assert summary["overall"]["rougeL"] == pytest.approx(
        np.mean([torchmetrics_rouge_l(p, r) for p, r in CORPUS]), abs=1e-12
    )
    # CURE does not stem: "effusions" is not "effusion" (gradatim's default settings stem)
    assert rouge_l("effusions", "effusion", stem=False) == 0.0 < rouge_l("effusions", "effusion")
    assert summary["text_metrics"] == "cure" and summary["text_clean"] == "none"


def test_evaluate_cli_names_its_text_conventions(tmp_path: Path) -> None:
    rows = [{"id": "1", "source": "s", "task": "anatomy_grounded_report", "anatomy": "left lung",
             "prediction": "Location of the left lung: [0.30,0.40,0.20,0.10]. Description: "
                           "Small effusion.",
             "reference": "Location of the left lung: [0.31,0.40,0.20,0.10]. Description: "
                          "Small effusion.",
             "reference_boxes": [[0.21, 0.35, 0.41, 0.45]]}]  # fmt: skip
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps(rows[0]) + "\n")
    out = tmp_path / "m.json"
    args = [str(preds), "--out", str(out), "--text-clean", "cure", "--text-metrics", "cure"]
    assert main(["evaluate", *args]) == 0
    summary = json.loads(out.read_text())
    assert summary["text_clean"] == "cure" and summary["text_metrics"] == "cure"
    assert summary["overall"]["rougeL"] == 1.0  # the descriptions agree; boxes are IoU's
    assert 0 < summary["overall"]["iou"] < 1
    assert main(["evaluate", str(preds), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["overall"]["rougeL"] < 1.0  # coordinates scored as text


# -- validation ----------------------------------------------------------------------------------
def cure_level(sizes: list[int], target: int, multiple: int) -> list[int]:
    """``create_uniform_subset_from_indices_list``'s counts (the random choice left out)."""
    n = len(sizes)
    target = max(target, n)
    target = math.ceil(target / multiple) * multiple
    counts = [0] * n
    total = sum(sizes)
    ranking = sorted([(i, s) for i, s in enumerate(sizes)], key=lambda x: x[1])
    if target > total:
        excess = target - total
        for i in range(n):
            counts[i] = sizes[i] + excess // n + (1 if i < excess % n else 0)
        return counts
    start, got = 0, 0
    for h in range(1, ranking[-1][1] + 1):
        while ranking[start][1] < h:
            start += 1
        for i in range(start, n):
            counts[ranking[i][0]] += 1
            got += 1
            if got == target:
                return counts
    return counts


def cure_imagenome(locations_per_mode: list[int], target: int, multiple: int) -> list[list[int]]:
    """``SubsampleableConcatDataset.create_uniform_subset`` over the prompt modes, each mode's
    ``create_uniform_subset`` over its locations."""
    per_mode = math.ceil(target / len(locations_per_mode))
    out = []
    for locs in locations_per_mode:
        n = math.ceil(max(per_mode, locs) / multiple) * multiple
        out.append([n // locs + (1 if i < n % locs else 0) for i in range(locs)])
    return out


def test_fresh_subset_counts_follow_cures_functions() -> None:
    rng = random.Random(0)
    for _ in range(300):
        sizes = [rng.randint(1, 30) for _ in range(rng.randint(1, 9))]
        target, multiple = rng.randint(1, 200), rng.choice([1, 4, 8, 16])
        assert level_counts(sizes, target, multiple) == cure_level(sizes, target, multiple)
    for _ in range(100):
        modes = [rng.randint(1, 40) for _ in range(3)]
        target, multiple = rng.randint(1, 400), rng.choice([1, 8])
        each = math.ceil(target / 3)
        got = [spread_counts(n, math.ceil(max(each, n) / multiple) * multiple) for n in modes]
        assert got == cure_imagenome(modes, target, multiple)


def test_validation_uses_the_eval_pipeline_and_fresh_subsets(
    manifest: Path, tmp_path: Path
) -> None:
    """Validation images are CURE's evaluation pipeline (CLAHE clip 3.0, 8 x 8 tiles, always;
    nothing random), a fresh subset per validation step (the same on a repeat), the pinned one
    never changing."""
    text = ('[train]\npreset = "cure"\nbatch_size = 2\n[curriculum]\nval_split = "train"\n'
            "per_source = 3\n")  # fmt: skip
    cfg = load_config(write_config(tmp_path, manifest, text))
    records = source_records(cfg)
    bundle = build_model(cfg, records)
    _, sampler = build_loader(cfg, bundle, records)
    _, validator = _cure(cfg, bundle, sampler)
    assert validator is not None and validator.subset == "fresh"
    ds = validator.dataset
    # CURE's eval transform: CLAHE clip 3.0 always, at full resolution, then the cubic resize
    clahe = Augment(
        clahe={"clip_limit": 3.0, "tile_grid": (8, 8), "p": 1.0}, affine=None, pipeline="cure"
    )
    assert ds.augment.to_dict() == clahe.to_dict()
    cure_eval = model_dataset(bundle, source_records(cfg, split="train"), clahe, "cure", seed=9)
    ours = ds.load_batch([0, 1], epoch=0, seed=0)["pixel_values"]
    assert torch.equal(ours, cure_eval.load_batch([0, 1], epoch=5, seed=9)["pixel_values"])
    plain = load_config(write_config(tmp_path, manifest, text + '[data]\naugment = "none"\n'))
    unaugmented = _cure(plain, bundle, sampler)[1]
    assert unaugmented is not None  # no training augmentation: no evaluation pipeline either
    assert unaugmented.dataset.augment.to_dict() == Augment.none().to_dict()
    a, b, again = validator.draw(2), validator.draw(4), validator.draw(2)
    assert a == again and a != b
    # CURE's counts: 3 per source rounded up to the batch (2): 4, levelled over its categories
    sources = ds.column("source")
    assert Counter(sources[i] for i in a) == {"alpha": 4, "beta": 4}
    cfg.curriculum.val_subset = "pinned"
    _, pinned = _cure(cfg, bundle, sampler)
    assert pinned is not None and pinned.subset == "pinned"
    first = [sources[i] for i in pinned.indices]
    assert first == ["alpha"] * 3 + ["beta"] * 3  # the first records of each source, always


# -- three levels --------------------------------------------------------------------------------
def cure_category_weights(per: dict[str, dict[str, float]], alpha: float = 0.8) -> dict:
    """``_calculate_category_weights_from_metrics_helper`` (and the dataset-level twin):
    ``perf`` from IoU and/or CXRFEScore, ``err = 1 - perf`` (0.01 where <= 0), normalised."""
    err = {}
    for k, m in per.items():
        if "iou" in m and "text" in m:
            perf = alpha * m["iou"] + (1 - alpha) * m["text"]
        else:
            perf = m["iou"] if "iou" in m else m["text"]
        e = 1.0 - perf
        err[k] = 0.01 if e <= 0 else e
    total = sum(err.values())
    return {k: (e / total if total > 1e-6 else 1 / len(err)) for k, e in err.items()}


def test_three_level_weights_and_order_equal_cures() -> None:
    """Chest ImaGenome: dataset x prompt mode x location. CURE re-weights datasets and, per
    prompt mode, its locations; the prompt modes stay at weight 1 (``apply_resampling_weights``
    passes ``dataset_weights=[1] * n``). The nested order is CURE's composite of composites."""
    modes = {"locate": ["l1", "l2", "l3"], "describe": ["l1", "l2"]}
    sizes = {("img", "locate", "l1"): 6, ("img", "locate", "l2"): 4, ("img", "locate", "l3"): 9,
             ("img", "describe", "l1"): 5, ("img", "describe", "l2"): 7,
             ("ms", "a"): 8, ("ms", "b"): 3}  # fmt: skip
    members, start = {}, 0
    for path, n in sizes.items():
        members[path] = list(range(start, start + n))
        start += n
    sampler = NestedInterleaveSampler(list(members.values()), list(members), num_samples=500,
                                      shuffle=False)  # fmt: skip
    cur = TwoLevelCurriculum(sampler, {"img": modes, "ms": ["a", "b"]}, period=1)
    datasets = {"img": {"iou": 0.3, "text": 0.4}, "ms": {"iou": 0.7}}
    cats = {"ms": {"a": {"iou": 0.2}, "b": {"iou": 0.9}}}
    subs = {"img": {"locate": {"l1": {"iou": 0.1}, "l2": {"iou": 0.5}, "l3": {"iou": 0.95}},
                    "describe": {"l1": {"text": 0.3}, "l2": {"text": 0.6}}}}  # fmt: skip
    leaf = cur.update(datasets, 1, categories=cats, subcategories=subs)
    dw = cure_category_weights(datasets)
    cw = cure_category_weights(cats["ms"])
    lw = {m: cure_category_weights(subs["img"][m]) for m in modes}
    want = [dw["img"] * 0.5 * lw["locate"][x] for x in modes["locate"]]
    want += [dw["img"] * 0.5 * lw["describe"][x] for x in modes["describe"]]
    want += [dw["ms"] * cw["a"], dw["ms"] * cw["b"]]
    assert leaf == pytest.approx(want, abs=1e-12)
    img = Composite([Composite([members[("img", m, x)] for x in xs], [lw[m][x] for x in xs])
                     for m, xs in modes.items()], [1.0, 1.0])  # fmt: skip
    ms = Composite([members[("ms", "a")], members[("ms", "b")]], [cw["a"], cw["b"]])
    expected = sequential(Composite([img, ms], [dw["img"], dw["ms"]]), 0, 500)
    assert sampler.epoch_indices(0).tolist() == expected
    state = json.loads(json.dumps(cur.state_dict()))
    again = TwoLevelCurriculum(sampler, {"img": modes, "ms": ["a", "b"]})
    again.load_state_dict(state)
    assert again.leaf_weights() == pytest.approx(leaf, abs=1e-15)


# -- a preset run end to end -----------------------------------------------------------------------
def test_cure_preset_run_end_to_end(manifest: Path, tmp_path: Path) -> None:
    """The preset's run: CURE's order over sources and (three-level) categories, phase 1
    re-weighted, phase 2 with a fresh AdamW and its own linear schedule, validation every
    period; the resolved configuration in ``run-config.json``."""
    text = ('[train]\npreset = "cure"\nsteps = 4\nbatch_size = 2\ngrad_accum = 1\n'
            "checkpoint_every = 4\n"
            '[curriculum]\nphase1_steps = 2\nphase1_period = 1\nperiod = 2\nval_split = "train"\n'
            'per_source = 2\nmax_new_tokens = 4\ncategories = "task/cure"\n')  # fmt: skip
    cfg = load_config(write_config(tmp_path, manifest, text))
    cfg.train.out = str(tmp_path / "out")
    records = source_records(cfg)
    _, sampler = build_loader(cfg, build_model(cfg, records), records)
    assert isinstance(sampler, NestedInterleaveSampler)
    # the order: CURE's composites over the same leaves (positions inside each leaf)
    labels = run_categories(cfg, records)
    assert labels is not None
    leaves: dict[tuple[str, ...], list[int]] = {}
    for i, (r, lab) in enumerate(zip(records, labels, strict=True)):
        leaves.setdefault((r["source"], *lab.split("/")), []).append(i)
    assert list(leaves) == sampler.leaves
    positions = {p: list(range(len(m))) for p, m in leaves.items()}
    tree: dict[str, dict[str, list[Any]]] = {}
    for p in leaves:
        tree.setdefault(p[0], {}).setdefault(p[1], []).append(positions[p])
    cure = Composite([Composite([Composite(xs, [1.0] * len(xs)) for xs in cats.values()],
                                [1.0] * len(cats)) for cats in tree.values()],
                     [1.0] * len(tree))  # fmt: skip
    leaf, pos = sampler.slots(0, 0, 200)
    got = [positions[sampler.leaves[k]][p % len(positions[sampler.leaves[k]])]
           for k, p in zip(leaf.tolist(), pos.tolist(), strict=True)]  # fmt: skip
    want_leaf = [next(p for p in leaves if positions[p] is x) for x in
                 [_child_of(cure, g) for g in range(200)]]  # fmt: skip
    assert [sampler.leaves[k] for k in leaf.tolist()] == want_leaf
    assert got == sequential(cure, 0, 200)
    run = train(cfg)
    assert run.step == 4
    out = Path(cfg.train.out)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    lrs = [r["lr"] for r in steps]
    want = [2e-4 * hf_linear(s, 2, 0.03) for s in range(2)]
    want += [2e-4 * hf_linear(s, 2, 0.03) for s in range(2)]
    assert lrs == pytest.approx(want, abs=1e-12)
    vals = [r["step"] for r in log if "curriculum_weights" in r]
    assert vals == [1, 4]  # phase 1 every step before its end; phase 2 every 2 of its steps
    resolved = json.loads((out / "run-config.json").read_text())
    assert resolved["optim"]["max_grad_norm"] == 0.3 and resolved["preset"]["name"] == "cure"
    opt = load_file(out / "checkpoint-4" / "optimizer.safetensors")
    counts = {float(v) for k, v in opt.items() if k.endswith("step")}
    assert counts == {2.0}  # AdamW started afresh at phase 2: 2 steps, not 4


def _child_of(composite: Any, i: int) -> Any:
    """The leaf list that item ``i`` of a composite of composites reads."""
    node, idx = composite, i % len(composite)
    while isinstance(node, Composite):
        period = len(node.pattern)
        c = node.pattern[idx % period]
        row, per = node.before[c]
        j = (idx // period) * per + row[idx % period]
        node = node.children[c]
        idx = j % len(node)
    return node


def test_cure_preset_run_resumes_bit_exactly(manifest: Path, tmp_path: Path) -> None:
    """3 + 3 steps against 6: phase 1's curriculum, the fresh optimizer, the schedule, CURE's
    order and the fresh validation subsets all continue where the run stopped."""
    text = ('[train]\npreset = "cure"\nsteps = 6\nbatch_size = 2\ngrad_accum = 1\n'
            "checkpoint_every = 3\n"
            '[curriculum]\nphase1_steps = 2\nphase1_period = 1\nperiod = 2\nval_split = "train"\n'
            "per_source = 2\nmax_new_tokens = 3\n")  # fmt: skip
    runs = {}
    for name in ("full", "cut"):
        folder = tmp_path / name
        folder.mkdir()
        cfg = load_config(write_config(folder, manifest, text))
        cfg.train.out = str(folder / "out")
        if name == "full":
            runs[name] = train(cfg).losses
        else:
            head = train(cfg, max_steps=3).losses
            runs[name] = head + train(cfg, resume="auto").losses
    assert runs["cut"] == runs["full"]
    logs = [[json.loads(line) for line in (tmp_path / n / "out" / "log.jsonl").read_text()
             .splitlines()] for n in ("full", "cut")]  # fmt: skip
    weights = [[r["curriculum_weights"] for r in log if "curriculum_weights" in r] for log in logs]
    assert weights[0] == weights[1] and len(weights[0]) == 3  # steps 1, 4 and 6


def test_grounded_end_per_source(manifest: Path, tmp_path: Path) -> None:
    """CURE joins PadChest-GR's grounded sentences without a final period: a source named
    padchest-gr gets ``grounded_end = ""`` from the preset, in training targets and validation
    references; other sources keep the templates' period."""
    text = ('[train]\npreset = "cure"\nbatch_size = 2\n[curriculum]\nval_split = "train"\n'
            "per_source = 2\nmax_new_tokens = 2\n")  # fmt: skip
    cfg = load_config(write_config(tmp_path, manifest, text, names=("padchest-gr", "beta")))
    assert [s.grounded_end for s in cfg.data.sources] == ["", None]
    records = source_records(cfg)
    bundle = build_model(cfg, records)
    loader, sampler = build_loader(cfg, bundle, records)
    grounded = [i for i, r in enumerate(records) if r["task"] == "grounded_report"]
    batch = loader.dataset.load_batch(grounded, epoch=0, seed=0)
    fixed = with_source_ends(batch, source_ends(cfg))
    for before, after in zip(batch["target"], fixed["target"], strict=True):
        assert before.endswith(".") and after == before[:-1]
    _, validator = _cure(cfg, bundle, sampler)
    assert validator is not None
    validator.indices = [i for i in range(len(validator.dataset)) if i in grounded][:2]
    rows = validator.generate_rows(build_model(cfg, records).model)
    assert rows and all(not r["reference"].endswith(".") for r in rows)
