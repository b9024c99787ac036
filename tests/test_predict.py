"""``gradatim predict``: a tiny LLaVA run's checkpoint, rebuilt from the checkpoint alone (config
from state.json, the tokenizer saved beside the adapter), generates for every record of a
manifest's split exactly what the run's own validation generation gives; the rows go through
``gradatim evaluate``; ``--blank-images`` feeds the model a constant image; beam search is passed
through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_loop import write_run

from gradatim.cli import main
from gradatim.evaluate import read_predictions
from gradatim.train import checkpoint
from gradatim.train.config import load_config
from gradatim.train.data import eval_augment, make_dataset, source_records
from gradatim.train.loop import build_model, train
from gradatim.train.predict import load_checkpoint, manifest_records, predict
from gradatim.train.text import _prefix_ids
from gradatim.train.validation import Validator, blank_value

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

TOKENS = 8


@pytest.fixture(scope="module")
def run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-step tiny-LLaVA run on the loader tests' manifest, a third of it in split
    ``validate``; the run's bundle, as ``train`` built it."""
    tmp = tmp_path_factory.mktemp("predict")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["split"] = "validate" if i % 3 == 0 else "train"
    split = manifest.parent / f"predict-{tmp.name}.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(write_run(tmp, split, steps=2, checkpoint_every=2))
    result = train(cfg)
    ckpt = result.out / "checkpoint-2"
    bundle = build_model(cfg, source_records(cfg))  # the run's tokenizer, retrained as it was
    if not (ckpt / "tokenizer").exists():
        # the loop does not hand its tokenizer to checkpoint.save yet: save the run's here
        checkpoint.save_tokenizer(ckpt / "tokenizer", bundle.tokenizer)
    return {"cfg": cfg, "model": result.model, "ckpt": ckpt, "manifest": split, "bundle": bundle,
            "n": sum(r["split"] == "validate" for r in rows), "tmp": tmp}  # fmt: skip


def test_the_checkpoint_tokenizer_encodes_as_the_runs(run: dict[str, Any]) -> None:
    # no pickle, no .jinja: a checkpoint stays JSON and safetensors
    files = {p.suffix for p in (run["ckpt"] / "tokenizer").iterdir()}
    assert files == {".json"}, files
    saved, theirs = checkpoint.load_tokenizer(run["ckpt"]), run["bundle"].tokenizer
    assert len(saved) == len(theirs) and saved.get_vocab() == theirs.get_vocab()
    assert saved.chat_template == theirs.chat_template
    for t in ("<pad>", "<bos>", "<eos>", "<image>", "<|user|>", "<|model|>"):
        assert saved.convert_tokens_to_ids(t) == theirs.convert_tokens_to_ids(t), t
    records = [json.loads(line) for line in run["manifest"].read_text().splitlines()]
    texts = [r["text"] for r in records] + ["left effusion: [0.34,0.51,0.20,0.18] <image>"]
    for text in texts:
        assert saved(text)["input_ids"] == theirs(text)["input_ids"], text
    _, bundle, _ = load_checkpoint(run["ckpt"], device="cpu")
    for prompt in ("Ground the phrase: left effusion", "Generate a report."):
        assert _prefix_ids(bundle, prompt) == _prefix_ids(run["bundle"], prompt)


