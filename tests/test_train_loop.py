"""The LoRA training loop on CPU with tiny random models built from configs (LLaVA, PaliGemma,
Gemma 3): text encoding and label masks, loss decreasing on a fixed batch, bit-exact resume,
checkpoints in peft's safetensors format, configuration errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import gradatim as ga
from gradatim.cli import main
from gradatim.train.config import ConfigError, load_config
from gradatim.train.data import source_records
from gradatim.train.loop import build_model, train
from gradatim.train.loss import per_sample_loss
from gradatim.train.models import LoraSettings, apply_lora, tiny_model
from gradatim.train.text import encode_batch
from gradatim.train.tokenizer import train_bpe

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def tokenizer(manifest: Path) -> Any:
    texts = [json.loads(line)["text"] for line in manifest.read_text().splitlines()]
    extra = "Ground the phrase: Locate the Describe the Location of the Description: [0.12,0.5]"
    return train_bpe([*texts, extra], vocab_size=400)


def test_box_text_round_trips_through_the_tokenizer(tokenizer: Any) -> None:
    text = "left effusion: [0.34,0.51,0.20,0.18] [0.10,0.90,0.05,0.05]"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("family", ["llava", "paligemma", "gemma3"])
def test_labels_cover_the_target_and_image_tokens_expand(tokenizer: Any, family: str) -> None:
    bundle = tiny_model(family, tokenizer)
    enc = encode_batch(bundle, ["Ground the phrase: left effusion", "Generate a report."],
                       ["left effusion: [0.34,0.51,0.20,0.18]", "No acute findings."])  # fmt: skip
    for i, target in enumerate(["left effusion: [0.34,0.51,0.20,0.18]", "No acute findings."]):
        labelled = enc["labels"][i][enc["labels"][i] != -100].tolist()
        assert tokenizer.decode(labelled) == target + "<eos>"
        ids = enc["input_ids"][i].tolist()
        assert ids.count(bundle.image_token_id) == bundle.num_image_tokens
    if family == "gemma3":
        assert enc["token_type_ids"].sum(1).tolist() == [bundle.num_image_tokens] * 2
    if family == "paligemma":  # the suffix (target) is marked 1
        assert torch.equal(enc["token_type_ids"].bool(), enc["labels"] != -100)


@pytest.mark.parametrize("family", ["llava", "paligemma", "gemma3"])
def test_loss_decreases_on_a_fixed_batch(manifest: Path, tokenizer: Any, family: str) -> None:
    bundle = tiny_model(family, tokenizer)
    ds = ga.ManifestDataset(manifest, image_size=bundle.image_size, channels=3,
                            mean=bundle.mean, std=bundle.std)  # fmt: skip
    batch = next(iter(ga.DataLoader(ds, batch_size=4)))
    enc = encode_batch(bundle, batch["prompt"], batch["target"])
    labels = enc.pop("labels")
    model = apply_lora(bundle.model, LoraSettings(dropout=0.0))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trainable) < sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(trainable, lr=3e-3)
    losses = []
    for _ in range(12):
        loss = per_sample_loss(
            model(pixel_values=batch["pixel_values"], **enc).logits, labels
        ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.3, losses


def write_run(tmp: Path, manifest: Path, **train: Any) -> Path:
    """Two sources (two manifests beside the images) and a tiny-LLaVA run."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    paths = {}
    for src in ("alpha", "beta"):
        p = manifest.parent / f"{src}-{tmp.name}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in rows if r["source"] == src))
        paths[src] = p
    options = {"steps": 6, "batch_size": 4, "checkpoint_every": 3, "out": str(tmp / "out"), **train}
    lines = [
        '[model]\nname = "tiny-llava"\nvocab_size = 400\n',
        '[optim]\nlr = 3e-3\nmethod = "pcgrad"\n',
        "[train]",
        *(f"{k} = {json.dumps(v)}" for k, v in options.items()),
        "",
    ]
    for src, weight in (("alpha", 0.7), ("beta", 0.3)):
        lines += [
            "[[data.sources]]",
            f'name = "{src}"',
            f'manifest = "{paths[src]}"',
            f"weight = {weight}",
            "",
        ]
    config = tmp / "run.toml"
    config.write_text("\n".join(lines))
    return config


