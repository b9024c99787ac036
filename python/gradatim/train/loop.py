"""The training loop: gradatim's loader feeds a LoRA-wrapped vision-language model; one loss per
task present in the batch goes through the multi-task gradient combination; checkpoints resume
bit-exactly (``checkpoint.py``); logs go to JSON lines, TensorBoard and a progress bar.

Per step: ``grad_accum`` micro-batches, each encoded (``text.py``), run forward (bf16 autocast on
CUDA), scored per sample (``loss.py``) and grouped by task; the per-task losses, weighted by their
share of the micro-batch (so ``linear`` is exactly the batch mean), are combined into the
adapters' gradients; then one optimizer step.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gradatim.curriculum import ErrorAwareCurriculum, TwoLevelCurriculum
from gradatim.manifest.common import TASKS as MANIFEST_TASKS
from gradatim.train import checkpoint
from gradatim.train.attention import MEDIUM, VisionAttention, attention_kl, vision_cls_kl
from gradatim.train.config import ConfigError, TrainConfig, resume_changes
from gradatim.train.data import (
    build_loader,
    eval_augment,
    make_dataset,
    run_categories,
    sampler_sources,
    source_ends,
    source_records,
    with_source_ends,
)
from gradatim.train.loss import group_losses, per_sample_loss, per_sample_role_loss
from gradatim.train.models import (
    TINY,
    ModelBundle,
    ModelError,
    apply_lora,
    load_model,
    lora_parameters,
    texts_of,
    tiny_model,
)
from gradatim.train.multitask import MultiTaskOptimizer
from gradatim.train.pretrain import PROMPT_WORDS
from gradatim.train.text import encode_batch
from gradatim.train.tokenizer import train_bpe
from gradatim.train.validation import Hook, Validator

__all__ = ["Run", "TASKS", "build_model", "lr_factor", "train"]

_NO_ATTENTIONS = (
    "MedCLM's attention KL term is off: the model returned no attention weights "
    '([model].attn_implementation = "{}"; the term needs eager attention, "auto" or "eager")'
)

#: The manifest's tasks (the core's list): the fixed order in which ranks exchange per-task
#: gradients.
TASKS = MANIFEST_TASKS


@dataclass
class Run:
    """What a finished (or stopped) run leaves: its folder, last step and per-step losses."""

    out: Path
    step: int
    losses: list[float]
    model: torch.nn.Module


def build_model(
    cfg: TrainConfig, records: list[dict[str, Any]], tokenizer: Any = None
) -> ModelBundle:
    """The configured model: a local checkpoint, or a tiny architecture whose byte-level BPE is
    trained on the run's records (deterministic, so a resumed run rebuilds the same one) unless
    ``tokenizer`` (the one a checkpoint saved) is given."""
    if cfg.model.path is not None:
        dtype = torch.bfloat16 if _bf16(cfg) else None
        try:
            bundle = load_model(cfg.model.path, dtype=dtype)
        except ModelError as e:  # name the configuration's key too
            if cfg.path is None:
                raise
            raise ConfigError(f"{cfg.path.name}: [model].path: {e}") from None
    else:
        family = TINY[str(cfg.model.name)]
        tok = tokenizer
        if tok is None:
            words = [PROMPT_WORDS]
            tok = train_bpe([*texts_of(records), *words], vocab_size=cfg.model.vocab_size)
        bundle = tiny_model(
            family, tok, image_size=cfg.model.image_size, hidden=cfg.model.hidden,
            seed=cfg.train.seed,
        )  # fmt: skip
    attn = cfg.model.attn_implementation
    if attn == "auto" and cfg.curriculum.attention_kl > 0:
        attn = "eager"  # attention weights for MedCLM's Medium-stage KL term
    if attn != "auto":
        bundle.model.set_attn_implementation(attn)  # type: ignore[operator]
    return bundle


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rate of the step after ``step`` steps, as a fraction of ``[optim].lr``:
    1 with ``schedule = "constant"``; with ``"linear"``, Hugging Face's linear schedule
    (``get_linear_schedule_with_warmup``: ``k / w`` during ``w = ceil(warmup_ratio x n)``
    warm-up steps, then ``(n - k) / (n - w)``, never below 0) over the run's ``n = steps``, or,
    with ``reset_at_phase2`` and CURE's phase 1, one schedule per phase (CURE's phase 2 is a new
    run)."""
    o = cfg.optim
    if o.schedule == "constant":
        return 1.0
    k, n = step, cfg.train.steps
    phase1 = cfg.curriculum.phase1_steps if "cure" in cfg.curriculum.kind else 0
    if o.reset_at_phase2 and 0 < phase1 < n:
        k, n = (step, phase1) if step < phase1 else (step - phase1, n - phase1)
    warmup = math.ceil(n * o.warmup_ratio)
    if k < warmup:
        return k / max(1, warmup)
    return max(0.0, (n - k) / max(1, n - warmup))


