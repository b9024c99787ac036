"""The synthetic phantom studies: determinism, lesion/box agreement, text/label agreement,
coverage of tasks and sources, and manifest validity."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gradatim import cli, image
from gradatim.datasets import phantom
from gradatim.manifest import ANATOMY_REGIONS, CHEXPERT_LABELS, TASKS, read_manifest


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("phantom")
    manifest = phantom.generate(root, n=60, seed=3, size=(256, 256), image_format="png")
    return root, read_manifest(manifest)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = phantom.generate(tmp_path / "a", n=12, seed=7, size=(192, 192))
    b = phantom.generate(tmp_path / "b", n=12, seed=7, size=(192, 192))
    c = phantom.generate(tmp_path / "c", n=12, seed=8, size=(192, 192))
    assert a.name == "manifest.jsonl"
    da, db, dc = _digest(a.parent), _digest(b.parent), _digest(c.parent)
    assert da == db
    assert len(da) == 14  # 12 images, the manifest and the truth table
    assert da["manifest.jsonl"] != dc["manifest.jsonl"]
    assert sum(da[k] == dc[k] for k in da) == 0
    # a study does not depend on how many others are generated: n=5 is a prefix of n=12
    d = phantom.generate(tmp_path / "d", n=5, seed=7, size=(192, 192))
    dd = _digest(d.parent)
    assert all(dd[k] == da[k] for k in dd if k not in ("manifest.jsonl", phantom.TRUTH))
    lines = a.read_text().splitlines()
    prefix = [line for line in lines if int(json.loads(line)["id"].split("/")[1]) < 5]
    assert d.read_text().splitlines() == prefix


def test_manifest_covers_every_task_source_and_split(generated: tuple[Path, list[dict]]) -> None:
    root, records = generated
    assert {r["task"] for r in records} == set(TASKS)
    assert {r["source"] for r in records} == set(phantom.SOURCES)
    assert {r["split"] for r in records} == {"train", "validate", "test"}
    sizes = {}
    for r in records:
        img = image.decode(root / r["image"])
        assert img.dtype == np.uint8 and img.ndim == 2
        sizes.setdefault(r["source"], set()).add(img.shape)
    assert sizes == {
        "phantom-a": {(256, 256)},
        "phantom-b": {(320, 320)},
        "phantom-c": {(224, 224)},
    }
    for r in records:
        assert set(r["labels"]) == set(CHEXPERT_LABELS)
        for b in r["boxes"]:
            assert b["anatomy"] in ANATOMY_REGIONS
    agrg = [r for r in records if r["task"] == "anatomy_grounded_report"]
    assert agrg and all([b["anatomy"] for b in r["boxes"]] == list(ANATOMY_REGIONS) for r in agrg)
    assert all(r["prompt"] for r in records if r["task"] == "vqa")


def test_lesions_lie_inside_their_boxes() -> None:
    checked = Counter()
    for i in range(150):
        source = list(phantom.SOURCES)[i % 3]
        study = phantom.make_study(i, seed=11, size=(200, 240), source=source)
        w, h = study.width, study.height
        masks = phantom.lesion_masks(study)
        for f, mask in zip(study.findings, masks, strict=True):
            x1, y1, x2, y2 = f.box
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            ys, xs = np.nonzero(mask)
            assert ys.size > 0
            # tight: the box is exactly the lesion's extent in pixel-edge coordinates
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            checked[f.kind] += 1
        # Oracle on the rendered pixels: every pixel the findings change is inside a box.
        diff = phantom.render(study) != phantom.render(study, lesions=False)
        inside = np.zeros_like(diff)
        for f in study.findings:
            x1, y1, x2, y2 = (int(v) for v in f.box)
            inside[y1:y2, x1:x2] = True
        assert not (diff & ~inside).any()
        for f in study.findings:  # and each lesion is visible
            x1, y1, x2, y2 = (int(v) for v in f.box)
            assert diff[y1:y2, x1:x2].any(), f.kind
    assert set(checked) == set(phantom.FINDING_KINDS)


def test_lesions_sit_in_their_anatomy() -> None:
    sides = Counter()
    for i in range(90):
        study = phantom.make_study(i, seed=5, source="phantom-a")
        for f in study.findings:
            region = study.regions[f.anatomy]
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            margin = 0.06 * study.width
            assert region[0] - margin <= cx <= region[2] + margin, (f.kind, f.anatomy)
            assert region[1] - margin <= cy <= region[3] + margin, (f.kind, f.anatomy)
            if f.side == "right":  # patient's right = image left
                assert cx < study.width / 2
            elif f.side == "left":
                assert cx > study.width / 2
            sides[f.side] += 1
            assert f.side is None or f.side in f.sentence
    assert sides["right"] > 10 and sides["left"] > 10


# Independent reading of the templated text: which observation each sentence asserts.
_KEYWORDS = {
    "Support Devices": "endotracheal tube",
    "Lung Lesion": "nodule",
    "Consolidation": "consolidation",
    "Lung Opacity": "opacity",
    "Atelectasis": "atelectasis",
    "Pleural Effusion": "pleural effusion",
    "Pneumothorax": "pneumothorax",
    "Cardiomegaly": r"heart is enlarged|cardiomegaly|enlarged heart",
}


def _read_text(text: str) -> dict[str, int]:
    found = {label: 0 for label in _KEYWORDS}
    for sentence in re.split(r"(?<=\.)\s+", text):
        low = sentence.lower()
        for label, pattern in _KEYWORDS.items():
            if re.search(pattern, low) and not low.startswith("no "):
                value = -1 if low.startswith("possible") else 1
                found[label] = max(found[label], value) if found[label] != 0 else value
    return found


def test_labels_agree_with_the_report_text() -> None:
    seen = Counter()
    for i in range(300):
        study = phantom.make_study(i, seed=2, source="phantom-c", size=(128, 128))
        expected = _read_text(study.report)
        for label, value in expected.items():
            assert study.labels[label] == value, (label, study.report)
        pathologic = any(v != 0 for k, v in expected.items() if k != "Support Devices")
        assert study.labels["No Finding"] == (0 if pathologic else 1)
        if not pathologic:
            assert study.impression == "No acute cardiopulmonary process."
        if expected["Cardiomegaly"] == 0:
            assert "The heart size is normal." in study.report
        for label in (
            "Enlarged Cardiomediastinum",
            "Edema",
            "Pneumonia",
            "Fracture",
            "Pleural Other",
        ):
            assert study.labels[label] == 0
        for label, value in expected.items():
            seen[(label, value)] += 1
    assert all(seen[(label, 1)] > 0 for label in _KEYWORDS)
    assert any(seen[(label, -1)] > 0 for label in _KEYWORDS)  # some hedged findings
    assert "left" in " ".join(phantom.make_study(i).report for i in range(20))


def test_grounded_phrases_are_sentences_of_the_text(generated: tuple[Path, list[dict]]) -> None:
    _, records = generated
    for r in records:
        if r["task"] in ("report", "grounded_report"):
            for b in r["boxes"]:
                assert b["phrase"] in r["text"]
        if r["task"] == "phrase_grounding":
            assert [b["phrase"] for b in r["boxes"]] == [r["text"]]
        if r["task"] == "vqa" and r["text"] == "No.":
            assert r["boxes"] == []


def test_generate_is_fast_enough(tmp_path: Path) -> None:
    import time

    t0 = time.perf_counter()
    phantom.generate(tmp_path, n=120, size=(512, 512), sources=("phantom-a",))
    per_image = (time.perf_counter() - t0) / 120
    assert per_image < 0.05  # ~5 ms measured; 1,000 images at 512 x 512 in seconds


def test_cli_phantom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["phantom", str(tmp_path), "--n", "6", "--size", "128"]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "manifest records" in out
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert len({r["image"] for r in records}) == 6
    assert not any(r["text"] in out for r in records)  # counts only, never report text


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown phantom source"):
        phantom.generate(tmp_path, n=1, sources=("phantom-z",))
    with pytest.raises(ValueError, match="image_format"):
        phantom.generate(tmp_path, n=1, image_format="gif")
    with pytest.raises(ValueError, match="size"):
        phantom.generate(tmp_path, n=1, size=(32, 32))


def test_report_records_carry_the_whole_report_and_its_sentence_boxes() -> None:
    # "report" (phantom-a, -c) and "grounded_report" (phantom-b) records: the study's report with
    # one box per finding sentence, under the id <source>/<index>/<task>.
    for source, task in (("phantom-a", "report"), ("phantom-b", "grounded_report")):
        study = next(
            s for s in (phantom.make_study(i, source=source) for i in range(50)) if s.findings
        )
        [rec] = [r for r in phantom.study_records(study, "x.png") if r["task"] == task]
        assert rec["id"] == f"{source}/{study.index:06d}/{task}"
        assert rec["text"] == study.report
        assert [(b["phrase"], b["anatomy"]) for b in rec["boxes"]] == [
            (f.sentence, f.anatomy) for f in study.findings
        ]


def _iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_anatomy_varies_with_the_patient() -> None:
    """The region boxes move, grow and turn with the synthetic patient: the mean box of a region
    (what a prompt alone could give) overlaps a study's own box far less than perfectly."""
    studies = [
        phantom.make_study(i, seed=3, size=(256, 256), source="phantom-c") for i in range(80)
    ]
    angles = np.array([s.angle for s in studies])
    assert np.abs(angles).max() <= phantom.ROTATION
    assert (angles < -3).sum() > 5 and (angles > 3).sum() > 5
    overlaps = {}
    for name in phantom.ANATOMY_REGIONS:
        boxes = np.array([s.regions[name] for s in studies]) / 256.0
        mean = boxes.mean(axis=0).tolist()
        overlaps[name] = float(np.mean([_iou(b.tolist(), mean) for b in boxes]))
    assert max(overlaps.values()) < 0.9, overlaps
    assert np.mean(list(overlaps.values())) < 0.7, overlaps


