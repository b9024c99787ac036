"""``gradatim train`` configuration: a TOML file, validated into typed sections. Every error names
the file, the section and the key (``run.toml: [lora].r: expected an int >= 1, got 'x'``); an
unknown key is an error too, so a misspelt option never trains silently.

Example::

    [model]
    name = "tiny-llava"            # or path = "/models/medgemma-4b-it" (local, never downloaded)

    [lora]                         # CURE's values (modules_to_save = [] unless preset "cure")
    r = 16
    alpha = 32
    dropout = 0.05

    [optim]
    lr = 2e-4
    method = "linear"              # linear | pcgrad | cagrad | came_grad

    [train]
    steps = 100
    batch_size = 4
    grad_accum = 1
    out = "runs/demo"
    # preset = "cure"              # CURE's values for every key not set here (PRESETS below)

    [[data.sources]]
    name = "vindr"
    manifest = "data/vindr.jsonl"
    split = "train"
    weight = 0.3

    [curriculum]
    kind = "cure"                  # none | cure | rrgcl | cure+rrgcl | medclm
    period = 3000                  # validate and re-weight every K steps
    val_split = "validate"
    per_source = 16
    categories = "anatomy"         # CURE's category level: task | phrase | anatomy
    phase1_steps = 500             # CURE's phase 1: anatomy-grounded reports only, then multi-task

``[train] preset = "cure"`` fills every key the file does not set with CURE's value (PabloMessina/
CURE 9365333: ``scripts/train_medgemma.py``, its ``configs/training/*.yaml``; see :data:`PRESETS`);
keys the file sets win, and the resolved configuration, with the keys the preset filled, is what
``TrainConfig.as_dict`` returns and the run saves (``run-config.json``, every checkpoint).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from gradatim.curriculum.stages import DOMAIN_RULES
from gradatim.errors import GradatimError
from gradatim.manifest.common import TASKS, not_regular
from gradatim.train.attention import ATTENTION_FORMS
from gradatim.train.gradients import METHODS
from gradatim.train.models import TINY, LoraSettings

__all__ = [
    "ConfigError",
    "TrainConfig",
    "load_config",
    "KINDS",
    "CATEGORIES",
    "PRESETS",
    "RESUME_MAY_CHANGE",
    "resume_changes",
]

#: Curricula: none; CURE's error-aware source (and category) weights; RRGCL's class-level epoch
#: subsets; both composed in one sampler (RRGCL inside each source, CURE across); MedCLM's stages.
KINDS = ("none", "cure", "rrgcl", "cure+rrgcl", "medclm")

#: What a CURE category is, per record: its task (prompt type), or its first box's phrase or
#: anatomy (a record without one is "none"), or CURE's per task ("cure": the anatomy of an
#: anatomy-grounded record, the phrase of a phrase-grounding one, "none" otherwise). Two joined by
#: "/" ("task/anatomy") make categories with sub-categories (CURE's third level).
CATEGORIES = ("task", "phrase", "anatomy", "cure")

#: CURE's values, each from its public code (PabloMessina/CURE 9365333): ``scripts/
#: train_medgemma.py`` (``setup_and_train``'s LoRA and ``TrainingArguments`` defaults: AdamW,
#: linear decay, ``warmup_ratio`` 0.03, ``max_grad_norm`` 0.3, ``modules_to_save`` lm_head and
#: embed_tokens; the trainer's ``SequentialSampler`` over ``WeightedCompositeDataset``; its
#: validation's text cleaning and fresh uniform subsets) and ``configs/training/`` (phase 1:
#: ``chestimagenome_..._custom_eval_250_curriculum_500_with_aug_3000_steps.yaml``, 3000 steps,
#: re-weighting every 500; phase 2: ``multi_task_..._v20_...yaml``, a new run from the phase-1
#: adapter, so a fresh optimizer, 12000 steps, re-weighting every 3000, batch 5 x 5, lr 2e-4,
#: r 16, alpha 32, dropout 0.05, 200 validation samples and 200 new tokens for Chest ImaGenome).
#: docs/curriculum.md lists where gradatim departs. ``grounded_end`` is set per source: "" for a
#: source named or selected "padchest-gr" (CURE joins PadChest-GR's sentences without a final
#: period), the templates' "." otherwise.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cure": {
        "lora": {
            "r": 16,
            "alpha": 32,
            "dropout": 0.05,
            "target_modules": "all-linear",
            "modules_to_save": ["lm_head", "embed_tokens"],
        },
        "optim": {
            "lr": 2e-4,
            "weight_decay": 0.0,
            "schedule": "linear",
            "warmup_ratio": 0.03,
            "max_grad_norm": 0.3,
            "reset_at_phase2": True,
        },
        "train": {"steps": 15000, "batch_size": 5, "grad_accum": 5},
        "data": {"draw": "interleave", "augment": "cure_train", "box_format": "cure"},
        "curriculum": {
            "kind": "cure",
            "period": 3000,
            "alpha": 0.8,
            "categories": "cure",
            "phase1_steps": 3000,
            "phase1_period": 500,
            "phase1_tasks": ["anatomy_grounded_report"],
            "val_subset": "fresh",
            "per_source": 200,
            "max_new_tokens": 200,
            "text_clean": "cure",
            "text_metrics": "cure",
        },
    },
}

_PADCHEST = "padchest-gr"


class ConfigError(GradatimError, ValueError):
    """A configuration problem, with the file, section and key in the message (the command line
    prints it as one line, exit status 2)."""


@dataclass
class ModelSection:
    name: str | None = None  # a tiny architecture: tiny-llava | tiny-paligemma | tiny-gemma3
    path: str | None = None  # a local Hugging Face checkpoint
    image_size: int = 32  # tiny models only
    hidden: int = 64  # tiny models only
    vocab_size: int = 1024  # tiny models' byte-level BPE
    attn_implementation: str = "auto"  # auto (eager for the attention KL term) | eager | sdpa


@dataclass
class OptimSection:
    lr: float = 2e-4
    weight_decay: float = 0.0
    method: str = "linear"
    schedule: str = "constant"  # constant | linear (Hugging Face's linear warm-up and decay)
    warmup_ratio: float = 0.0  # warm-up steps: ceil(ratio x the phase's steps), as Hugging Face
    max_grad_norm: float = 0.0  # clip the gradient norm (0: off)
    reset_at_phase2: bool = False  # a fresh optimizer and schedule when CURE's phase 2 starts


@dataclass
class TrainSection:
    steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    num_workers: int = 0
    prefetch_factor: int | None = None  # batches in flight per worker (None: torch's 2)
    bf16: str | bool = "auto"  # auto: on CUDA
    log_every: int = 10
    checkpoint_every: int = 50
    out: str = "runs/gradatim"
    preset: str | None = None  # "cure": CURE's values for every key not set (PRESETS)


@dataclass
class Source:
    name: str
    manifest: str
    split: str | None = None
    weight: float = 1.0
    select: str | None = None  # only the manifest's records whose `source` field is this
    grounded_end: str | None = None  # after a grounded report's last sentence (None: the ".")
    categories: str | None = None  # this source's CURE categories ([curriculum].categories)
    val_samples: int = 0  # validation samples of this source (0: [curriculum].per_source)


@dataclass
class DataSection:
    sources: list[Source] = field(default_factory=list)
    box_format: str = "cure"
    augment: str = "cure_train"  # cure_train | fast_train | none
    # how the sources' positions are drawn: "random" (each independently with the weights) |
    # "interleave" (CURE's deterministic slot pattern: its SequentialSampler over its
    # WeightedCompositeDataset) | "quota" (exact shares, shuffled)
    draw: str = "random"


@dataclass
class CurriculumSection:
    kind: str = "none"  # none | cure | rrgcl | cure+rrgcl | medclm
    period: int = 3000  # CURE's K: steps between validation updates
    difficulty: str | None = None  # RRGCL: a `gradatim difficulty` file (aligned by id)
    epochs: int = 10  # RRGCL's T
    alpha: float = 0.8  # IoU weight of perf = alpha IoU + (1 - alpha) text
    val_split: str = "validate"
    per_source: int = 16  # validation samples per source
    val_subset: str = "pinned"  # pinned (the first records) | fresh (CURE: new at each validation)
    text_clean: str = "none"  # none | cure (CURE's validation: boxes out, description kept)
    text_metrics: str = "gradatim"  # gradatim | cure (corpus BLEU-4, ROUGE-L without stemming)
    max_new_tokens: int = 64
    categories: str | None = None  # CURE's category level: task | phrase | anatomy
    phase1_steps: int = 0  # CURE's phase 1 on `phase1_tasks` only, before the multi-task phase
    phase1_period: int = 0  # category re-weighting every N steps of phase 1 (0: none)
    phase1_tasks: list[str] = field(default_factory=lambda: ["anatomy_grounded_report"])
    attention_kl: float = 0.0  # MedCLM: weight of the Medium stage's attention KL term
    # MedCLM: whose attention the KL term pulls: "language" (gradatim's: the language model's,
    # target tokens -> image tokens) | "vision_cls" (the released code's
    # compute_attention_mask_loss: the vision tower's last-layer CLS -> patches; a CLIP tower)
    attention_form: str = "language"
    stage: str | None = None  # MedCLM: a fixed stage (easy | medium | hard), no scheduler
    # MedCLM: the stage scheduler's domains: "source" (gradatim's: the data sources) |
    # "lesion_modality" (the released code's f"{lesion_class}_{modality}": first box phrase and
    # the image path's modality, or `modality` when set)
    domains: str = "source"
    modality: str | None = None
    # MedCLM: the Medium mask's cells, "truncate" (the released rule) | "whole" (gradatim's: every
    # touched cell) | "fraction"; and a sample without a box: "image" (released) | "zeros"
    mask_cells: str = "truncate"
    mask_empty: str = "image"


@dataclass
class TrainConfig:
    model: ModelSection
    lora: LoraSettings
    optim: OptimSection
    train: TrainSection
    data: DataSection
    curriculum: CurriculumSection = field(default_factory=CurriculumSection)
    path: Path | None = None
    preset_keys: list[str] = field(default_factory=list)  # the keys the preset filled

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain data (saved with every checkpoint), with ``preset``: the
        preset's name and the keys it filled."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("path", "preset_keys"):
                continue
            section = getattr(self, f.name)
            d = {k.name: getattr(section, k.name) for k in fields(section)}
            if f.name == "data":
                d["sources"] = [vars(s) for s in section.sources]
            out[f.name] = d
        out["preset"] = {"name": self.train.preset, "filled": list(self.preset_keys)}
        return out


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(where, "expected a table")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise _fail(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")
    values = {}
    for name, f in known.items():
        if name in raw:
            values[name] = _check(raw[name], f.type, f"{where}.{name}")
    try:
        return cls(**values)
    except TypeError as e:
        missing = str(e).split("argument")[-1].strip(": '")
        raise _fail(where, f"missing key {missing}") from None


def _check(value: Any, annotation: Any, where: str) -> Any:
    text = str(annotation)
    if text.startswith("int") and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(where, f"expected an int, got {value!r}")
    if text.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(where, f"expected a number, got {value!r}")
        return float(value)
    if text in ("str", "str | None") and not isinstance(value, str):
        raise _fail(where, f"expected a string, got {value!r}")
    if text == "bool" and not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {value!r}")
    if text == "str | bool" and not isinstance(value, (str, bool)):
        raise _fail(where, f"expected a string or a boolean, got {value!r}")
    if "list[str]" in text:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not ok and not (text.startswith("str |") and isinstance(value, str)):
            raise _fail(where, f"expected a list of strings, got {value!r}")
    return value


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a TOML configuration (a regular file only: a FIFO or device is refused
    before it is opened)."""
    path = Path(path)
    name = path.name
    try:
        problem = not_regular(path)
        if problem is not None:
            raise ConfigError(f"{path}: {problem}")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: not UTF-8 text (TOML files are UTF-8)") from None
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise ConfigError(f"{name}: not valid TOML ({' '.join(str(e).split())})") from None
    sections = {"model", "lora", "optim", "train", "data", "curriculum"}
    for key in raw:
        if key not in sections:
            raise _fail(
                f"{name}: [{key}]", f"unknown section (known: {', '.join(sorted(sections))})"
            )
    filled = _apply_preset(raw, name)
    data_raw = dict(raw.get("data") or {})
    sources_raw = data_raw.pop("sources", [])
    if not isinstance(sources_raw, list) or not sources_raw:
        raise _fail(f"{name}: [data].sources", "expected at least one [[data.sources]] table")
    sources = [
        _section(Source, s, f"{name}: [[data.sources]][{i}]") for i, s in enumerate(sources_raw)
    ]
    data = _section(DataSection, data_raw, f"{name}: [data]")
    data.sources = sources
    cfg = TrainConfig(
        model=_section(ModelSection, raw.get("model"), f"{name}: [model]"),
        lora=_section(LoraSettings, raw.get("lora"), f"{name}: [lora]"),
        optim=_section(OptimSection, raw.get("optim"), f"{name}: [optim]"),
        train=_section(TrainSection, raw.get("train"), f"{name}: [train]"),
        data=data,
        curriculum=_section(CurriculumSection, raw.get("curriculum"), f"{name}: [curriculum]"),
        path=path,
        preset_keys=filled,
    )
    _validate(cfg, name, path.parent)
    return cfg


