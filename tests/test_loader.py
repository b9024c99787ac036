"""gradatim.DataLoader: torch's DataLoader contract (run against both loaders with the same
expectations), and the fast path's pixels, resume, thread invariance, errors and lifecycle."""

from __future__ import annotations

import collections
import json
import os
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.utils.data as tud
from hypothesis import given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim.data import parse_boxes, render_boxes

LOADERS = [tud.DataLoader, ga.DataLoader]
ids = ["torch", "gradatim"]

# --- torch's contract, both loaders -----------------------------------------------------------


class Squares(tud.Dataset):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": torch.tensor([i, i * i]), "name": f"s{i}"}


Point = collections.namedtuple("Point", "x y")


class Points(tud.Dataset):  # type: ignore[type-arg]
    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int) -> Point:
        return Point(i, float(i) / 2)


class Stream(tud.IterableDataset):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(5))


@pytest.mark.parametrize("loader", LOADERS, ids=ids)
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_workers": -1}, "num_workers option should be non-negative"),
        ({"timeout": -1}, "timeout option should be non-negative"),
        ({"prefetch_factor": 2}, "prefetch_factor option could only be specified"),
        ({"persistent_workers": True}, "persistent_workers option needs num_workers > 0"),
        ({"sampler": [0, 1], "shuffle": True}, "sampler option is mutually exclusive with shuffle"),
        (
            {"batch_sampler": [[0, 1]], "batch_size": 2},
            "batch_sampler option is mutually exclusive",
        ),
        ({"batch_size": None, "drop_last": True}, "batch_size=None option disables auto-batching"),
    ],
)
def test_construction_errors_match_torch(loader: type, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loader(Squares(), **kwargs)


@pytest.mark.parametrize("loader", LOADERS, ids=ids)
@pytest.mark.parametrize(
    "batch_size,drop_last,expected", [(3, False, 4), (3, True, 3), (5, True, 2)]
)
def test_len_with_drop_last(loader: type, batch_size: int, drop_last: bool, expected: int) -> None:
    dl = loader(Squares(), batch_size=batch_size, drop_last=drop_last)
    assert len(dl) == expected == len(list(dl))


@pytest.mark.parametrize("loader", LOADERS, ids=ids)
def test_default_collate_of_dicts_and_namedtuples(loader: type) -> None:
    batch = next(iter(loader(Squares(), batch_size=4)))
    assert torch.equal(batch["x"], torch.tensor([[0, 0], [1, 1], [2, 4], [3, 9]]))
    assert batch["name"] == ["s0", "s1", "s2", "s3"]
    p = next(iter(loader(Points(), batch_size=3)))
    assert isinstance(p, Point) and torch.equal(p.x, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("loader", LOADERS, ids=ids)
def test_generator_seeding_and_samplers(loader: type) -> None:
    def order(**kw: Any) -> list[int]:
        return [int(v) for b in loader(Squares(), batch_size=2, **kw) for v in b["x"][:, 0]]

    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, b = order(shuffle=True, generator=g1), order(shuffle=True, generator=g2)
    assert a == b and sorted(a) == list(range(10)) and a != list(range(10))
    assert order(sampler=[9, 8, 7]) == [9, 8, 7]
    batches = loader(Squares(), batch_sampler=[[1, 2], [5]])
    assert [b["x"][:, 0].tolist() for b in batches] == [[1, 2], [5]]
    assert list(loader(Stream(), batch_size=2))[-1].tolist() == [4]


# --- the fast path ----------------------------------------------------------------------------


def dataset(manifest: Path, **kw: Any) -> ga.ManifestDataset:
    kw.setdefault("image_size", (128, 112))
    return ga.ManifestDataset(manifest, **kw)


def collect(loader: ga.DataLoader) -> list[dict[str, Any]]:
    return list(loader)


def same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["id"] == y["id"] and x["target"] == y["target"]
        assert torch.equal(x["pixel_values"], y["pixel_values"])
        assert torch.equal(x["boxes"], y["boxes"])


def test_pixels_equal_opencv_without_augmentation(manifest: Path) -> None:
    """No augmentation: reduced decode + area resize + scaling, as OpenCV computes it."""
    ds = dataset(manifest, image_size=(96, 80), mean=0.5, std=0.25)
    batch = next(iter(ga.DataLoader(ds, batch_size=6)))
    assert batch["pixel_values"].shape == (6, 1, 80, 96) and batch["pixel_values"].is_contiguous()
    for k in range(6):
        rec = ds.record(k)
        if rec["image"].endswith(".png"):
            src = cv2.imread(rec["image"], cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535
        else:
            h, w = cv2.imread(rec["image"], cv2.IMREAD_GRAYSCALE).shape
            d = max(d for d in (1, 2, 4, 8) if -(-w // d) >= 96 and -(-h // d) >= 80)
            flag = {
                1: cv2.IMREAD_GRAYSCALE,
                2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
                4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
            }[d]
            src = cv2.imread(rec["image"], flag)
        small = cv2.resize(src, (96, 80), interpolation=cv2.INTER_AREA)
        if small.dtype == np.uint8:
            small = small.astype(np.float32) / 255
        expect = (small - 0.5) / 0.25
        got = batch["pixel_values"][k, 0].numpy()
        assert np.abs(got - expect).max() <= (1.01 / 255) / 0.25


def test_thread_count_does_not_change_batches(manifest: Path) -> None:
    ds = dataset(manifest, augment=ga.Augment.cure_train())
    runs = [
        collect(
            ga.DataLoader(
                ds,
                batch_size=5,
                shuffle=True,
                num_workers=n,
                generator=torch.Generator().manual_seed(3),
            )
        )
        for n in (0, 1, 2)
    ]
    same(runs[0], runs[1])
    same(runs[0], runs[2])


def test_epochs_differ_and_order_is_a_permutation(manifest: Path) -> None:
    ds = dataset(manifest, augment=ga.Augment())
    dl = ga.DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))
    e0, e1 = collect(dl), collect(dl)
    i0 = torch.cat([b["index"] for b in e0]).tolist()
    i1 = torch.cat([b["index"] for b in e1]).tolist()
    assert sorted(i0) == sorted(i1) == list(range(24)) and i0 != i1


@settings(max_examples=8, deadline=None)
@given(stop=st.integers(0, 5), in_second_epoch=st.booleans(), workers=st.sampled_from([0, 2]))
def test_kill_and_resume_continues_exactly(
    manifest: Path, stop: int, in_second_epoch: bool, workers: int
) -> None:
    """Stop after `stop` batches (of 5 per epoch), save, rebuild everything, load: the batches
    seen before and after equal an uninterrupted two-epoch run, augmentations included."""
    ds = dataset(manifest, augment=ga.Augment.cure_train(), stages="easy")

    def make() -> ga.DataLoader:
        return ga.DataLoader(
            ds,
            batch_size=5,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(11),
        )

    full = make()
    reference = collect(full) + collect(full)  # two epochs, uninterrupted
    run = make()
    seen = collect(run) if in_second_epoch else []
    it = iter(run)
    for _ in range(stop):
        seen.append(next(it))
    state = json.loads(json.dumps(run.state_dict()))  # it must survive JSON
    del it, run  # "killed"
    resumed = make()
    resumed.load_state_dict(state)
    while len(seen) < len(reference):
        seen += collect(resumed)
    same(seen, reference)


def test_resume_with_multi_source_sampler(manifest: Path) -> None:
    ds = dataset(manifest)
    sizes = [12, 12]

    def make() -> ga.DataLoader:
        sampler = ga.sampling.MultiSourceSampler(sizes, [0.7, 0.3], num_samples=20, seed=5)
        return ga.DataLoader(
            ds,
            batch_size=4,
            sampler=sampler,
            num_workers=2,
            generator=torch.Generator().manual_seed(2),
        )

    reference = collect(make())
    run = make()
    it = iter(run)
    first = [next(it), next(it)]
    state = run.state_dict()
    del it
    resumed = make()
    resumed.load_state_dict(state)
    same(first + collect(resumed), reference)


def test_corrupt_files_raise_or_skip(manifest: Path, tmp_path: Path) -> None:
    lines = manifest.read_text().splitlines()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    records = [json.loads(x) for x in lines]
    for r in records:
        r["image"] = str(manifest.parent / r["image"])
    records[3]["image"] = str(bad)
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    strict = ga.ManifestDataset(path, image_size=(64, 64), allow_outside_root=True)
    with pytest.raises(ga.DecodeError) as info:
        collect(ga.DataLoader(strict, batch_size=4))
    message = str(info.value)
    assert "bad.jpg" in message and "line 4" in message and "s3" in message
    assert pickle.loads(pickle.dumps(info.value)).args == info.value.args  # noqa: S301

    lenient = ga.ManifestDataset(
        path, image_size=(64, 64), allow_outside_root=True, on_error="skip"
    )
    dl = ga.DataLoader(
        lenient, batch_size=4, num_workers=2, generator=torch.Generator().manual_seed(0)
    )
    with pytest.warns(RuntimeWarning, match="1 sample"):
        batches = collect(dl)
    assert sum(len(b["index"]) for b in batches) == 24
    assert dl.stats()["skipped"] == 1 and dl.stats()["skipped_samples"][0][0] == 3
    replaced = torch.cat([b["index"] for b in batches]).tolist()
    assert 3 not in replaced
    with pytest.warns(RuntimeWarning):
        again = collect(
            ga.DataLoader(lenient, batch_size=4, generator=torch.Generator().manual_seed(0))
        )
    assert torch.cat([b["index"] for b in again]).tolist() == replaced  # deterministic


def test_bad_manifest_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    rec = {"id": "a", "image": "a.jpg", "source": "s", "task": "report", "split": "train",
           "text": "No acute findings."}  # fmt: skip
    bad = {**rec, "id": "b", "image": "b.jpg", "boxes": [{"box": [5, 5, 1]}]}
    path.write_text(json.dumps(rec) + "\n" + json.dumps(bad))
    with pytest.raises(ga.ManifestError, match=r"m.jsonl line 2, field 'boxes\[0\].box'") as info:
        ga.ManifestDataset(path)
    assert (info.value.row, info.value.field) == (2, "boxes[0].box")
    with pytest.raises(ga.ManifestError, match="outside the manifest root") as info:
        ga.ManifestDataset([{**rec, "image": "/etc/hostname"}])
    assert (info.value.row, info.value.row_kind, info.value.field) == (1, "record", "image")


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_abandoned_iterator_stops_its_threads(manifest: Path) -> None:
    ds = dataset(manifest)
    before = _threads()
    dl = ga.DataLoader(ds, batch_size=2, num_workers=2)
    it = iter(dl)
    next(it)
    assert _threads() >= before + 2
    del it
    assert _threads() == before


def test_iterator_refuses_use_after_fork(manifest: Path) -> None:
    ds = dataset(manifest)
    it = iter(ga.DataLoader(ds, batch_size=2, num_workers=2))
    next(it)
    pid = os.fork()
    if pid == 0:  # child: the worker threads are gone; the loader must say so, not hang
        try:
            next(it)
            os._exit(1)
        except RuntimeError as e:
            os._exit(0 if "fork" in str(e) else 2)
        except BaseException as e:
            print(type(e), e, flush=True)
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    next(it)  # the parent is unaffected


def test_stages_overlay_and_box_mask(manifest: Path) -> None:
    plain = dataset(manifest).load_batch([1])
    easy = dataset(manifest, stages="easy").load_batch([1])
    medium = dataset(manifest, stages="medium", mask_grid=(8, 8)).load_batch([1])
    assert plain["box_mask"] is None
    diff = (easy["pixel_values"] != plain["pixel_values"])[0, 0]
    x1, y1, x2, y2 = easy["boxes"][0, 0].round().int().tolist()
    ys, xs = torch.nonzero(diff, as_tuple=True)
    assert len(ys) > 0 and ys.min() >= y1 - 1 and ys.max() <= y2 and xs.min() >= x1 - 1
    mask = medium["box_mask"]
    assert mask.shape == (1, 8, 8) and abs(float(mask.sum()) - 1) < 1e-5
    assert torch.equal(medium["pixel_values"], plain["pixel_values"])
    assert medium["stage"].tolist() == [1] and easy["stage"].tolist() == [0]


def test_targets_carry_the_augmented_boxes(manifest: Path) -> None:
    ds = dataset(
        manifest, augment=ga.Augment(affine={"rotate": 10, "translate": 0.05}), box_format="xyxy"
    )
    batch = ds.load_batch(list(range(24)))
    for k in range(24):
        if batch["task"][k] != "phrase_grounding":
            continue
        parsed = parse_boxes(batch["target"][k], "xyxy")
        n = int(batch["box_count"][k])
        boxes = batch["boxes"][k, :n].numpy() / np.array([128, 112, 128, 112])
        np.testing.assert_allclose(parsed, boxes, atol=6e-5)


@pytest.mark.parametrize("fmt", ["cure", "maira2", "loc", "xyxy"])
def test_box_text_round_trip(fmt: str) -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [0.0, 0.0, 1.0, 1.0]])
    tol = {"cure": 0.0101, "maira2": 0.0051, "loc": 0.00051, "xyxy": 0.00006}[fmt]
    np.testing.assert_allclose(parse_boxes(render_boxes(boxes, fmt), fmt), boxes, atol=tol)


def test_torch_dataloader_accepts_manifest_dataset(manifest: Path) -> None:
    ds = dataset(manifest)
    batch = next(iter(tud.DataLoader(ds, batch_size=3)))
    ours = ds.load_batch([0, 1, 2])
    assert torch.equal(batch["pixel_values"], ours["pixel_values"])
    assert batch["id"] == ours["id"]


def test_parquet_manifest_equals_jsonl(manifest: Path, tmp_path: Path) -> None:
    """The same records written as Parquet (through pyarrow's map/struct columns) load the same."""
    from gradatim.manifest import write_manifest

    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    for r in records:
        r["image"] = str(manifest.parent / r["image"])
    pq = write_manifest(records, tmp_path / "m.parquet", parquet=True)
    a = ga.ManifestDataset(pq, image_size=(64, 64), allow_outside_root=True)
    b = ga.ManifestDataset(records, image_size=(64, 64), allow_outside_root=True)
    assert [a.record(i) for i in range(24)] == [b.record(i) for i in range(24)]
    assert torch.equal(a.load_batch([0, 5])["pixel_values"], b.load_batch([0, 5])["pixel_values"])


def touched_cells_mask_reference(boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """gradatim's own cell rule (``mask_cells="whole"``, ``mask_empty="zeros"``), written out:
    every cell a box touches is 1, then a 9-tap Gaussian (sigma 3) with reflect padding (OpenCV as
    the oracle), normalised to sum 1. MedCLM's released rule (the default) is checked against a
    transcription of its code in test_medclm_released.py."""
    gw, gh = grid
    cells = np.zeros((gh, gw), np.float64)
    for x1, y1, x2, y2 in boxes:
        cells[
            int(np.floor(y1 * gh)) : int(np.ceil(y2 * gh)),
            int(np.floor(x1 * gw)) : int(np.ceil(x2 * gw)),
        ] = 1
    blurred = cv2.GaussianBlur(cells, (9, 9), 3, borderType=cv2.BORDER_REFLECT_101)
    return blurred / blurred.sum() if blurred.sum() > 0 else blurred


def test_medium_mask_with_gradatims_touched_cells(manifest: Path) -> None:
    ds = dataset(manifest, stages="medium", mask_cells="whole", mask_empty="zeros")
    batch = ds.load_batch(list(range(8)))
    assert batch["box_mask"].shape == (8, 24, 24)
    for k in range(8):
        n = int(batch["box_count"][k])
        boxes = batch["boxes"][k, :n].numpy() / np.array([128, 112, 128, 112])
        expected = touched_cells_mask_reference(boxes, (24, 24))
        np.testing.assert_allclose(batch["box_mask"][k].numpy(), expected, atol=2e-7)
    legacy = dataset(manifest, stages="medium", mask_grid=(16, 16), mask_sigma=1.0,
                     mask_kernel=None, mask_padding="zero", mask_cells="fraction")  # fmt: skip
    old = legacy.load_batch([0])["box_mask"][0]
    assert old.shape == (16, 16) and abs(float(old.sum()) - 1) < 1e-5
    with pytest.raises(ValueError, match="mask_padding must be"):
        dataset(manifest, mask_padding="wrap")
    with pytest.raises(ValueError, match="mask_empty must be"):
        dataset(manifest, mask_empty="none")


def test_unknown_stage_domain_is_an_error_naming_the_sample(manifest: Path) -> None:
    from gradatim.curriculum import StageScheduler

    ds = dataset(manifest, stages=StageScheduler(["alpha"]))  # "beta" is not a domain
    with pytest.raises(ValueError, match=r"sample 1 \(id 's1'\) has source 'beta'"):
        ds.load_batch([0, 1])


def test_cure_train_sends_30_percent_through_the_eval_pipeline(manifest: Path) -> None:
    """CURE's preset: ~30 % of the samples take the evaluation pipeline (CLAHE only). To tell
    them apart from training samples whose CLAHE happens to match, the eval CLAHE gets 3x3 tiles
    (training uses 8x8); those samples come out identical to a dataset that sends every sample
    there. Over 24 samples x 40 epochs the share must be cure_train's p within 4 sd."""
    cure = ga.Augment.cure_train().to_dict()
    p = cure["eval"]["p"]
    marked = {**cure["eval"]["clahe"], "tile_grid": [3, 3]}
    train = dataset(manifest, augment={**cure, "eval": {"p": p, "clahe": marked}})
    every = dataset(
        manifest,
        augment=ga.Augment(
            clahe=None,
            affine=None,
            eval={"p": 1.0, "clahe": marked},
            pipeline="cure",  # cure_train's pipeline: full-resolution decode, cubic resize
        ),
    )
    idx = list(range(24))
    same = total = 0
    for epoch in range(40):
        a = train.load_batch(idx, epoch=epoch, seed=1)["pixel_values"]
        b = every.load_batch(idx, epoch=epoch, seed=1)["pixel_values"]
        same += int(sum(torch.equal(a[k], b[k]) for k in range(24)))
        total += 24
    sd = (p * (1 - p) / total) ** 0.5
    assert p == 0.3 and abs(same / total - p) < 4 * sd, same / total
    preset = ga.Augment.cure_train()
    assert preset.clahe["clip_limit"] == (1.0, 4.0) and preset.min_visible < 1e-3  # any part
    assert preset.eval["clahe"]["clip_limit"] == (1.0, 4.0)  # CURE's test pipeline in training
    assert ga.Augment.strong_train().clahe["clip_limit"] == 4.0


def medclm_target(stage: str, answer: str, rationale: str | None) -> str:
    """MedCLM's released collate_fn (ksyint/PROGRESSIVE a7cca74), written out."""
    if stage == "hard" or rationale is None:
        return f"Answer: {answer}"
    return f"Reasoning: {rationale}\n\nAnswer: {answer}"


@pytest.mark.parametrize("stage", ["easy", "medium", "hard"])
def test_answer_and_rationale_targets_by_stage_with_part_spans(manifest: Path, stage: str) -> None:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:4]
    for k, r in enumerate(rows):
        r["image"] = str(manifest.parent / r["image"])
        r["task"] = "vqa"
        r["prompt"] = "Is there a pleural effusion?"
        r["answer"] = "Yes, on the left."
        r["rationale"] = None if k == 3 else "Blunting of the left costophrenic angle."
    ds = ga.ManifestDataset(rows, image_size=(32, 32), stages=stage, allow_outside_root=True)
    batch = ds.load_batch([0, 1, 2, 3])
    for k, r in enumerate(rows):
        target = batch["target"][k]
        assert target == medclm_target(stage, r["answer"], r["rationale"])
        spans = {role: target[a:b] for role, a, b in batch["target_parts"][k]}
        assert spans["answer"] == r["answer"]
        if stage != "hard" and r["rationale"] is not None:
            assert spans["rationale"] == r["rationale"]
        else:
            assert "rationale" not in spans
    plain = dataset(manifest).load_batch([0])
    assert plain["target_parts"][0] == [("target", 0, len(plain["target"][0]))]
    bad = dict(rows[0], answer=5)
    with pytest.raises(ValueError, match="field 'answer'"):
        ga.ManifestDataset([bad], allow_outside_root=True)


def cure_bbox(b: np.ndarray) -> str:
    """CURE's `_format_bbox_string` (chest_imagenome_dataset.py): [cx,cy,w,h], 2 decimals."""
    x1, y1, x2, y2 = b
    return (
        "[" + ",".join(f"{v:.2f}" for v in ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)) + "]"
    )