def adapter(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(out / f"checkpoint-{step}" / "adapter" / "adapter_model.safetensors")


def test_resume_after_step_k_equals_the_uninterrupted_run(manifest: Path, tmp_path: Path) -> None:
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full_dir.mkdir()
    cut_dir.mkdir()
    full = train(load_config(write_run(full_dir, manifest)))
    cfg = load_config(write_run(cut_dir, manifest))
    first = train(cfg, max_steps=3)
    assert first.step == 3
    rest = train(load_config(write_run(cut_dir, manifest)), resume="auto")
    assert rest.step == 6
    assert first.losses + rest.losses == full.losses  # bit-exact, step by step
    a, b = adapter(full_dir / "out", 6), adapter(cut_dir / "out", 6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (cut_dir / "out" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "images_per_s", "loader_stall", "weights"} <= set(log[0])
    assert any((cut_dir / "out" / "tensorboard").iterdir())


def test_checkpoint_is_peft_loadable_and_has_no_pickle(manifest: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    cfg = load_config(write_run(tmp_path, manifest, steps=1, checkpoint_every=1))
    run = train(cfg)
    ckpt = run.out / "checkpoint-1"
    files = {p.suffix for p in ckpt.rglob("*") if p.is_file()}
    assert files <= {".safetensors", ".json", ".md"}, files
    fresh = build_model(cfg, source_records(cfg)).model
    loaded = PeftModel.from_pretrained(fresh, str(ckpt / "adapter"))
    assert loaded.peft_config["default"].r == 16
    trained = dict(run.model.named_parameters())
    for name, p in loaded.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, trained[name]), name


@pytest.mark.parametrize(
    "edit,message",
    [
        (("[optim]", "[optim]\nmomentum = 0.9"), r"\[optim\].momentum: unknown key"),
        (("lr = 3e-3", 'lr = "fast"'), r"\[optim\].lr: expected a number"),
        (('method = "pcgrad"', 'method = "adam"'), r"\[optim\].method: one of linear"),
        (('name = "tiny-llava"', 'name = "huge"'), r"\[model\].name: one of tiny-llava"),
    ],
)
def test_config_errors_name_file_section_and_key(
    manifest: Path, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    config = write_run(tmp_path, manifest)
    config.write_text(config.read_text().replace(*edit, 1))
    with pytest.raises(ConfigError, match="run.toml: " + message):
        load_config(config)


def test_cli_reports_config_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err
    bad = tmp_path / "run.toml"
    bad.write_text("[lora]\nr = 'x'\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gradatim train: error: run.toml: ")


def test_torchrun_two_processes_end_with_equal_adapters(manifest: Path, tmp_path: Path) -> None:
    """Data parallel on CPU (gloo): every rank reads its shard; per-task gradient sums are
    all-reduced before the combination, so both ranks take the same steps. The log is the whole
    step's: its loss is the mean of the ranks' own losses (each rank's ``rank-<r>.json``), its
    task counts their sums, its per-task losses the means over both ranks' samples."""
    import subprocess
    import sys

    config = write_run(tmp_path, manifest, steps=3, checkpoint_every=2, batch_size=2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "-m", "gradatim", "train", str(config)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / "out" / f"rank-{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] == 3
    assert ranks[0]["adapter_sha256"] == ranks[1]["adapter_sha256"]
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert {p.name for p in (tmp_path / "out" / "checkpoint-3").iterdir()} >= {
        "adapter", "rng-0.safetensors", "rng-1.safetensors", "state.json"
    }  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    rows = [r for r in log if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    differ = False
    for k, row in enumerate(rows):
        own = [ranks[r]["losses"][k] for r in range(2)]
        assert row["loss"] == pytest.approx((own[0] + own[1]) / 2, rel=1e-12)
        differ |= own[0] != own[1]
        shares = [ranks[r]["tasks"][k] for r in range(2)]
        assert all(sum(s.values()) == 2 for s in shares)  # batch_size 2 per rank
        summed = {t: shares[0].get(t, 0) + shares[1].get(t, 0) for t in {*shares[0], *shares[1]}}
        assert row["tasks"] == summed and sum(summed.values()) == 4
        assert set(row["task_loss"]) == set(summed)
        mean = sum(row["task_loss"][t] * n for t, n in summed.items()) / 4
        assert mean == pytest.approx(row["loss"], rel=1e-5)
    assert differ  # the ranks saw different samples: rank 0's share alone would not match


def test_cure_weights_move_toward_the_source_whose_validation_error_rises(
    manifest: Path, tmp_path: Path
) -> None:
    """Every K = 2 steps the pinned validation subsets are generated and scored; an injected
    error (one source's predictions emptied) must move the sampler's weights toward that source,
    from the next step on, and a resumed run must carry the curriculum's state."""
    config = write_run(tmp_path, manifest, steps=4, checkpoint_every=2)
    config.write_text(
        config.read_text()
        + '\n[curriculum]\nkind = "cure"\nperiod = 2\nval_split = "train"\n'
        + "per_source = 2\nmax_new_tokens = 4\n"
    )
    bad = iter(["beta", "alpha"])  # beta fails at step 2, alpha at step 4

    def inject(rows: list[dict]) -> list[dict]:
        failing = next(bad)
        return [{**r, "prediction": "" if r["source"] == failing else r["reference"]} for r in rows]

    train(load_config(config), validation_hook=inject)
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    updates = [r for r in log if "curriculum_weights" in r]
    assert [u["step"] for u in updates] == [2, 4]
    first, second = updates[0]["curriculum_weights"], updates[1]["curriculum_weights"]
    assert first["beta"] > 0.9 > 0.1 > first["alpha"]  # CURE: err 1 vs err floored at 0.01
    assert second["alpha"] > 0.9 > 0.1 > second["beta"]
    steps = {r["step"]: r["weights"] for r in log if "weights" in r}
    assert steps[1] == steps[2] == [0.5, 0.5]  # uniform start
    assert steps[3] == [first["alpha"], first["beta"]]  # applied from the next step
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "state.json").read_text())
    assert [h[0] for h in state["curriculum"]["history"]] == [0, 2, 4]


def test_rrgcl_difficulty_file_aligns_by_id(manifest: Path, tmp_path: Path) -> None:
    """The difficulty file may list ids in any order and cover other splits: the run reads it by
    id (same batches, hence the same losses, for a shuffled file), a reversed difficulty
    changes the subsets (other losses), and a missing id is an error naming it."""
    from gradatim.difficulty.io import write_difficulty

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    ids = [r["id"] for r in rows] + ["other-split-1", "other-split-2"]
    dif = [float((7 * k) % 11) for k in range(len(ids))]
    classes = [["Effusion"] if k % 3 else ["Nodule"] for k in range(len(ids))]

    def run(name: str, order: list[int], values: list[float], drop: str | None = None) -> list:
        keep = [k for k in order if ids[k] != drop]
        path = tmp_path / f"{name}.parquet"
        write_difficulty(path, [ids[k] for k in keep], [0.0] * len(keep), [0.0] * len(keep),
                         [values[k] for k in keep], [classes[k] for k in keep])  # fmt: skip
        folder = tmp_path / name
        folder.mkdir()
        config = write_run(folder, manifest, steps=4, checkpoint_every=4)
        config.write_text(
            config.read_text()
            + f'\n[curriculum]\nkind = "rrgcl"\ndifficulty = "{path}"\nepochs = 3\n'
        )
        return train(load_config(config)).losses

    forward = list(range(len(ids)))
    reference = run("sorted", forward, dif)
    assert run("shuffled", forward[::-1], dif) == reference
    assert run("reversed", forward, [-d for d in dif]) != reference
    with pytest.raises(ValueError, match="no difficulty for id 's5'"):
        run("missing", forward, dif, drop="s5")


def test_answer_and_rationale_losses_weighted_as_medclm(tokenizer: Any) -> None:
    """Token roles come from the batch's target_parts; the loss is 0.8 x mean CE(answer) + 0.2
    x mean CE(rationale) (MedCLM), the answer loss alone in the Hard stage, the plain mean
    without parts. Checked against the per-token cross entropy computed by hand."""
    import torch.nn.functional as F

    from gradatim.train.loss import per_sample_role_loss
    from gradatim.train.text import ROLE_ANSWER, ROLE_RATIONALE

    bundle = tiny_model("llava", tokenizer)
    rationale, answer = "Small left effusion.", "left effusion"
    target = f"Reasoning: {rationale}\n\nAnswer: {answer}"
    r0 = target.index(rationale)
    a0 = target.rindex(answer)  # the answer also occurs inside the rationale
    parts = [[("rationale", r0, r0 + len(rationale)), ("answer", a0, a0 + len(answer))],
             [("answer", 8, 8 + len(answer))], [("target", 0, len(answer))]]  # fmt: skip
    targets = [target, f"Answer: {answer}", answer]
    enc = encode_batch(bundle, ["Ground the phrase: left effusion"] * 3, targets, parts)
    roles, labels = enc.pop("label_roles"), enc.pop("labels")
    # the rationale's tokens carry its role; template words ("Reasoning:", "Answer:") none
    pairs = list(zip(labels[0].tolist(), roles[0].tolist(), strict=True))
    ids0 = [t for t, r in pairs if r == ROLE_RATIONALE]
    assert tokenizer.decode(ids0).strip() == rationale
    ignored = tokenizer.decode([t for t, r in pairs if t != -100 and r == 0])
    assert "Reasoning:" in ignored and "Answer:" in ignored
    torch.manual_seed(0)
    logits = torch.randn(*labels.shape, len(tokenizer))
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                         ignore_index=-100, reduction="none").view(3, -1)  # fmt: skip
    lab, rol = labels[:, 1:], roles[:, 1:]

    def mean(i: int, role: int) -> float:
        sel = (lab[i] != -100) & (rol[i] == role)
        return float(ce[i][sel].mean())

    got = per_sample_role_loss(logits, labels, roles)
    assert float(got[0]) == pytest.approx(
        0.8 * mean(0, ROLE_ANSWER) + 0.2 * mean(0, ROLE_RATIONALE), rel=1e-5
    )
    assert float(got[1]) == pytest.approx(mean(1, ROLE_ANSWER), rel=1e-5)
    assert float(got[2]) == pytest.approx(float(per_sample_loss(logits, labels)[2]), rel=1e-5)


def test_medclm_stages_in_the_loop_update_per_epoch_and_resume_exactly(
    manifest: Path, tmp_path: Path
) -> None:
    """kind = "medclm": batches carry MedCLM stages (the Medium ones a box mask on the model's
    patch grid), the scheduler gets each source's per-stage mean loss when an epoch ends, and a
    run resumed inside an epoch reaches the same losses, adapter and scheduler state."""
    runs = {}
    for name in ("full", "cut"):
        folder = tmp_path / name
        folder.mkdir()
        config = write_run(folder, manifest, steps=8, checkpoint_every=4)
        config.write_text(config.read_text() + '\n[curriculum]\nkind = "medclm"\n')
        if name == "full":
            runs[name] = train(load_config(config)).losses
        else:
            head = train(load_config(config), max_steps=4).losses  # inside epoch 0
            runs[name] = head + train(load_config(config), resume="auto").losses
    assert runs["cut"] == runs["full"]
    states = [json.loads((tmp_path / n / "out" / "checkpoint-8" / "state.json").read_text())
              for n in ("full", "cut")]  # fmt: skip
    stages = [s["loader"]["stages"] for s in states]
    assert stages[0] == stages[1]
    assert stages[0]["epoch"] >= 0 and len(stages[0]["history"]) >= 1  # one epoch ended: updated
    assert set(stages[0]["domains"]) == {"alpha", "beta"}


@pytest.fixture(scope="module")
def stopped_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 4-step tiny-LLaVA run stopped after its checkpoint at step 2: its configuration's text
    and its out folder (tests copy both: ``resumable``)."""
    tmp = tmp_path_factory.mktemp("stopped")
    config = write_run(tmp, manifest, steps=4, checkpoint_every=2)
    assert train(load_config(config), max_steps=2).step == 2
    return config.read_text(), tmp / "out"


def resumable(stopped: tuple[str, Path], tmp: Path, edit: tuple[str, str] = ("", "")) -> Path:
    """A copy of ``stopped_run`` in ``tmp`` (its out folder, its configuration with ``out`` set to
    the copy and ``edit`` applied); returns the configuration's path."""
    import shutil

    text, out = stopped
    shutil.copytree(out, tmp / "out")
    text = text.replace(json.dumps(str(out)), json.dumps(str(tmp / "out")))
    if edit[0]:
        assert edit[0] in text
        text = text.replace(*edit, 1)
    config = tmp / "run.toml"
    config.write_text(text)
    return config


class _RecordingAdamW(torch.optim.AdamW):
    """AdamW recording the learning rate each of its steps uses, read from its own groups."""

    used: list[float] = []

    def step(self, closure: Any = None) -> Any:
        type(self).used.append(self.param_groups[0]["lr"])
        return super().step(closure)


def test_resume_with_a_changed_lr_steps_and_logs_the_new_one(
    stopped_run: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[optim].lr may change on resume: the restored optimizer would keep the checkpoint's 3e-3;
    the run applies 0.01 (what the optimizer itself holds at each step), logs it on the resumed
    steps' rows, says what changed on the first (and as a warning), and saves it."""
    monkeypatch.setattr(torch.optim, "AdamW", _RecordingAdamW)
    monkeypatch.setattr(_RecordingAdamW, "used", [])
    config = resumable(stopped_run, tmp_path, ("lr = 3e-3", "lr = 0.01"))
    with pytest.warns(UserWarning, match=r"\[optim\]\.lr changed from 0\.003 to 0\.01"):
        run = train(load_config(config), resume="auto")
    assert run.step == 4
    assert _RecordingAdamW.used == [0.01, 0.01]
    rows = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"]) for r in rows] == [(1, 3e-3), (2, 3e-3), (3, 0.01), (4, 0.01)]
    note = rows[2]["resumed"]
    assert note["step"] == 2 and note["checkpoint"].endswith("checkpoint-2")
    assert note["changes"] == {"[optim].lr": {"checkpoint": 3e-3, "now": 0.01}}
    assert note["lr"] == 0.01 and "resumed" not in rows[3]
    saved = json.loads((tmp_path / "out" / "checkpoint-4" / "optimizer.json").read_text())
    assert [g["lr"] for g in saved["param_groups"]] == [0.01]
    state = json.loads((tmp_path / "out" / "checkpoint-4" / "state.json").read_text())
    assert state["config"]["optim"]["lr"] == 0.01


@pytest.mark.parametrize(
    "edit,key",
    [
        (('name = "tiny-llava"', 'name = "tiny-paligemma"'), r"\[model\]\.name"),
        (("[optim]", "[lora]\nr = 8\n[optim]"), r"\[lora\]\.r"),
        (("weight = 0.7", "weight = 0.5"), r"\[\[data\.sources\]\]\[0\]\.weight"),
        (('method = "pcgrad"', 'method = "linear"'), r"\[optim\]\.method"),
    ],
)
def test_resume_refuses_a_key_that_cannot_change(
    stopped_run: tuple[str, Path], tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    """A changed model family (or LoRA shape, source weight, gradient method) is refused before
    anything is restored or written, with one line naming the file, section and key (not
    torch's "parameter group that doesn't match")."""
    config = resumable(stopped_run, tmp_path, edit)
    out = tmp_path / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ConfigError, match=rf"^run\.toml: {key}: .* in checkpoint-2: a resumed"):
        train(load_config(config), resume="auto")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_paligemma_trains_and_predicts_with_its_task_prefix(
    manifest: Path, tokenizer: Any, tmp_path: Path
) -> None:
    """PaliGemma has no chat turns: its prompt is its processor's task prefix (image tokens,
    BOS, the prompt, a newline), the target its suffix; generation gets the same prefix. A tiny
    PaliGemma run trains on it and ``predict`` generates from its checkpoint."""
    from gradatim.train.predict import predict
    from gradatim.train.validation import encode_prompts

    bundle = tiny_model("paligemma", tokenizer)
    enc = encode_batch(bundle, ["Generate a report."], ["No acute findings."])
    ids = enc["input_ids"][0].tolist()
    prompt = tokenizer("Generate a report.\n", add_special_tokens=False)["input_ids"]
    target = tokenizer("No acute findings.", add_special_tokens=False)["input_ids"]
    prefix = [bundle.image_token_id] * bundle.num_image_tokens + [tokenizer.bos_token_id, *prompt]
    assert ids == prefix + target + [tokenizer.eos_token_id]
    assert "<|user|>" not in tokenizer.decode(ids) and "<|model|>" not in tokenizer.decode(ids)
    assert enc["token_type_ids"][0].tolist() == [0] * len(prefix) + [1] * (len(target) + 1)
    assert encode_prompts(bundle, ["Generate a report."])["input_ids"][0].tolist() == prefix
    config = write_run(tmp_path, manifest, steps=2, checkpoint_every=2)
    config.write_text(config.read_text().replace('"tiny-llava"', '"tiny-paligemma"', 1))
    run = train(load_config(config))
    assert run.step == 2 and all(0 < loss < 100 for loss in run.losses)
    out = predict(run.out / "checkpoint-2", manifest, "train", tmp_path / "p.jsonl",
                  limit=3, max_new_tokens=4)  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(isinstance(r["prediction"], str) for r in rows)