def _apply_preset(raw: dict[str, Any], name: str) -> list[str]:
    """Fill the keys ``raw`` does not set with the preset's values (``[train].preset``); returns
    the keys filled, as ``[section].key`` and ``[[data.sources]][i].key``."""
    train = raw.get("train")
    preset = train.get("preset") if isinstance(train, dict) else None
    if preset is None:
        return []
    if preset not in PRESETS:
        raise _fail(
            f"{name}: [train].preset", f"expected one of {', '.join(PRESETS)}, got {preset!r}"
        )
    filled = []
    kind = (
        (raw.get("curriculum") or {}).get("kind")
        if isinstance(raw.get("curriculum"), dict)
        else None
    )
    for section, values in PRESETS[preset].items():
        if section == "curriculum" and isinstance(kind, str) and "cure" not in kind:
            continue  # another curriculum chosen in the file: CURE's curriculum keys do not apply
        table = raw.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # reported as "expected a table" by its section
        for key, value in values.items():
            if key not in table:
                table[key] = copy.deepcopy(value)
                filled.append(f"[{section}].{key}")
    sources = (raw.get("data") or {}).get("sources")
    for i, s in enumerate(sources if isinstance(sources, list) else []):
        if isinstance(s, dict) and "grounded_end" not in s:
            if _PADCHEST in (s.get("select"), s.get("name")):
                s["grounded_end"] = ""
                filled.append(f"[[data.sources]][{i}].grounded_end")
    return filled