def test_cure_preset_targets_equal_cures_rules(manifest: Path) -> None:
    """Targets of the default (`cure`) preset equal strings built by CURE's published rules from
    the same (unaugmented) boxes; the `gradatim` preset keeps the earlier wording."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:2]
    size = np.array([64, 48, 64, 48])
    for r in rows:
        r["image"] = str(manifest.parent / r["image"])
    agrg = dict(rows[0], task="anatomy_grounded_report")
    grounded = dict(rows[1], task="grounded_report", id="g",
                    text="Small left effusion. No pneumothorax.")  # fmt: skip
    ds = ga.ManifestDataset([agrg, grounded], image_size=(64, 48), allow_outside_root=True)
    seen = set()
    for epoch in range(30):  # the anatomy task draws locate / describe / both per epoch
        batch = ds.load_batch([0, 1], epoch=epoch)
        b0 = cure_bbox(batch["boxes"][0, 0].numpy() / size)
        loc, desc = "left lung", "left effusion"
        both = f"Location of the {loc}: {b0}. Description: {desc}"
        cure = {
            "Locate and describe the left lung.": both,
            "Describe the left lung.": f"Description of the {loc}: {desc}",
            "Locate the left lung.": f"Location of the {loc}: {b0}",
        }
        assert batch["target"][0] == cure[batch["prompt"][0]]
        seen.add(batch["prompt"][0])
        b1 = cure_bbox(batch["boxes"][1, 0].numpy() / size)
        sentences = [f"Small left effusion {b1}", "No pneumothorax"]  # boxes tied to the sentence
        assert batch["target"][1] == ". ".join(sentences) + "."
    assert len(seen) == 3
    old = ga.ManifestDataset([grounded], image_size=(64, 48), allow_outside_root=True,
                             templates="gradatim").load_batch([0])  # fmt: skip
    assert old["target"][0].startswith("Small left effusion. [")


def test_a_misspelt_field_is_an_error_not_a_silent_default(tmp_path: Path) -> None:
    """`"lables"` used to train silently as "no labels" in the Rust reader; it is an error naming
    the file, line and field, for JSONL and Parquet alike (and Python's validator agrees)."""
    from gradatim.manifest import write_manifest
    from gradatim.manifest.common import validate_record

    good = {"id": "a", "image": "a.jpg", "source": "s", "task": "report", "split": "train",
            "text": "No acute findings.", "labels": {"Edema": 1}}  # fmt: skip
    bad = {**{k: v for k, v in good.items() if k != "labels"}, "lables": {"Edema": 1}}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**bad, "id": "b"}))
    with pytest.raises(ValueError, match=r"m.jsonl line 2, field 'lables': unknown field"):
        ga.ManifestDataset(path)
    with pytest.raises(ValueError, match="'lables'.*unknown field"):
        validate_record(bad)
    pq = write_manifest([good], tmp_path / "ok.parquet", parquet=True)
    assert len(ga.ManifestDataset(pq)) == 1  # what the converters write is accepted