def test_the_patient_is_placed_by_a_similarity_about_the_centre() -> None:
    """Each study's pose: turned and zoomed about the image centre (OpenCV's
    getRotationMatrix2D, OpenCV 5.0, is the oracle), then shifted by fractions of the sides;
    angle, zoom and shift spread over their whole ranges."""
    import cv2

    studies = [phantom.make_study(i, seed=3, size=(256, 256)) for i in range(200)]
    for s in studies[:20]:
        w, h = s.width, s.height
        oracle = cv2.getRotationMatrix2D((w / 2, h / 2), s.angle, s.zoom)
        oracle[:, 2] += (s.shift[0] * w, s.shift[1] * h)
        np.testing.assert_allclose(phantom._pose_of(s), oracle, atol=1e-9)
    zooms = np.array([s.zoom for s in studies])
    shifts = np.array([s.shift for s in studies])
    assert np.abs(zooms - 1).max() <= phantom.ZOOM and np.abs(shifts).max() <= phantom.SHIFT
    assert zooms.min() < 1 - phantom.ZOOM / 2 and zooms.max() > 1 + phantom.ZOOM / 2
    for axis in (0, 1):
        low, high = shifts[:, axis].min(), shifts[:, axis].max()
        assert low < -phantom.SHIFT / 2 and high > phantom.SHIFT / 2