def _validate(cfg: TrainConfig, name: str, base: Path) -> None:
    m = cfg.model
    if (m.name is None) == (m.path is None):
        raise _fail(f"{name}: [model]", "give exactly one of name (a tiny architecture) or path")
    if m.name is not None and m.name not in TINY:
        raise _fail(f"{name}: [model].name", f"one of {', '.join(TINY)}, not {m.name!r}")
    positive = [
        ("[lora].r", cfg.lora.r),
        ("[lora].alpha", cfg.lora.alpha),
        ("[train].steps", cfg.train.steps),
        ("[train].batch_size", cfg.train.batch_size),
        ("[train].grad_accum", cfg.train.grad_accum),
        ("[train].log_every", cfg.train.log_every),
        ("[train].checkpoint_every", cfg.train.checkpoint_every),
    ]
    for key, value in positive:
        if value < 1:
            raise _fail(f"{name}: {key}", f"expected an int >= 1, got {value!r}")
    if not 0 <= cfg.lora.dropout < 1:
        raise _fail(
            f"{name}: [lora].dropout", f"expected a number in [0, 1), got {cfg.lora.dropout}"
        )
    if cfg.optim.lr <= 0:
        raise _fail(f"{name}: [optim].lr", f"expected a positive number, got {cfg.optim.lr}")
    if cfg.optim.method not in METHODS:
        raise _fail(
            f"{name}: [optim].method", f"one of {', '.join(METHODS)}, not {cfg.optim.method!r}"
        )
    if cfg.train.num_workers < 0:
        raise _fail(f"{name}: [train].num_workers", "expected an int >= 0")
    pf = cfg.train.prefetch_factor
    if pf is not None and (isinstance(pf, bool) or not isinstance(pf, int) or pf < 1):
        raise _fail(f"{name}: [train].prefetch_factor", f"expected an int >= 1, got {pf!r}")
    if cfg.train.bf16 not in ("auto", True, False):
        raise _fail(
            f"{name}: [train].bf16", f'expected "auto", true or false, got {cfg.train.bf16!r}'
        )
    c = cfg.curriculum
    if cfg.model.attn_implementation not in ("auto", "eager", "sdpa"):
        raise _fail(
            f"{name}: [model].attn_implementation",
            f'expected "auto", "eager" or "sdpa", got {cfg.model.attn_implementation!r}',
        )
    if c.stage is not None and (c.kind != "medclm" or c.stage not in ("easy", "medium", "hard")):
        raise _fail(
            f"{name}: [curriculum].stage", "expected easy, medium or hard, with kind medclm"
        )
    if c.kind not in KINDS:
        raise _fail(
            f"{name}: [curriculum].kind", f"expected one of {', '.join(KINDS)}, got {c.kind!r}"
        )
    if c.categories is not None:
        _check_categories(c.categories, f"{name}: [curriculum].categories")
        if "cure" not in c.kind:
            raise _fail(f"{name}: [curriculum].categories", "category weights need kind cure")
    for key, value in (("phase1_steps", c.phase1_steps), ("phase1_period", c.phase1_period)):
        if value < 0:
            raise _fail(f"{name}: [curriculum].{key}", f"expected an int >= 0, got {value}")
    if c.phase1_period and not c.phase1_steps:
        raise _fail(f"{name}: [curriculum].phase1_period", "needs phase1_steps")
    choices = (("val_subset", ("pinned", "fresh")), ("text_clean", ("none", "cure")),
               ("text_metrics", ("gradatim", "cure")))  # fmt: skip
    for key, allowed in choices:
        value = getattr(c, key)
        if value not in allowed:
            raise _fail(
                f"{name}: [curriculum].{key}",
                f"expected {' or '.join(repr(a) for a in allowed)}, got {value!r}",
            )
    o = cfg.optim
    if o.schedule not in ("constant", "linear"):
        raise _fail(
            f"{name}: [optim].schedule", f'expected "constant" or "linear", got {o.schedule!r}'
        )
    if not 0 <= o.warmup_ratio <= 1:
        raise _fail(
            f"{name}: [optim].warmup_ratio", f"expected a number in [0, 1], got {o.warmup_ratio}"
        )
    if o.max_grad_norm < 0:
        raise _fail(
            f"{name}: [optim].max_grad_norm", f"expected a number >= 0, got {o.max_grad_norm}"
        )
    for t in c.phase1_tasks:
        if t not in TASKS:
            raise _fail(f"{name}: [curriculum].phase1_tasks", f"unknown task {t!r}")
    if c.attention_kl < 0:
        raise _fail(
            f"{name}: [curriculum].attention_kl", f"expected a number >= 0, got {c.attention_kl}"
        )
    if c.attention_kl > 0 and c.kind != "medclm":
        raise _fail(f"{name}: [curriculum].attention_kl", "the attention KL term needs kind medclm")
    if c.attention_form not in ATTENTION_FORMS:
        raise _fail(
            f"{name}: [curriculum].attention_form",
            f"expected one of {', '.join(ATTENTION_FORMS)}, got {c.attention_form!r}",
        )
    if c.domains not in DOMAIN_RULES:
        raise _fail(
            f"{name}: [curriculum].domains",
            f"expected one of {', '.join(DOMAIN_RULES)}, got {c.domains!r}",
        )
    if c.modality is not None and c.domains != "lesion_modality":
        raise _fail(f"{name}: [curriculum].modality", 'needs domains = "lesion_modality"')
    for key, value, allowed in (("mask_cells", c.mask_cells, ("truncate", "whole", "fraction")),
                                ("mask_empty", c.mask_empty, ("image", "zeros"))):  # fmt: skip
        if value not in allowed:
            raise _fail(
                f"{name}: [curriculum].{key}",
                f"expected one of {', '.join(allowed)}, got {value!r}",
            )
    if c.phase1_steps and "cure" not in c.kind:
        raise _fail(f"{name}: [curriculum].phase1_steps", "CURE's phase 1 needs kind cure")
    if "rrgcl" in c.kind:
        if c.difficulty is None:
            raise _fail(f"{name}: [curriculum].difficulty", "rrgcl needs a difficulty file")
        if not Path(c.difficulty).is_absolute():
            c.difficulty = str((base / c.difficulty).resolve())
        if not Path(c.difficulty).is_file():
            raise _fail(f"{name}: [curriculum].difficulty", f"{c.difficulty}: no such file")
        if c.epochs < 1:
            raise _fail(f"{name}: [curriculum].epochs", f"expected an int >= 1, got {c.epochs}")
    for key, value in (("period", c.period), ("per_source", c.per_source),
                       ("max_new_tokens", c.max_new_tokens)):  # fmt: skip
        if value < 1:
            raise _fail(f"{name}: [curriculum].{key}", f"expected an int >= 1, got {value!r}")
    if not 0 <= c.alpha <= 1:
        raise _fail(f"{name}: [curriculum].alpha", f"expected a number in [0, 1], got {c.alpha}")
    if cfg.data.draw not in ("random", "interleave", "quota"):
        raise _fail(
            f"{name}: [data].draw",
            f'expected "random", "interleave" or "quota", got {cfg.data.draw!r}',
        )
    if cfg.data.augment not in ("cure_train", "fast_train", "none"):
        raise _fail(
            f"{name}: [data].augment",
            f'expected "cure_train", "fast_train" or "none", got {cfg.data.augment!r}',
        )
    seen = set()
    for i, s in enumerate(cfg.data.sources):
        where = f"{name}: [[data.sources]][{i}]"
        if s.name in seen:
            raise _fail(f"{where}.name", f"source {s.name!r} appears twice")
        seen.add(s.name)
        if s.weight < 0:
            raise _fail(f"{where}.weight", f"expected a number >= 0, got {s.weight}")
        if s.val_samples < 0:
            raise _fail(f"{where}.val_samples", f"expected an int >= 0, got {s.val_samples}")
        if s.categories is not None:
            _check_categories(s.categories, f"{where}.categories")
            if c.categories is None:
                raise _fail(f"{where}.categories", "needs [curriculum].categories (kind cure)")
        manifest = Path(s.manifest)
        if not manifest.is_absolute():
            s.manifest = str((base / manifest).resolve())
        if not Path(s.manifest).is_file():
            raise _fail(f"{where}.manifest", f"{s.manifest}: no such file")
    if cfg.model.path is not None:
        given = cfg.model.path
        if not Path(given).is_absolute():
            cfg.model.path = str((base / given).resolve())
        if not Path(cfg.model.path).is_dir():
            raise _fail(f"{name}: [model].path", _no_model_folder(given, cfg.model.path))