def _bf16(cfg: TrainConfig) -> bool:
    if cfg.train.bf16 == "auto":
        return torch.cuda.is_available()
    return bool(cfg.train.bf16)


def _batches(
    loader: Any, on_end: Callable[[], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(epoch, batch)``: epochs follow each other, each iterator is a new epoch. ``on_end``
    runs when an epoch's iterator is exhausted, before the next one draws anything (MedCLM's
    stage update, so the whole next epoch is drawn with it, whatever the loader prefetches)."""
    while True:
        it = iter(loader)
        epoch = loader.epoch
        for batch in it:
            yield epoch, batch
        if on_end is not None:
            on_end()


class _StageLosses:
    """MedCLM's learning signal: per domain and stage, the epoch's mean loss, handed to the
    ``StageScheduler`` when the epoch ends (MedCLM's released scheduler updates per epoch). A
    domain is the sample's source or MedCLM's lesion + modality (``[curriculum].domains``)."""

    NAMES = {0: "easy", 1: "medium", 2: "hard"}

    def __init__(self, scheduler: Any, dataset: Any) -> None:
        self.scheduler = scheduler
        self.dataset = dataset
        self.epoch: int | None = None
        self.sums: dict[tuple[str, str], list[float]] = {}

    def add(self, epoch: int, per_sample: torch.Tensor, batch: dict[str, Any]) -> None:
        if self.epoch is not None and epoch != self.epoch:
            self.flush()
        self.epoch = epoch
        codes = batch["stage"].tolist()
        domains = self.dataset.sample_domains(batch["index"])
        for loss, code, domain in zip(per_sample.tolist(), codes, domains, strict=True):
            if code in self.NAMES:
                acc = self.sums.setdefault((domain, self.NAMES[code]), [0.0, 0.0])
                acc[0] += loss
                acc[1] += 1

    def flush(self) -> None:
        if self.epoch is None or not self.sums:
            return
        losses: dict[str, dict[str, float]] = {}
        for (source, stage), (total, n) in self.sums.items():
            losses.setdefault(source, {})[stage] = total / n
        self.scheduler.update(losses, epoch=self.epoch)
        self.sums = {}

    def state_dict(self) -> dict[str, Any]:
        """The unfinished epoch's sums, so a resumed run updates the scheduler exactly."""
        return {
            "epoch": self.epoch,
            "sums": [[s, g, v[0], v[1]] for (s, g), v in self.sums.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = state["epoch"]
        self.sums = {(s, g): [float(t), float(n)] for s, g, t, n in state["sums"]}


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    max_steps: int | None = None,
    validation_hook: Hook | None = None,
) -> Run:
    """Train as configured; ``resume``: a checkpoint folder, or ``"auto"`` for the newest one
    under the run's ``out``. ``max_steps`` stops early (the schedule still counts to
    ``[train].steps``). ``validation_hook`` may rewrite the generated validation rows before they
    are scored (tests inject validation errors with it)."""
    out = Path(cfg.train.out)
    out.mkdir(parents=True, exist_ok=True)
    path: Path | None = None
    changes: list[tuple[str, Any, Any]] = []
    if resume is not None:  # checked before anything is built or written: a refusal is quick
        path = checkpoint.latest(out) if str(resume) == "auto" else Path(resume)
        if path is not None:
            saved = checkpoint.read_state(path)
            changes = resume_changes(cfg, saved["config"], path.name, int(saved["step"]))
            checkpoint.check_optimizer_steps(path, _optimizer_steps(cfg, int(saved["step"])))
            checkpoint.check_loader_state(path, saved, cfg.train.grad_accum)
    rank, world, device = _distributed()
    seed = cfg.train.seed
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - libraries draw from the global state
    random.seed(seed)
    records = source_records(cfg)
    bundle = build_model(cfg, records)
    model = apply_lora(bundle.model, cfg.lora).to(device)
    adapters, heads = lora_parameters(model)
    base = torch.optim.AdamW(
        [*adapters, *heads], lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    optimizer = MultiTaskOptimizer(
        base,
        shared=adapters,
        method=cfg.optim.method,
        tasks=TASKS,  # type: ignore[arg-type]
        normalize_weights=True,  # the weights are sample counts: the batch's mean loss
    )
    loader, sampler = build_loader(cfg, bundle, records, rank=rank, world_size=world)
    curriculum, validator = _cure(cfg, bundle, sampler, world)
    # CURE's phase 1: the anatomy-grounded task alone for `phase1_steps` (re-weighted every
    # `phase1_period` steps), then the multi-task phase with the curriculum (its own sampler,
    # which starts at its position 0, and optionally a fresh optimizer)
    phase1 = cfg.curriculum.phase1_steps if "cure" in cfg.curriculum.kind else 0
    first, curriculum1, validator1 = None, None, None
    if phase1:
        first, sampler1 = build_loader(cfg, bundle, records, rank=rank, world_size=world, phase=1)
        if cfg.curriculum.phase1_period:
            curriculum1, validator1 = _cure(cfg, bundle, sampler1, world, 1)
    ends = source_ends(cfg)
    clip = [p for g in base.param_groups for p in g["params"]]
    step = 0
    resumed: dict[str, Any] | None = None
    torch.manual_seed(seed + rank)  # model built: each rank its own dropout stream
    if path is not None:
        state = _resume(cfg, path, model, base, rank)
        resumed = state
        active = first if first is not None and int(state["step"]) < phase1 else loader
        try:
            active.load_state_dict(state["loader"])
        except ValueError as e:  # the loader's or sampler's own checks: name the file
            raise checkpoint.CheckpointError(f"{path / 'state.json'}: loader: {e}") from None
        checkpoint.check_loader_state(path, state, cfg.train.grad_accum, active)
        if curriculum is not None:
            curriculum.load_state_dict(state["curriculum"])
            curriculum.period = cfg.curriculum.period  # a changed cadence applies
        if curriculum1 is not None and "curriculum_phase1" in state:
            curriculum1.load_state_dict(state["curriculum_phase1"])
        step = int(state["step"])
    if rank == 0:  # the resolved configuration, with the keys a preset filled
        (out / "run-config.json").write_text(json.dumps(cfg.as_dict(), indent=2) + "\n")
    log = _Log(out, step if resume is not None else None, rank == 0, loader, sampler,
               gradient_method=optimizer.record)  # fmt: skip
    if resumed is not None:
        log.resumed(step, str(path), changes, base.param_groups[0]["lr"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if _bf16(cfg) else nullcontext()

    scheduler = getattr(loader.dataset, "stages", None)
    stage_losses = _StageLosses(scheduler, loader.dataset) if hasattr(scheduler, "update") else None
    if stage_losses is not None and resumed is not None and "stage_losses" in resumed:
        stage_losses.load_state_dict(resumed["stage_losses"])

    def end() -> None:  # an epoch ended: its losses update MedCLM's stages before the next
        if stage_losses is not None:
            stage_losses.flush()

    batches = _batches(first if first is not None and step < phase1 else loader, end)
    losses: list[float] = []
    own: list[tuple[float, dict[str, int]]] = []  # this rank's share of each step
    kl_weight = cfg.curriculum.attention_kl if cfg.curriculum.kind == "medclm" else 0.0
    vision_form = cfg.curriculum.attention_form == "vision_cls"
    seen = VisionAttention(model) if kl_weight > 0 and vision_form else None
    stop = min(cfg.train.steps, max_steps if max_steps is not None else cfg.train.steps)
    model.train()
    while step < stop:
        if first is not None and step == phase1:
            batches = _batches(loader, end)  # phase 2
            if cfg.optim.reset_at_phase2:  # CURE's phase 2 is a new run: a fresh AdamW
                base.state.clear()
        if cfg.optim.schedule != "constant":
            for group in base.param_groups:
                group["lr"] = cfg.optim.lr * lr_factor(cfg, step)
        t0 = time.perf_counter()
        waited, images, total = 0.0, 0, 0.0
        tasks: dict[str, int] = {}
        kl_sum, kl_n = 0.0, 0
        for _ in range(cfg.train.grad_accum):
            t1 = time.perf_counter()
            epoch, batch = next(batches)
            batch = with_source_ends(batch, ends)
            waited += time.perf_counter() - t1
            encoded = encode_batch(
                bundle, batch["prompt"], batch["target"], batch.get("target_parts")
            )
            enc = {k: v.to(device) for k, v in encoded.items()}
            labels = enc.pop("labels")
            roles = enc.pop("label_roles", None)
            pixels = batch["pixel_values"].to(device)
            want = kl_weight > 0 and batch.get("box_mask") is not None
            want = want and bool((batch["stage"] == MEDIUM).any())
            with autocast, seen if want and seen is not None else nullcontext():
                outputs = model(
                    pixel_values=pixels, **enc, output_attentions=want and not vision_form
                )
            weights = (
                (seen.weights if seen is not None else None)
                if vision_form
                else (outputs.attentions or None)
            )
            logits = outputs.logits
            # MedCLM's 0.8 x answer + 0.2 x rationale where targets have parts; else the mean
            per = (
                per_sample_loss(logits, labels)
                if roles is None
                else per_sample_role_loss(logits, labels, roles)
            )
            if stage_losses is not None:  # the scheduler follows the language-model loss
                stage_losses.add(epoch, per.detach().float().cpu(), batch)
            if want and weights is None:
                kl_weight = 0.0
                warnings.warn(_NO_ATTENTIONS.format(cfg.model.attn_implementation), stacklevel=2)
            elif want and vision_form:
                kl = vision_cls_kl(weights, batch["box_mask"], batch["stage"])
            elif want:
                kl = attention_kl(
                    weights, enc["input_ids"], labels, bundle.image_token_id,
                    batch["box_mask"], batch["stage"],
                )  # fmt: skip
            if want and weights is not None:
                per = per + kl_weight * kl
                medium = batch["stage"].to(kl.device) == MEDIUM
                kl_sum += float(kl.detach()[medium].sum())
                kl_n += int(medium.sum())
            names, task_losses = group_losses(per, batch["task"])
            counts = [float(sum(t == n for t in batch["task"])) for n in names]
            optimizer.backward(task_losses, counts, names)
            log.micro_batch(names, task_losses, counts, base.param_groups[0]["lr"])
            total += float(per.detach().mean()) / cfg.train.grad_accum
            images += len(batch["task"])
            for t in batch["task"]:
                tasks[t] = tasks.get(t, 0) + 1
        optimizer.apply(step)  # PCGrad's order from the step: resumable without saved state
        if cfg.optim.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(clip, cfg.optim.max_grad_norm)
        base.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        own.append((total, dict(tasks)))
        if world > 1:  # the log's loss and counts are the whole step's, not rank 0's share
            total, images, tasks, kl_sum, kl_n = _reduce_step(
                total, images, tasks, kl_sum, kl_n, log, world, device
            )
        losses.append(total)
        elapsed = time.perf_counter() - t0
        weights = getattr(sampler, "weights", None)
        extra = {"attention_kl": kl_sum / kl_n} if kl_n else {}
        log.step(step, total, images / elapsed, waited / elapsed, weights, tasks,
                 epoch=epoch if step > phase1 else None, **extra)  # fmt: skip
        if curriculum is not None and validator is not None and step > phase1:
            if curriculum.due(step - phase1):  # steps of the multi-task phase
                metrics, per_category = validator.evaluate(
                    model, rank, world, validation_hook, step=step
                )
                new = _update(curriculum, metrics, per_category, step - phase1)
                log.validation(step, metrics, new, per_category)
        if curriculum1 is not None and validator1 is not None and step < phase1:
            if curriculum1.due(step):  # CURE's phase 1 re-weighting
                metrics, per_category = validator1.evaluate(
                    model, rank, world, validation_hook, step=step
                )
                new = _update(curriculum1, metrics, per_category, step)
                log.validation(step, metrics, new, per_category)
        if step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps:
            active = first if first is not None and step < phase1 else loader
            state = {"loader": active.state_dict(), "config": cfg.as_dict(),
                     "gradient_method": optimizer.record}  # fmt: skip
            if curriculum is not None:
                state["curriculum"] = curriculum.state_dict()
            if curriculum1 is not None:
                state["curriculum_phase1"] = curriculum1.state_dict()
            if stage_losses is not None:
                state["stage_losses"] = stage_losses.state_dict()
            tok = bundle.tokenizer if cfg.model.path is None else None  # a local model has its own
            checkpoint.save(
                out, step, model, base, state, rank=rank, world_size=world, tokenizer=tok
            )
    log.close()
    _summary(out, rank, step, model, getattr(sampler, "weights", None), own)
    return Run(out=out, step=step, losses=losses, model=model)


def _resume(
    cfg: TrainConfig,
    path: Path,
    model: torch.nn.Module,
    base: torch.optim.Optimizer,
    rank: int,
) -> dict[str, Any]:
    """Restore checkpoint ``path`` (already checked: its configuration against ``cfg`` by
    ``resume_changes``, its optimizer's step count against its step), then apply the
    configuration's optimizer settings that may change (``[optim].lr``, ``weight_decay``: the
    restored optimizer would keep the checkpoint's). Returns ``state.json``."""
    state = checkpoint.load(path, model, base, rank=rank)
    step = int(state["step"])
    for group in base.param_groups:
        group["lr"] = cfg.optim.lr * lr_factor(cfg, step)
        group["weight_decay"] = cfg.optim.weight_decay
    return state


def _optimizer_steps(cfg: TrainConfig, step: int) -> int:
    """The optimizer steps a checkpoint at ``step`` holds: one per step, counted from CURE's
    phase 2 when ``reset_at_phase2`` gave it a fresh AdamW there."""
    phase1 = cfg.curriculum.phase1_steps if "cure" in cfg.curriculum.kind else 0
    return step - phase1 if cfg.optim.reset_at_phase2 and 0 < phase1 < step else step


def _cure(
    cfg: TrainConfig,
    bundle: ModelBundle,
    sampler: Any,
    world: int = 1,
    phase: int = 2,
    sources: list[str] | None = None,
) -> tuple[ErrorAwareCurriculum | TwoLevelCurriculum | None, Validator | None]:
    """CURE's error-aware curriculum over the sampler's sources (and, with ``categories``, over
    each source's categories and sub-categories), starting uniform, with its validator: the
    validation split through the run's evaluation pipeline, the configured subset and text
    conventions. ``phase=1``: CURE's phase 1 (``phase1_period``; the validation records of
    ``phase1_tasks``). Validation covers ``sources``, by default the sampler's own sources (by
    name)."""
    c = cfg.curriculum
    if "cure" not in c.kind:
        return None, None
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    period = c.phase1_period if phase == 1 else c.period
    curriculum: ErrorAwareCurriculum | TwoLevelCurriculum
    if c.categories is not None:
        curriculum = TwoLevelCurriculum(
            sampler, period=period, alpha=c.alpha, samples_per_step=per_step
        )
        names = list(curriculum.hierarchy)
    else:
        names = sources if sources is not None else sampler_sources(sampler)
        curriculum = ErrorAwareCurriculum(
            sampler, names, period=period, alpha=c.alpha, samples_per_step=per_step,
            initial="uniform",
        )  # fmt: skip
    # one selection in the core over the manifests the training records opened (shared, not
    # reread): the sources by name, phase 1's tasks
    tasks = c.phase1_tasks if phase == 1 else None
    val_records = source_records(cfg, split=c.val_split, names=names, tasks=tasks)
    val = make_dataset(cfg, bundle, val_records, augment=eval_augment(cfg))
    per_source: dict[str, int] = {"*": c.per_source}
    per_source.update({s.name: s.val_samples for s in cfg.data.sources if s.val_samples})
    validator = Validator(
        val,
        bundle,
        per_source=per_source,
        batch_size=cfg.train.batch_size,
        max_new_tokens=c.max_new_tokens,
        box_format=cfg.data.box_format,
        seed=cfg.train.seed,
        categories=run_categories(cfg, val_records),
        subset=c.val_subset,
        text_clean=c.text_clean,
        text_metrics=c.text_metrics,
        ends=source_ends(cfg),
        world=world,
    )
    return curriculum, validator


def _update(
    curriculum: ErrorAwareCurriculum | TwoLevelCurriculum,
    metrics: dict[str, dict[str, float]],
    per_category: dict[str, dict[str, dict[str, float]]] | None,
    step: int,
) -> dict[str, float]:
    """One curriculum update; returns the weights to log (``source`` or ``source/category``,
    ``source/category/sub``). A category or sub-category that the validation subset does not
    cover is scored as its source. The middle level of a source with sub-categories is not
    re-weighted (CURE's prompt modes)."""
    if not isinstance(curriculum, TwoLevelCurriculum):
        return curriculum.update(metrics, step)
    categories: dict[str, dict[str, dict[str, float]]] = {}
    subcategories: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for s, tree in curriculum.hierarchy.items():
        if s not in metrics:
            continue
        got = (per_category or {}).get(s, {})
        if isinstance(tree, dict):
            subcategories[s] = {
                c: {x: got.get(f"{c}/{x}", metrics[s]) for x in subs} for c, subs in tree.items()
            }
        else:
            categories[s] = {c: got.get(c, metrics[s]) for c in tree}
    leaf = curriculum.update(metrics, step, categories=categories, subcategories=subcategories)
    return {"/".join(path): w for path, w in zip(curriculum.leaves, leaf, strict=True)}


def _distributed() -> tuple[int, int, torch.device]:
    """Rank, world size and device; joins the process group under ``torchrun`` (gloo on CPU,
    nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _reduce_step(
    total: float,
    images: int,
    tasks: dict[str, int],
    kl_sum: float,
    kl_n: int,
    log: _Log,
    world: int,
    device: torch.device,
) -> tuple[float, int, dict[str, int], float, int]:
    """One step's figures over every rank (one all-reduce): the mean of the ranks' losses (equal
    shares of the global batch: the global batch's mean), the summed image and per-task sample
    counts and attention-KL sums, and the log's per-task loss sums (``log.task_sums``, replaced
    by the ranks' totals)."""
    names = list(TASKS)
    extra = sorted((set(tasks) | set(log.task_sums)) - set(names))
    if extra:
        raise ValueError(f"tasks {extra} are not among {names}")
    sums = [log.task_sums.get(t, [0.0, 0.0]) for t in names]
    values = [total, float(images), kl_sum, float(kl_n)]
    values += [float(tasks.get(t, 0)) for t in names] + [s[0] for s in sums] + [s[1] for s in sums]
    vec = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(vec, op=dist.ReduceOp.SUM)
    v = vec.cpu().tolist()
    k = len(names)
    counts, loss_sums, loss_ns = v[4 : 4 + k], v[4 + k : 4 + 2 * k], v[4 + 2 * k :]
    log.task_sums = {t: [loss_sums[i], loss_ns[i]] for i, t in enumerate(names) if loss_ns[i] > 0}
    reduced = {t: int(round(counts[i])) for i, t in enumerate(names) if counts[i] > 0}
    return v[0] / world, int(round(v[1])), reduced, v[2], int(round(v[3]))


def _summary(
    out: Path,
    rank: int,
    step: int,
    model: torch.nn.Module,
    weights: list[float] | None,
    own: list[tuple[float, dict[str, int]]] | None = None,
) -> None:
    """``out/rank-<r>.json``: where this rank ended (step, a digest of its adapter, the sampler
    weights) and, per step this process ran, its own share (``losses``: its mean loss,
    ``tasks``: its sample counts; the log has the whole steps'), so ranks can be compared."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            digest.update(name.encode())
            digest.update(p.detach().float().cpu().numpy().tobytes())
    row = {"rank": rank, "step": step, "adapter_sha256": digest.hexdigest(), "weights": weights,
           "losses": [loss for loss, _ in own or []],
           "tasks": [tasks for _, tasks in own or []]}  # fmt: skip
    (out / f"rank-{rank}.json").write_text(json.dumps(row))


class _Log:
    """JSON lines (``out/log.jsonl``), TensorBoard (``out/tensorboard``) and a progress bar.

    ``resume_step``: ``None`` for a fresh run (the log starts empty, TensorBoard hides older
    events); else the step the run resumes from: rows past it, written by a run stopped after
    its checkpoint, are dropped (the file is rewritten atomically) and TensorBoard purges its
    events past it, so every step and every validation is logged once. ``loader`` and
    ``sampler`` (the multi-task phase's) give MedCLM's stage scheduler and RRGCL's schedule.
    ``gradient_method`` (the optimizer's record: options, conventions, a reconstruction's
    guesses) goes into the first step row this process writes, fresh or resumed."""

    STAGES = ("easy", "medium", "hard")

    def __init__(
        self,
        out: Path,
        resume_step: int | None,
        enabled: bool = True,
        loader: Any = None,
        sampler: Any = None,
        gradient_method: dict[str, Any] | None = None,
    ) -> None:
        self.enabled = enabled
        self.gradient_method = gradient_method
        self.task_sums: dict[str, list[float]] = {}  # every rank's: all-reduced under torchrun
        self.lr: float | None = None
        if not enabled:
            return
        self.start = time.monotonic()
        path = out / "log.jsonl"
        if resume_step is not None:
            self._keep_until(path, resume_step)
        self.file = path.open("a" if resume_step is not None else "w")
        from torch.utils.tensorboard import SummaryWriter

        purge = 0 if resume_step is None else resume_step + 1  # events at steps >= purge hidden
        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=purge)
        from tqdm import tqdm

        self.bar = tqdm(
            desc="train", unit="step", leave=False, disable=None, initial=resume_step or 0
        )
        stages = getattr(getattr(loader, "dataset", None), "stages", None)
        self.stages: Any = stages if hasattr(stages, "medium_probability") else None
        schedule = getattr(sampler, "_schedule", None)  # RRGCL's epoch subsets, either sampler
        self.schedule: Any = schedule if hasattr(schedule, "epoch_indices") else None
        self.subset_sizes: dict[int, int] = {}
        self.resume_note: dict[str, Any] | None = None

    def resumed(self, step: int, path: str, changes: list[tuple[str, Any, Any]], lr: float) -> None:
        """A resumed run: the first step row it writes gets ``resumed`` (the checkpoint, its
        step, the configuration keys changed since, each ``{"checkpoint": old, "now": new}``,
        and the learning rate the optimizer now holds); each change is also a warning."""
        if not self.enabled:
            return
        self.resume_note = {
            "checkpoint": path,
            "step": step,
            "changes": {k: {"checkpoint": old, "now": new} for k, old, new in changes},
            "lr": float(lr),
        }
        for key, old, new in changes:
            warnings.warn(
                f"resumed from {path}: {key} changed from {old!r} to {new!r} (applied from step "
                f"{step + 1}; the optimizer's learning rate is now {float(lr):g})",
                stacklevel=3,
            )

    @staticmethod
    def _keep_until(path: Path, step: int) -> None:
        """Drop the rows of ``path`` past ``step`` (and a torn last line): temp file + rename."""
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and int(row.get("step", 0)) <= step:
                kept.append(line + "\n")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _now(self) -> dict[str, Any]:
        """``time``: ISO 8601 UTC with milliseconds; ``elapsed_s``: since the log was opened."""
        ms = int(time.time() * 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
        return {"time": f"{stamp}.{ms % 1000:03d}Z", "elapsed_s": time.monotonic() - self.start}

    def micro_batch(
        self, names: list[str], losses: list[torch.Tensor], counts: list[float], lr: float
    ) -> None:
        """One micro-batch's per-task mean losses and sample counts; ``lr``: the optimizer's
        learning rate for this step (read before it steps, so a scheduler cannot shift it).
        Every rank keeps them (``_reduce_step`` sums them over ranks); only rank 0 writes."""
        if self.lr is None:
            self.lr = float(lr)
        for name, loss, n in zip(names, losses, counts, strict=True):
            acc = self.task_sums.setdefault(name, [0.0, 0.0])
            acc[0] += float(loss.detach()) * n
            acc[1] += n

    def _medclm(self, epoch: int) -> dict[str, dict[str, Any]]:
        """Per source: the most advanced stage a sample can be drawn in at ``epoch`` and the
        probabilities of Medium and Hard (``StageScheduler.assign``'s rules)."""
        s = self.stages
        p_hard = s.hard_budget if epoch >= s.params["hard_transition_epoch"] else 0.0
        out = {}
        for source in s.domains:
            p_medium = (1.0 - p_hard) * s.medium_probability(source, epoch)
            stage = "hard" if p_hard > 0 else "medium" if p_medium > 0 else "easy"
            out[str(source)] = {"stage": stage, "p_medium": p_medium, "p_hard": p_hard}
        return out

    def _rrgcl(self, epoch: int) -> dict[str, int]:
        """RRGCL's epoch ``t`` (the paper's count) and the size of its subset."""
        t = epoch + int(getattr(self.schedule, "first_t", 0))
        if t not in self.subset_sizes:
            self.subset_sizes[t] = len(self.schedule.epoch_indices(t))
        return {"epoch": t, "subset_size": self.subset_sizes[t]}

    def step(
        self,
        step: int,
        loss: float,
        images_per_s: float,
        stall: float,
        weights: list[float] | None,
        tasks: dict[str, int],
        *,
        epoch: int | None = None,
        **extra: float,
    ) -> None:
        """One row per step; ``epoch``: the loader epoch of the step's batches (``None`` in
        CURE's phase 1, whose loader has no stages or RRGCL subsets)."""
        lr, sums = self.lr, self.task_sums
        self.lr, self.task_sums = None, {}
        if not self.enabled:
            return
        task_loss = {name: total / n for name, (total, n) in sums.items()}
        row = {"step": step, **self._now(), "loss": loss, "lr": lr,
               "images_per_s": images_per_s, "loader_stall": stall, "weights": weights,
               "tasks": tasks, "task_loss": task_loss, **extra}  # fmt: skip
        if epoch is not None and self.stages is not None:
            row["medclm"] = self._medclm(epoch)
        if epoch is not None and self.schedule is not None:
            row["rrgcl"] = self._rrgcl(epoch)
        if self.gradient_method is not None:  # once per process: the first row it writes
            row["gradient_method"], self.gradient_method = self.gradient_method, None
        if self.resume_note is not None:  # once per resumed process: its first row
            row["resumed"], self.resume_note = self.resume_note, None
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        scalars = {"loss": loss, "lr": lr, "images_per_s": images_per_s, "loader_stall": stall,
                   **extra, **{f"task_loss/{k}": v for k, v in task_loss.items()}}  # fmt: skip
        for source, m in row.get("medclm", {}).items():
            scalars[f"medclm/stage/{source}"] = self.STAGES.index(m["stage"])
            scalars[f"medclm/p_medium/{source}"] = m["p_medium"]
            scalars["medclm/p_hard"] = m["p_hard"]
        if "rrgcl" in row:
            scalars["rrgcl/epoch"] = row["rrgcl"]["epoch"]
            scalars["rrgcl/subset_size"] = row["rrgcl"]["subset_size"]
        for tag, value in scalars.items():
            if value is not None:
                self.tb.add_scalar(tag, value, step)
        self.bar.update(1)
        self.bar.set_postfix(
            loss=f"{loss:.3f}", lr=lr, img_s=f"{images_per_s:.1f}", stall=f"{stall:.0%}"
        )

    def validation(
        self,
        step: int,
        metrics: dict[str, dict[str, float]],
        weights: dict[str, float],
        categories: dict[str, dict[str, dict[str, float]]] | None = None,
    ) -> None:
        """One row per validation: ``{source: {metric: value}}`` (and per category with CURE's
        categories) and the curriculum's new weights."""
        if not self.enabled:
            return
        row: dict[str, Any] = {"step": step, **self._now(), "validation": metrics}
        if categories is not None:
            row["validation_categories"] = categories
        row["curriculum_weights"] = weights
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        for source, values in metrics.items():
            for metric, v in values.items():
                self.tb.add_scalar(f"validation/{source}/{metric}", v, step)
        for source, cats in (categories or {}).items():
            for cat, values in cats.items():
                for metric, v in values.items():
                    self.tb.add_scalar(f"validation/{source}/{cat}/{metric}", v, step)
        for name, w in weights.items():
            self.tb.add_scalar(f"curriculum/{name}", w, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        self.tb.close()
        self.bar.close()
