"""Every subcommand, tried as a new user would: a missing input and an unwritable output each give
one line ``gradatim CMD: error: ...`` naming the path, exit status 2, and no traceback, before
any long computation starts. Then what used to end in a traceback, each built here: ``gradatim
train`` with a split or ``select`` that matches nothing, a model folder it cannot train (an
unsupported type, a LLaVA whose image tokens do not match its vision tower, a tokenizer without
a chat template, a Hub id), a resume that changes what cannot change or from an edited
checkpoint; ``gradatim manifest pack`` to a device or past a file size limit (nothing
half-written left). Each gives one line naming the file, section and key, exit 2, within 5 s."""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train_loop import resumable, stopped_run, write_run  # noqa: F401 - a fixture

from gradatim.cli import build_parser, main
from gradatim.manifest.cli import CONVERTERS

MISSING = "/nonexistent/gradatim-input"


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(prefix)]
    return [leaf for name, p in subs[0].choices.items() for leaf in _leaves(p, (*prefix, name))]


def _cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per leaf command: argv with a missing input, argv with an unwritable output (a path under
    a regular file: unwritable even for root)."""
    blocked = tmp / "a-file"
    blocked.write_text("x")
    bad_out = str(blocked / "out")
    real = tmp / "real.jsonl"
    real.write_text("")
    cases = {
        "bench": ([MISSING], [str(real), "--json", bad_out + "/b.json"]),
        "demo": (["--image", MISSING], ["--out", bad_out + "/r.png", "--phantom", "0"]),
        "plot schedule": (
            ["--difficulty-file", MISSING, "-o", str(tmp / "s.png")],
            ["--class-difficulty", "0.1", "0.2", "-o", bad_out + "/s.png"],
        ),
        "plot difficulty": ([MISSING, "-o", str(tmp / "d.png")], [str(real), "-o", bad_out]),
        "manifest validate": ([MISSING], None),
        "manifest pack": (
            [MISSING, "-o", str(tmp / "m.arrow")],
            [str(real), "-o", bad_out + "/m.arrow"],
        ),
        "phantom": (None, [bad_out, "--n", "1"]),
        "difficulty": (
            ["--manifest", MISSING, "--out", str(tmp / "d.parquet")],
            ["--manifest", str(real), "--out", bad_out + "/d.parquet"],
        ),
        "evaluate": ([MISSING, "--out", str(tmp / "m.json")], [str(real), "--out", bad_out]),
        "train": ([MISSING], None),
        "predict": (
            [MISSING, "--manifest", str(real), "--split", "validate", "-o", str(tmp / "p.jsonl")],
            [str(tmp), "--manifest", str(real), "--split", "validate", "-o", bad_out + "/p.jsonl"],
        ),
        "pretrain": ([MISSING, "-o", str(tmp / "base")], [str(real), "-o", bad_out + "/base"]),
        "experiment": ([MISSING], None),
        "cache build": (
            [MISSING, "-o", str(tmp / "c"), "--size", "64"],
            [str(real), "-o", bad_out, "--size", "64"],
        ),
    }
    for conv in CONVERTERS:
        n = sum(o.positional for o in conv.opts)
        cases[f"manifest {conv.command}"] = (
            [MISSING, *[str(real)] * (n - 1), "-o", str(tmp / "m.jsonl")],
            [*[str(real)] * n, "-o", bad_out],
        )
    return cases


def test_every_subcommand_is_covered(tmp_path: Path) -> None:
    assert set(_leaves(build_parser())) == set(_cases(tmp_path))


@pytest.mark.parametrize("kind", ["missing input", "unwritable output"])
def test_path_errors_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    for leaf, (missing, unwritable) in _cases(tmp_path).items():
        args = missing if kind == "missing input" else unwritable
        if args is None:
            continue
        rc = main([*leaf.split(), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, (leaf, err)
        assert len(err) == 1 and err[0].startswith(f"gradatim {leaf}: error: "), (leaf, err)
        path = MISSING if kind == "missing input" else str(tmp_path / "a-file")
        assert path in err[0], (leaf, err)
        assert "Traceback" not in err[0]


TRAIN_WARNINGS = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], command: str, within: float | None = 5
) -> str:
    """Run ``gradatim argv``: exit 2 (within ``within`` seconds), one line ``gradatim COMMAND:
    error: ...``."""
    start = time.monotonic()
    rc = main(argv)
    took = time.monotonic() - start
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"gradatim {command}: error: "), err
    assert "Traceback" not in err[0]
    assert within is None or took < within, (took, err)
    return err[0]


def _llava_folder(folder: Path, *, image_seq_length: int = 16, template: bool = True) -> Path:
    """A local LLaVA checkpoint's config and processor (no weights: refused before they load):
    32 px images, 8 px patches (16 image features)."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaProcessor,
    )

    from gradatim.train.tokenizer import train_bpe

    tok = train_bpe(["a small left effusion"], vocab_size=300)
    if not template:
        tok.chat_template = None
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 2}  # fmt: skip
    LlavaConfig(
        vision_config=CLIPVisionConfig(**small, image_size=32, patch_size=8),
        text_config=LlamaConfig(**small, vocab_size=len(tok)),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        image_seq_length=image_seq_length,
    ).save_pretrained(folder)
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size=32)
    LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=8).save_pretrained(folder)
    return folder