def _no_model_folder(given: str, resolved: str) -> str:
    """Why ``[model].path`` is refused: a Hugging Face Hub id is named as such (gradatim never
    downloads), anything else is a missing folder."""
    parts = given.split("/")
    hub_like = (
        len(parts) == 2
        and all(p and p not in (".", "..") for p in parts)
        and not given.startswith(("/", "~"))
    )
    if hub_like:
        return (
            f"{given!r} is not a local folder ({resolved} does not exist) and looks like a "
            "Hugging Face Hub id: gradatim loads local checkpoints only and never downloads; "
            f"download it first (huggingface-cli download {given} --local-dir DIR) and set "
            "path to that folder"
        )
    return f"{resolved}: no such folder (a local Hugging Face checkpoint folder is expected)"


def _check_categories(value: str, where: str) -> None:
    parts = value.split("/")
    if len(parts) > 2 or any(p not in CATEGORIES for p in parts):
        raise _fail(
            where,
            f"expected one of {', '.join(CATEGORIES)}, or two joined by '/', got {value!r}",
        )


#: The keys a resumed run may set otherwise than the run it continues (docs/training.md,
#: "Resuming"): the new value is applied from the resumed step on and the change is logged.
#: Every other key is compared with the checkpoint's configuration and a difference is refused:
#: the model, its tokenizer and LoRA shape, the data sources and pipeline, the batch shape, the
#: seed, the gradient method and the curriculum are what the checkpoint's weights, optimizer and
#: loader state were made with.
RESUME_MAY_CHANGE = frozenset(
    {
        "[model].attn_implementation",
        "[optim].lr",
        "[optim].weight_decay",
        "[optim].schedule",
        "[optim].warmup_ratio",
        "[optim].max_grad_norm",
        "[train].steps",
        "[train].num_workers",
        "[train].prefetch_factor",
        "[train].bf16",
        "[train].log_every",
        "[train].checkpoint_every",
        "[curriculum].period",
        "[curriculum].per_source",
        "[curriculum].max_new_tokens",
    }
)


