"""The manifest schema check, writer/reader, ManifestError and the RRGCL class helper."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradatim import _core
from gradatim.errors import GradatimError, ManifestError
from gradatim.manifest import (
    ANATOMY_REGIONS,
    CHEXPERT_LABELS,
    FIELDS,
    TASKS,
    make_box,
    make_record,
    read_manifest,
    sample_classes,
    validate_record,
    write_manifest,
)
from gradatim.manifest.common import Where, hash_split, join_report, splitter


def _record(**over: Any) -> dict[str, Any]:
    rec = make_record(
        id="s/1",
        image="images/1.png",
        source="test",
        task="report",
        split="train",
        text="A synthetic report.",
        labels={"Cardiomegaly": 1, "Edema": None},
        boxes=[make_box([1, 2, 30, 40], "a phrase", "right lung")],
    )
    rec.update(over)
    return rec


def test_manifest_error_names_place_and_pickles() -> None:
    err = ManifestError("expected x1 < x2", "manifest.jsonl", 12, "boxes[0].box")
    assert str(err) == "manifest.jsonl line 12, field 'boxes[0].box': expected x1 < x2"
    assert isinstance(err, ValueError) and isinstance(err, GradatimError)
    clone = pickle.loads(pickle.dumps(err))  # noqa: S301 - round-trip of our own object
    assert type(clone) is ManifestError
    assert (clone.path, clone.row, clone.field, clone.reason) == (
        "manifest.jsonl",
        12,
        "boxes[0].box",
        "expected x1 < x2",
    )
    assert str(clone) == str(err)
    assert str(ManifestError("bad", "a.csv", 3, None, "row")) == "a.csv row 3: bad"
    assert str(ManifestError("bad")) == "<records>: bad"


def test_validate_fills_defaults_and_orders_fields() -> None:
    rec = validate_record(
        {
            "text": "t",
            "split": "train",
            "id": "x",
            "image": "i.png",
            "source": "s",
            "task": "vqa",
            "labels": {"Edema": 1.0, "custom": -1, "No Finding": 0},
        }
    )
    assert list(rec) == list(FIELDS)
    assert rec["prompt"] is None and rec["boxes"] == [] and rec["laterality_sensitive"] is True
    assert rec["labels"] == {"No Finding": 0, "Edema": 1, "custom": -1}
    assert list(rec["labels"]) == ["No Finding", "Edema", "custom"]  # CheXpert order first
    assert type(rec["labels"]["Edema"]) is int


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"id": ""}, "id", "must not be empty"),
        ({"image": 3}, "image", "must be a string, got a number"),
        ({"task": "caption"}, "task", "unknown task"),
        ({"text": "  "}, "text", "non-empty report"),
        ({"prompt": 5}, "prompt", "string or null"),
        ({"labels": {"Edema": 2}}, "labels.Edema", "1, 0, -1 or null"),
        ({"labels": {"Edema": True}}, "labels.Edema", "got a boolean"),
        ({"labels": ["Edema"]}, "labels", "expected an object"),
        ({"boxes": [{"box": [0, 0, 1]}]}, "boxes[0].box", "[x1, y1, x2, y2]"),
        ({"boxes": [{"box": [5, 0, 5, 9]}]}, "boxes[0].box", "x1 < x2"),
        ({"boxes": [{"box": [0, 0, float("nan"), 9]}]}, "boxes[0].box[2]", "finite"),
        ({"boxes": [{"box": [0, 0, "1", 9]}]}, "boxes[0].box", "finite numbers, got a string"),
        ({"boxes": [{"box": [0, 0, 1, 1], "phrase": 5}]}, "boxes[0].phrase", "string"),
        ({"boxes": [{"box": [0, 0, 1, 1], "anatomy": ""}]}, "boxes[0].anatomy", "non-empty"),
        ({"boxes": [{"box": [0, 0, 1, 1], "score": 1}]}, "boxes[0].score", "unknown field"),
        ({"lables": {}}, "lables", "unknown field"),
        ({"laterality_sensitive": "yes"}, "laterality_sensitive", "true or false"),
    ],
)
def test_validate_rejects_with_the_field(change: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate_record(_record(**change), Where("m.jsonl", 7))
    assert info.value.field == field
    assert info.value.row == 7 and info.value.path == "m.jsonl"
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"m.jsonl line 7, field {field!r}: ")


def test_validate_requires_fields() -> None:
    rec = _record()
    del rec["split"]
    with pytest.raises(ManifestError, match="field 'split': missing"):
        validate_record(rec)


def test_error_messages_never_quote_report_text() -> None:
    secret = "Patient-specific synthetic sentence 12345."
    for bad in ({"task": "nope"}, {"labels": {"X": 7}}, {"boxes": [{"box": [3, 3, 1, 1]}]}):
        with pytest.raises(ManifestError) as info:
            validate_record(_record(text=secret, **bad))
        assert secret not in str(info.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_write_read_roundtrip(tmp_path: Path, suffix: str) -> None:
    records = [
        _record(id="a"),
        _record(id="b", task="phrase_grounding", text="", labels={}, boxes=[]),
        _record(id="c", prompt="Is there X?", task="vqa", laterality_sensitive=False),
    ]
    path = write_manifest(records, tmp_path / f"m{suffix}")
    back = read_manifest(path)
    assert back == [validate_record(r) for r in records]
    if suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        assert schema.names == list(_core.MANIFEST_FIELDS)  # answer, rationale: nullable
        labels = schema.field("labels").type
        assert pa.types.is_map(labels) and labels.item_type == pa.int8()


def test_write_refuses_duplicates_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    with pytest.raises(ManifestError) as info:
        write_manifest([_record(id="a"), _record(id="b"), _record(id="a")], out)
    assert info.value.field == "id" and info.value.row == 3
    assert "record 1" in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_read_names_the_line(tmp_path: Path) -> None:
    good = json.dumps(_record(id="a"))
    p = tmp_path / "m.jsonl"
    p.write_text(good + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m.jsonl line 3: invalid JSON"):
        read_manifest(p)
    bad = _record(id="b")
    bad["boxes"] = [{"box": [0, 0, -1, 4], "phrase": "", "anatomy": None}]
    p.write_text(good + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        read_manifest(p)
    assert (info.value.row, info.value.field) == (2, "boxes[0].box")
    p.write_text(good + "\n" + good + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="line 2, field 'id': duplicate id"):
        read_manifest(p)


_labels = st.dictionaries(
    st.sampled_from(CHEXPERT_LABELS), st.sampled_from([1, 0, -1, None]), max_size=14
)
_coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_subnormal=False)


@st.composite
def _boxes(draw: st.DrawFn) -> dict[str, Any]:
    x1, y1 = draw(_coord), draw(_coord)
    w = draw(st.floats(min_value=1e-3, max_value=1e4))
    h = draw(st.floats(min_value=1e-3, max_value=1e4))
    anatomy = draw(st.one_of(st.none(), st.sampled_from(ANATOMY_REGIONS)))
    return make_box([x1, y1, x1 + w, y1 + h], draw(st.text(max_size=30)), anatomy)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(TASKS),
            st.text(min_size=1, max_size=40),
            _labels,
            st.lists(_boxes(), max_size=4),
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_any_valid_record_roundtrips_through_both_formats(
    tmp_path_factory: Any, rows: list
) -> None:
    records = [
        make_record(
            id=f"r{i}",
            image=f"im/{i}.png",
            source="prop",
            task=task,
            split="train",
            text=text,
            labels=labels,
            boxes=boxes,
            laterality_sensitive=lat,
        )
        for i, (task, text, labels, boxes, lat) in enumerate(rows)
        if task != "report" or text.strip()
    ]
    d = tmp_path_factory.mktemp("rt")
    for name in ("m.jsonl", "m.parquet"):
        assert read_manifest(write_manifest(records, d / name)) == [
            validate_record(r) for r in records
        ]


def test_join_report() -> None:
    assert join_report("  Heart  normal.\n Lungs clear. ", None, "", "No acute process.") == (
        "Heart normal. Lungs clear. No acute process."
    )
    assert join_report(None, "  ") == ""


def test_hash_split_is_deterministic_and_proportional() -> None:
    keys = [f"patient-{i}" for i in range(20000)]
    first = [hash_split(k) for k in keys]
    assert first == [hash_split(k) for k in keys]
    share = {s: first.count(s) / len(keys) for s in ("train", "validate", "test")}
    assert abs(share["train"] - 0.7) < 0.015 and abs(share["test"] - 0.2) < 0.015
    assert splitter("hash:1,0,0")("anything") == "train"
    assert splitter("val")("x") == "validate"
    with pytest.raises(ValueError, match="hash:TRAIN"):
        splitter("hash:1,2")


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        ({"Cardiomegaly": 1, "Edema": 1, "Support Devices": 1}, ["Cardiomegaly", "Edema"]),
        ({"Support Devices": 1, "No Finding": 1}, ["No Finding"]),
        ({"Support Devices": 1}, ["unlabeled"]),
        ({"Edema": -1, "Pneumonia": 0}, ["unlabeled"]),
        ({}, ["unlabeled"]),
        (None, ["unlabeled"]),
        ({"No Finding": 1, "Fracture": 1}, ["Fracture"]),
        (
            {"Pleural Other": 1, "Enlarged Cardiomediastinum": 1},
            ["Enlarged Cardiomediastinum", "Pleural Other"],
        ),
    ],
)
def test_sample_classes(labels: dict[str, int] | None, classes: list[str]) -> None:
    assert sample_classes(labels) == classes


def test_label_and_region_vocabularies() -> None:
    assert len(CHEXPERT_LABELS) == 14 and len(set(CHEXPERT_LABELS)) == 14
    assert len(ANATOMY_REGIONS) == 29 and len(set(ANATOMY_REGIONS)) == 29
    assert {"svc", "carina", "left costophrenic angle", "right hilar structures"} <= set(
        ANATOMY_REGIONS
    )


def test_vqa_answer_and_rationale_fields():
    from gradatim.manifest.common import validate_record

    base = {"id": "q1", "image": "a.jpg", "source": "vqa-rad", "task": "vqa", "split": "train",
            "text": "", "prompt": "Is there an effusion?"}  # fmt: skip
    out = validate_record({**base, "answer": "yes", "rationale": "the angle is blunted"})
    assert (out["answer"], out["rationale"]) == ("yes", "the angle is blunted")
    assert "answer" not in validate_record(base)  # written only when present
    with pytest.raises(ValueError, match="'rationale'.*needs an answer"):
        validate_record({**base, "rationale": "why"})
    with pytest.raises(ValueError, match="'answer'.*must be a string or null"):
        validate_record({**base, "answer": 3})