def _model_path(tmp: Path, case: str) -> str:
    if case == "hub id":
        return "google/medgemma-4b-it"
    folder = tmp / "model"
    folder.mkdir()
    if case == "model type":
        (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    elif case == "image_seq_length":
        _llava_folder(folder, image_seq_length=5)
    else:
        _llava_folder(folder, template=False)
    return str(folder)


TINY_MODEL = '[model]\nname = "tiny-llava"\nvocab_size = 400\n'


@TRAIN_WARNINGS
@pytest.mark.parametrize(
    "case,message",
    [
        ("split", r"run\.toml: \[\[data\.sources\]\]\[0\]\.split: .*alpha-.*\.jsonl has no "
                  r"records of split 'nope'$"),
        ("select", r"run\.toml: \[\[data\.sources\]\]\[0\]\.select: none of the 12 records "
                   r"in .*alpha-.*\.jsonl has source 'gamma'$"),
        ("model type", r"run\.toml: \[model\]\.path: .*/config\.json: model_type: 'bert' is "
                       r"not supported \(one of llava, paligemma, gemma3\)$"),
        ("image_seq_length", r"run\.toml: \[model\]\.path: .*/config\.json: image_seq_length: "
                             r"5, but its vision tower gives 16 image features"),
        ("chat template", r"run\.toml: \[model\]\.path: .*model: tokenizer_config\.json: "
                          r"chat_template: the tokenizer has no chat template"),
        ("hub id", r"run\.toml: \[model\]\.path: 'google/medgemma-4b-it' is not a local folder "
                   r".* looks like a Hugging Face Hub id: gradatim loads local checkpoints only"),
    ],
)  # fmt: skip
def test_train_input_errors_are_one_line(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    config = write_run(tmp_path, manifest)
    text = config.read_text()
    if case in ("split", "select"):
        key = "split" if case == "split" else "select"
        value = "nope" if case == "split" else "gamma"
        text = text.replace('name = "alpha"', f'name = "alpha"\n{key} = "{value}"', 1)
    else:
        assert TINY_MODEL in text
        text = text.replace(
            TINY_MODEL, f"[model]\npath = {json.dumps(_model_path(tmp_path, case))}\n"
        )
    config.write_text(text)
    # no time bound here: the first transformers import of a process can take seconds alone
    line = _one_line(capsys, ["train", str(config)], "train", within=None)
    assert re.search(message, line), line


def _edit_state(out: Path, at: int, /, **changes: object) -> None:
    """Set keys (``a__b`` for ``a.b``) of ``out/checkpoint-<at>/state.json``."""
    path = out / f"checkpoint-{at}" / "state.json"
    state = json.loads(path.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = state
        for p in parents:
            target = target[p]
        target[key] = value
    path.write_text(json.dumps(state))


@TRAIN_WARNINGS
@pytest.mark.parametrize(
    "attack,message",
    [
        ("family", r"run\.toml: \[model\]\.name: 'tiny-paligemma' here, 'tiny-llava' in "
                   r"checkpoint-2: a resumed run cannot change it"),
        ("batches_done", r"checkpoint-2/state\.json: loader\.batches_done: expected an integer "
                         r">= 0, got -5$"),
        ("epoch", r"checkpoint-2/state\.json: loader\.epoch: expected an integer >= 0, got -1$"),
        ("sampler position", r"checkpoint-2/state\.json: loader\.sampler\.position: expected an "
                             r"integer >= 0, got -3$"),
        ("huge batches_done", r"checkpoint-2/state\.json: loader\.batches_done: "
                              r"1000000000000, but 2 steps of 1 batches drew 2$"),
        ("huge epoch", r"checkpoint-2/state\.json: loader\.epoch: 9223372036854775807, but 2 "
                       r"steps of 1 batches reach epoch 2 at most$"),
        ("huge sampler position", r"checkpoint-2/state\.json: loader: .*position 1000000 is "
                                  r"beyond the epoch$"),
        ("step", r"checkpoint-2/state\.json: step: 1, but the checkpoint was saved at step 2 "),
        ("step and folder", r"checkpoint-1/state\.json: step: implies 1 optimizer steps, but "
                            r"the checkpoint's optimizer took 2$"),
        ("not json", r"checkpoint-2/state\.json: not valid JSON"),
    ],
)  # fmt: skip
def test_resume_attacks_are_one_line(
    stopped_run: tuple[str, Path],  # noqa: F811 - the fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attack: str,
    message: str,
) -> None:
    """A changed model family, an edited checkpoint (negative loader positions, a step that
    is not the one it was saved at, folder renamed to match: the optimizer's step count still
    tells), a torn state.json: one line, exit 2, within 5 s, nothing written."""
    edit = ('name = "tiny-llava"', 'name = "tiny-paligemma"') if attack == "family" else ("", "")
    config = resumable(stopped_run, tmp_path, edit)
    out = tmp_path / "out"
    if attack == "batches_done":
        _edit_state(out, 2, loader__batches_done=-5)
    elif attack == "epoch":
        _edit_state(out, 2, loader__epoch=-1)
    elif attack == "sampler position":
        _edit_state(out, 2, loader__sampler__position=-3)
    elif attack == "huge batches_done":
        _edit_state(out, 2, loader__batches_done=10**12)
    elif attack == "huge epoch":
        _edit_state(out, 2, loader__epoch=2**63 - 1)
    elif attack == "huge sampler position":
        _edit_state(out, 2, loader__sampler__position=10**6)
    elif attack == "step":
        _edit_state(out, 2, step=1)
    elif attack == "step and folder":
        _edit_state(out, 2, step=1)
        (out / "checkpoint-2").rename(out / "checkpoint-1")
    elif attack == "not json":
        (out / "checkpoint-2" / "state.json").write_text('{"step": 2, "loa')
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    line = _one_line(capsys, ["train", str(config), "--resume", "auto"], "train")
    assert re.search(message, line), line
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written


def _one_record(folder: Path) -> Path:
    manifest = folder / "m.jsonl"
    record = {"id": "a", "image": "a.png", "source": "s", "task": "report", "split": "train",
              "text": "No acute findings. " * 40}  # fmt: skip
    manifest.write_text(json.dumps(record) + "\n")
    return manifest


def test_pack_to_a_device_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _one_record(tmp_path)
    line = _one_line(
        capsys, ["manifest", "pack", str(manifest), "-o", "/dev/full"], "manifest pack"
    )
    assert "/dev/full" in line and ".arrow" in line


def test_pack_past_a_file_size_limit_leaves_nothing(tmp_path: Path) -> None:
    """The write fails part way (RLIMIT_FSIZE, as a full disk would): one line, exit 2, and no
    temporary or partial file in the output folder."""
    manifest = _one_record(tmp_path)
    out = tmp_path / "out"
    out.mkdir()

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    cmd = [sys.executable, "-m", "gradatim", "manifest", "pack", str(manifest), "-o",
           str(out / "m.arrow")]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit, timeout=60)
    assert time.monotonic() - start < 5
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and err[0].startswith("gradatim manifest pack: error: "), err
    assert str(out / "m.arrow") in err[0]
    assert os.listdir(out) == []


def test_pack_refused_by_the_rename_leaves_no_temporary(tmp_path: Path) -> None:
    """The output name is a folder: the rename fails after the write; the temporary goes."""
    from gradatim.manifest.packed import pack_manifest

    manifest = _one_record(tmp_path)
    out = tmp_path / "out"
    (out / "m.arrow" / "inside").mkdir(parents=True)
    with pytest.raises(OSError):
        pack_manifest(manifest, out / "m.arrow")
    assert sorted(p.name for p in out.iterdir()) == ["m.arrow"]