def test_truth_table_gives_each_records_difficulty(tmp_path: Path) -> None:
    manifest = phantom.generate(tmp_path, n=90, seed=4, size=(128, 128))
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    truth = [json.loads(line) for line in (tmp_path / phantom.TRUTH).read_text().splitlines()]
    assert [t["id"] for t in truth] == [r["id"] for r in records]
    for t in truth[::7]:
        source, index = t["id"].split("/")[:2]
        study = phantom.make_study(int(index), seed=4, size=(128, 128), source=source)
        assert t["difficulty"] == pytest.approx(phantom.record_difficulty(study, t["id"]), abs=1e-6)
    # hand computation for one finding: 1 / (1 + CNR x size)
    study = next(
        s for i in range(30) if (s := phantom.make_study(i, seed=4, source="phantom-b")).findings
    )
    f, style = study.findings[0], phantom.SOURCES["phantom-b"]
    cnr = float(np.abs(f.effect).max()) * 255 * style.contrast / style.noise
    x1, y1, x2, y2 = f.box
    size = ((x2 - x1) * (y2 - y1) / (study.width * study.height)) ** 0.5
    assert f.difficulty == pytest.approx(1 / (1 + cnr * size))


def test_one_source_is_harder() -> None:
    """phantom-c's findings are fainter and smaller: harder on average than the other sources'."""
    mean = {}
    for source in phantom.SOURCES:
        values = [
            f.difficulty
            for i in range(120)
            for f in phantom.make_study(i, seed=2, size=(256, 256), source=source).findings
            if f.kind not in ("device", "cardiomegaly")
        ]
        mean[source] = float(np.mean(values))
    assert mean["phantom-c"] > mean["phantom-a"] + 0.1, mean
    assert mean["phantom-c"] > mean["phantom-b"] + 0.1, mean