#: Not compared: the preset's name (its values are), and the run's folder (it may be moved).
_RESUME_SILENT = ("[train].preset", "[train].out")


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """``{"[section].key": value, "[[data.sources]][i].key": value, ...}`` of ``as_dict`` data;
    ``preset`` (which keys a preset filled) is left out: the values themselves are compared."""
    out: dict[str, Any] = {}
    for section, values in config.items():
        if section == "preset" or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if section == "data" and key == "sources" and isinstance(value, list):
                out["[data].sources"] = len(value)
                for i, s in enumerate(value):
                    for k, v in s.items() if isinstance(s, dict) else ():
                        out[f"[[data.sources]][{i}].{k}"] = v
            else:
                out[f"[{section}].{key}"] = value
    return out


def resume_changes(
    cfg: TrainConfig, stored: dict[str, Any], checkpoint: str, step: int
) -> list[tuple[str, Any, Any]]:
    """Compare ``cfg`` with the configuration a checkpoint saved (``stored``, ``as_dict`` data;
    ``checkpoint`` names it, ``step`` is its step): the ``(key, checkpoint's value, new value)``
    of every change of :data:`RESUME_MAY_CHANGE`; any other change raises :class:`ConfigError`
    naming the file, section and key. A key the checkpoint does not record (an older version) is
    not compared."""
    name = cfg.path.name if cfg.path is not None else "<config>"
    new, old = _flat(cfg.as_dict()), _flat(stored)
    changes = []
    for key, value in new.items():
        if key not in old or old[key] == value or key in _RESUME_SILENT:
            continue
        if key not in RESUME_MAY_CHANGE:
            raise _fail(
                f"{name}: {key}",
                f"{value!r} here, {old[key]!r} in {checkpoint}: a resumed run cannot change it "
                "(start a new run, in another out folder, to change it)",
            )
        changes.append((key, old[key], value))
    if cfg.train.steps < step:
        raise _fail(
            f"{name}: [train].steps",
            f"{cfg.train.steps} is below the step of {checkpoint} ({step}): nothing to resume",
        )
    return changes
