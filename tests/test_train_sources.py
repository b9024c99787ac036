"""The training data's sources, selected in the core: three sources chosen from one manifest
(JSON lines and packed) give the records a Python reference selection gives, in the same order and
under the sources' names; the sampler keeps those names; every manifest is opened once per run;
the task list is the core's."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import gradatim.data.dataset as dataset_module
from gradatim import _core
from gradatim.data import ManifestDataset
from gradatim.data.dataset import Selection, Sources
from gradatim.errors import InvalidArgumentError, ManifestError
from gradatim.manifest import TASKS
from gradatim.manifest.common import read_manifest
from gradatim.train import loop
from gradatim.train.config import load_config
from gradatim.train.data import build_loader, sampler_sources, source_records
from gradatim.train.loop import build_model, train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

#: (source name, the manifest's ``source`` it selects, split, weight)
SOURCES = (("A", "mimic", "train", 0.5), ("B", "vindr", "train", 0.3), ("C", "padchest", None, 0.2))


def _one_manifest(manifest: Path, tmp: Path) -> Path:
    """The loader tests' records, re-labelled over two datasets and two splits, in one JSONL
    file beside their images."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for k, r in enumerate(rows):
        r["source"] = ("mimic", "vindr", "padchest")[k % 3]
        r["split"] = "validate" if k % 4 == 1 else "train"
    path = manifest.parent / f"one-{tmp.name}.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _config(tmp: Path, path: Path, *, curriculum: dict[str, Any] | None = None) -> Path:
    lines = [
        '[model]\nname = "tiny-llava"\nvocab_size = 400\n',
        "[train]",
        f"steps = 2\nbatch_size = 4\ncheckpoint_every = 2\nout = {json.dumps(str(tmp / 'out'))}",
        "",
    ]
    for name, select, split, weight in SOURCES:
        lines += ["[[data.sources]]", f'name = "{name}"', f"manifest = {json.dumps(str(path))}"]
        lines += [f'select = "{select}"', f"weight = {weight}"]
        lines += [f'split = "{split}"'] if split is not None else []
        lines.append("")
    if curriculum:
        lines.append("[curriculum]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in curriculum.items()]
    config = tmp / "run.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _reference(path: Path) -> list[dict[str, Any]]:
    """The selection as the training data was built before the core selected it: every record
    read into Python, filtered by split and source, renamed, its image made absolute."""
    out = []
    for name, select, split, _ in SOURCES:
        for r in read_manifest(path):
            if (split is None or r["split"] == split) and r["source"] == select:
                image = Path(r["image"])
                out.append({**r, "source": name, "image": str((path.parent / image).resolve())})
    return out


@pytest.mark.parametrize("packed", [False, True])
def test_three_sources_of_one_manifest_select_the_reference_records(
    manifest: Path, tmp_path: Path, packed: bool
) -> None:
    path = _one_manifest(manifest, tmp_path)
    want = _reference(path)
    if packed:
        arrow = path.with_suffix(".arrow")
        _core.pack_manifest(path.read_text(), str(path), "line", str(arrow))
        path = arrow
    cfg = load_config(_config(tmp_path, path))
    records = source_records(cfg)
    assert list(records) == want
    assert records.column("source") == [r["source"] for r in want]
    assert records.column("id") == [r["id"] for r in want]
    # the three sources share one opened manifest: index arrays over it, no copy
    opened = [m for m, _ in records.sources.selected()]
    assert opened[0] is opened[1] is opened[2]
    _, sampler = build_loader(cfg, build_model(cfg, records), records)
    assert sampler.source_names == ["A", "B", "C"] == sampler_sources(sampler)
    assert sampler.sizes == [sum(r["source"] == n for r in want) for n in ("A", "B", "C")]
    drawn = sampler.epoch_indices(0)
    names = records.column("source")
    assert {names[i] for i in drawn.tolist()} == {"A", "B", "C"}


def test_a_run_opens_each_manifest_once(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _one_manifest(manifest, tmp_path)
    reads: list[str] = []
    real = dataset_module.jsonl_text

    def counted(location: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(str(location))
        return real(location, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "jsonl_text", counted)
    curriculum = {"kind": "cure", "period": 2, "val_split": "validate", "per_source": 2,
                  "max_new_tokens": 4}  # fmt: skip
    cfg = load_config(_config(tmp_path, path, curriculum=curriculum))
    run = train(cfg, max_steps=1)  # training data, validation data, tokenizer, sampler
    assert run.step == 1
    assert reads == [str(path)]


def test_a_source_without_records_names_its_key(manifest: Path, tmp_path: Path) -> None:
    path = _one_manifest(manifest, tmp_path)
    text = _config(tmp_path, path).read_text().replace('select = "vindr"', 'select = "chexpert"')
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=r"\[\[data.sources\]\]\[1\].select"):
        source_records(load_config(config))


def test_sources_compose_renamed_and_refuse_repeated_ids(manifest: Path, tmp_path: Path) -> None:
    path = str(_one_manifest(manifest, tmp_path))
    ds = ManifestDataset(
        Sources([Selection(path, "x", "validate"), Selection(path, None, "train", "vindr")]),
        image_size=(16, 16),
    )
    rows = list(read_manifest(path))
    want = [("x", r["id"]) for r in rows if r["split"] == "validate"]
    want += [("vindr", r["id"]) for r in rows if r["split"] == "train" and r["source"] == "vindr"]
    assert list(zip(ds.column("source"), ds.column("id"), strict=True)) == want
    batch = ds.load_batch([0, len(ds) - 1])
    assert batch["source"] == [want[0][0], want[-1][0]]
    assert batch["pixel_values"].shape == (2, 1, 16, 16)
    # a copy (as a spawned worker gets one) reopens its sources from their selections alone
    clone = copy.deepcopy(ds)
    assert clone.column("id") == ds.column("id") and clone._sources._opened is not None
    assert clone.load_batch([0])["id"] == batch["id"][:1]
    with pytest.raises(ManifestError, match="duplicate id"):
        ManifestDataset(Sources([Selection(path, "a"), Selection(path, "b", "train")]))
    with pytest.raises(InvalidArgumentError, match="has no records of split 'test'"):
        ManifestDataset(Sources([Selection(path, "a", "test")]))
    with pytest.raises(InvalidArgumentError, match='unknown task "reports"'):
        ManifestDataset(Sources([Selection(path, "a", tasks=("reports",))]))


def test_the_task_list_is_the_cores() -> None:
    assert TASKS == tuple(_core.TASKS) == loop.TASKS
    base = {
        "id": "a",
        "image": "a.png",
        "source": "s",
        "split": "train",
        "text": "x",
        "prompt": "q",
    }
    for task in TASKS:  # every listed task validates, an unlisted one does not
        assert _core.validate_record({**base, "task": task})["task"] == task
    with pytest.raises(ManifestError, match="task"):
        _core.validate_record({**base, "task": "caption"})