def test_predict_equals_the_runs_validation_generation(
    run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "predictions.jsonl"
    argv = ["predict", str(run["ckpt"]), "--manifest", str(run["manifest"]), "--split",
            "validate", "-o", str(out), "--batch-size", "1",
            "--max-new-tokens", str(TOKENS)]  # fmt: skip
    assert main(argv) == 0
    assert f"{run['n']} predictions" in capsys.readouterr().out
    rows = read_predictions(out)  # evaluate's reader accepts every row
    validate = manifest_records(run["manifest"], "validate")
    assert [r["id"] for r in rows] == [r["id"] for r in validate]  # one per record, in order
    # the run's own model (in memory) through the validator, on the same records
    cfg, bundle = run["cfg"], run["bundle"]
    val = make_dataset(cfg, bundle, validate, augment=eval_augment(cfg))  # the run's validation
    validator = Validator(val, bundle, per_source=1000, batch_size=1, max_new_tokens=TOKENS,
                          box_format=cfg.data.box_format, seed=cfg.train.seed)  # fmt: skip
    expected = {r["id"]: r for r in validator.generate_rows(run["model"])}
    assert {r["id"]: r for r in rows} == expected  # same greedy text, prompts and references
    assert any(r["prediction"] for r in rows)
    assert {"prompt", "phrase", "anatomy", "prompt_kind"} <= set(rows[0])
    metrics = tmp_path / "m.json"
    assert main(["evaluate", str(out), "--out", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["overall"]["n"] == run["n"]


def test_blank_images_and_beams_reach_generate(
    run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    seen: list[dict[str, Any]] = []
    original = PeftModel.generate

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append({"pixels": kwargs["pixel_values"].clone(), "beams": kwargs.get("num_beams")})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PeftModel, "generate", spy)
    normal = predict(run["ckpt"], run["manifest"], "validate", tmp_path / "a.jsonl",
                     batch_size=4, max_new_tokens=4, limit=5)  # fmt: skip
    assert len(read_predictions(normal)) == 5
    assert all(s["pixels"].std() > 0 for s in seen) and seen[0]["beams"] is None
    seen.clear()
    argv = ["predict", str(run["ckpt"]), "--manifest", str(run["manifest"]), "--split",
            "validate", "-o", str(tmp_path / "b.jsonl"), "--blank-images", "--num-beams", "2",
            "--max-new-tokens", "4", "--limit", "5", "--batch-size", "4"]  # fmt: skip
    assert main(argv) == 0
    assert len(read_predictions(tmp_path / "b.jsonl")) == 5
    assert [len(s["pixels"]) for s in seen] == [4, 1]
    _, bundle, _ = load_checkpoint(run["ckpt"], device="cpu")
    grey = torch.tensor([(0.5 - m) / s for m, s in zip(bundle.mean, bundle.std, strict=True)])
    for s in seen:  # every pixel is the blank value: mid-grey after normalisation
        assert s["beams"] == 2
        assert torch.equal(s["pixels"], grey.view(1, -1, 1, 1).expand_as(s["pixels"]))
    cfg = run["cfg"]
    records = manifest_records(run["manifest"], "validate")
    val = make_dataset(cfg, bundle, records, augment=eval_augment(cfg))
    assert torch.equal(blank_value(val), grey)


def test_a_checkpoint_without_tokenizer_retrains_it_as_the_run_did(
    run: dict[str, Any], tmp_path: Path
) -> None:
    old = tmp_path / "checkpoint-2"
    shutil.copytree(run["ckpt"], old)
    shutil.rmtree(old / "tokenizer")
    with pytest.warns(UserWarning, match="no tokenizer/"):
        a = predict(old, run["manifest"], "validate", tmp_path / "old.jsonl",
                    batch_size=1, max_new_tokens=4, limit=3)  # fmt: skip
    b = predict(run["ckpt"], run["manifest"], "validate", tmp_path / "new.jsonl",
                batch_size=1, max_new_tokens=4, limit=3)  # fmt: skip
    assert read_predictions(a) == read_predictions(b)


def test_predict_errors(run: dict[str, Any], tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "p.jsonl")
    assert main(["predict", str(tmp_path), "--manifest", str(run["manifest"]), "--split",
                 "validate", "-o", out]) == 2  # fmt: skip
    assert "not a checkpoint folder (no state.json)" in capsys.readouterr().err
    assert main(["predict", str(run["ckpt"]), "--manifest", str(run["manifest"]), "--split",
                 "test", "-o", out]) == 2  # fmt: skip
    assert "no records of split 'test'" in capsys.readouterr().err


def test_base_model_is_the_untrained_model(run: dict[str, Any], tmp_path: Path) -> None:
    from gradatim.train.models import apply_lora
    from gradatim.train.validation import generate_rows

    out = tmp_path / "base.jsonl"
    argv = ["predict", str(run["ckpt"]), "--manifest", str(run["manifest"]), "--split",
            "validate", "-o", str(out), "--base-model", "--batch-size", "1",
            "--max-new-tokens", "4", "--limit", "3"]  # fmt: skip
    assert main(argv) == 0
    # a freshly initialised adapter (LoRA's B matrices are zero) on the rebuilt base model
    cfg, bundle, _ = load_checkpoint(run["ckpt"], device="cpu", base_model=True)
    fresh = apply_lora(bundle.model, cfg.lora)
    records = manifest_records(run["manifest"], "validate")[:3]
    ds = make_dataset(cfg, bundle, records, eval_augment(cfg))
    rows = generate_rows(fresh, bundle, ds, [0, 1, 2], batch_size=1, max_new_tokens=4,
                         box_format=cfg.data.box_format, seed=cfg.train.seed)  # fmt: skip
    assert read_predictions(out) == rows
    trained = read_predictions(predict(run["ckpt"], run["manifest"], "validate",
                                       tmp_path / "t.jsonl", batch_size=1, max_new_tokens=4,
                                       limit=3))  # fmt: skip
    assert [r["prediction"] for r in trained] != [r["prediction"] for r in rows]
