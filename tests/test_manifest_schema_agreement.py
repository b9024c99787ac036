"""One manifest schema: the loader's JSONL reader (``ManifestDataset`` on a ``.jsonl`` file), the
Parquet reader (``read_manifest`` on a file written with pyarrow directly), the packed reader
(``ManifestDataset`` on an ``.arrow`` file, both as ``pack_manifest`` writes it and written with
pyarrow directly in the packed schema, so that the packed reader's own checks run) and the
converters' validator (``validate_record``) accept the same records with the same normalised
content, and refuse the same records with the same field and reason.

Records are generated valid and then broken in many ways (missing, empty and ill-typed fields,
unknown keys, numeric ids, bad boxes and labels, a rationale without an answer, a Hard-stage
partner that is the record itself, a report without text). Parquet cannot store every such record
(pyarrow infers one type per column and cannot write an empty struct); for those the Parquet leg
is left out, and ``test_the_parquet_leg_applies`` checks that it does apply to a set of typical
valid and broken records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gradatim as ga
from gradatim import _core
from gradatim.errors import ManifestError
from gradatim.manifest import CHEXPERT_LABELS, TASKS, pack_manifest
from gradatim.manifest.common import Where, read_manifest, validate_record

REQUIRED = ("id", "image", "source", "task", "split", "text")
Outcome = tuple[str, Any]  # ("ok", normalised record as JSON) or ("error", (field, reason))


# -- the three readers -------------------------------------------------------------------------


def _error(e: ManifestError) -> Outcome:
    return ("error", (e.field, e.reason))


def _ok(record: dict[str, Any]) -> Outcome:
    return ("ok", json.dumps(record))  # order- and type-sensitive (1 and 1.0 differ)


def via_jsonl(record: dict[str, Any], folder: Path) -> Outcome:
    path = folder / "m.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    try:
        ds = ga.ManifestDataset(path, image_size=(8, 8))
    except ManifestError as e:
        assert (e.path, e.row, e.row_kind) == (str(path), 1, "line")
        return _error(e)
    out = ds.record(0)
    assert out.pop("line") == 1
    resolved = Path(out["image"])  # under the manifest's folder, as written below it
    assert resolved == folder.resolve() / record["image"]
    out["image"] = record["image"]
    return _ok(out)


def _strict(v: Any) -> Any:
    """A value with its JSON types spelled out (``True`` is not ``1``, ``1`` is not ``1.0``)."""
    if isinstance(v, dict):
        return ("dict", tuple((k, _strict(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return ("list", tuple(_strict(x) for x in v))
    return (type(v).__name__, v)


def _column(name: str, value: Any) -> pa.Array | None:
    """A one-row Parquet column that reads back exactly as ``value``, or None if pyarrow cannot
    store it (mixed types in a list, an empty struct, ...)."""
    candidates: list[Any] = [None]
    if name == "labels" and isinstance(value, dict):  # the map type Parquet manifests use
        candidates.append(pa.map_(pa.string(), pa.int64()))
    for type_ in candidates:
        try:
            arr = pa.array([value], type=type_)
            table = pa.table({name: arr})
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            back = pq.read_table(pa.BufferReader(sink.getvalue())).to_pylist()[0][name]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            continue
        if isinstance(back, list) and type_ is not None:
            back = dict(back)
        if _strict(back) == _strict(value):
            return arr
    return None


def via_parquet(record: dict[str, Any], folder: Path) -> Outcome | None:
    columns = {}
    for name, value in record.items():
        arr = _column(name, value)
        if arr is None:
            return None
        columns[name] = arr
    path = folder / "m.parquet"
    pq.write_table(pa.table(columns), path)
    try:
        [out] = read_manifest(path)
    except ManifestError as e:
        assert (e.path, e.row, e.row_kind) == (str(path), 1, "row")
        return _error(e)
    return _ok(out)


def via_packed(record: dict[str, Any], folder: Path) -> Outcome:
    """``pack_manifest`` of the record's JSONL, then the packed file opened by the loader."""
    jsonl, arrow = folder / "p.jsonl", folder / "p.arrow"
    jsonl.write_text(json.dumps(record) + "\n", encoding="utf-8")
    try:
        pack_manifest(jsonl, arrow)
    except ManifestError as e:
        assert (e.path, e.row, e.row_kind) == (str(jsonl), 1, "line")
        return _error(e)
    return _packed_record(arrow, record)


def _packed_record(arrow: Path, record: dict[str, Any]) -> Outcome:
    try:
        ds = ga.ManifestDataset(arrow, image_size=(8, 8))
    except ManifestError as e:
        assert (e.path, e.row, e.row_kind) == (str(arrow), 1, "row")
        return _error(e)
    out = ds.record(0)
    assert out.pop("line") == 1
    assert Path(out["image"]) == arrow.parent.resolve() / record["image"]
    out["image"] = record["image"]
    return _ok(out)


_STRINGS = (*REQUIRED, "prompt", "answer", "rationale")
_LAST_STRINGS = ("hard_id",)  # version 2 of the packed schema: after laterality_sensitive
_LABEL = pa.struct([pa.field("name", pa.large_string(), False), pa.field("value", pa.int8())])
_BOX = pa.struct(
    [*(pa.field(c, pa.float64(), False) for c in ("x1", "y1", "x2", "y2")),
     pa.field("phrase", pa.large_string(), False), pa.field("anatomy", pa.large_string())]
)  # fmt: skip
PACKED = pa.schema(
    [*(pa.field(n, pa.large_string(), n not in REQUIRED) for n in _STRINGS),
     pa.field("labels", pa.list_(pa.field("item", _LABEL, False)), False),
     pa.field("boxes", pa.list_(pa.field("item", _BOX, False)), False),
     pa.field("laterality_sensitive", pa.bool_(), False),
     *(pa.field(n, pa.large_string(), True) for n in _LAST_STRINGS)],
    metadata={"format": "gradatim-manifest", "version": "2"},
)  # fmt: skip


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def packed_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record as a row of the packed schema, with no normalisation but what the schema's
    types impose, or None when the schema cannot hold it (a field of another type, a null
    required field, an unknown field, a label value that is no integer)."""
    if set(record) - set(_core.MANIFEST_FIELDS):
        return None
    row: dict[str, Any] = {}
    for name in (*_STRINGS, *_LAST_STRINGS):
        v = record.get(name)
        if not (isinstance(v, str) or (v is None and name not in REQUIRED)):
            return None
        row[name] = v
    labels = record.get("labels")
    labels = {} if labels is None else labels  # False or 0 is no object: refused below
    if not isinstance(labels, dict) or not all(
        v is None or (_num(v) and float(v).is_integer() and -128 <= v <= 127)
        for v in labels.values()
    ):
        return None
    row["labels"] = [{"name": k, "value": None if v is None else int(v)} for k, v in labels.items()]
    boxes = record.get("boxes")
    boxes = [] if boxes is None else boxes
    if not isinstance(boxes, list):
        return None
    row["boxes"] = []
    for b in boxes:
        if not isinstance(b, dict) or set(b) - {"box", "phrase", "anatomy"}:
            return None
        xy, phrase, anatomy = b.get("box"), b.get("phrase"), b.get("anatomy")
        ok = isinstance(xy, list) and len(xy) == 4 and all(_num(x) for x in xy)
        if not ok or not isinstance(phrase, (str, type(None))):
            return None
        if not isinstance(anatomy, (str, type(None))):
            return None
        row["boxes"].append({**dict(zip(("x1", "y1", "x2", "y2"), map(float, xy), strict=True)),
                             "phrase": phrase or "", "anatomy": anatomy})  # fmt: skip
    lat = record.get("laterality_sensitive")
    if not isinstance(lat, (bool, type(None))):
        return None
    row["laterality_sensitive"] = True if lat is None else lat
    return row


def via_packed_columns(record: dict[str, Any], folder: Path) -> Outcome | None:
    """The record written with pyarrow straight into the packed schema (no validation on the
    way), opened by the loader: the packed reader's own checks."""
    row = packed_row(record)
    if row is None:
        return None
    arrow = folder / "raw.arrow"
    with pa.ipc.new_file(arrow, PACKED) as w:
        w.write_table(pa.Table.from_pylist([row], schema=PACKED))
    return _packed_record(arrow, record)


def via_validator(record: dict[str, Any]) -> Outcome:
    try:
        out = validate_record(record, Where("converted.csv", 9, "line"))
    except ManifestError as e:
        assert (e.path, e.row) == ("converted.csv", 9)
        return _error(e)
    return _ok(out)


def check_agreement(record: dict[str, Any], folder: Path) -> tuple[Outcome, bool]:
    """All readers agree on ``record``; returns the outcome and whether Parquet took part."""
    expect = via_validator(record)
    assert via_jsonl(record, folder) == expect, record
    assert via_packed(record, folder) == expect, record
    columns = via_packed_columns(record, folder)
    if columns is not None:
        assert columns == expect, record
    parquet = via_parquet(record, folder)
    if parquet is not None:
        assert parquet == expect, record
    return expect, parquet is not None


# -- records -----------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
_label_names = st.one_of(st.sampled_from(CHEXPERT_LABELS), st.sampled_from(["zeta", "alpha"]))
_labels = st.dictionaries(_label_names, st.sampled_from([1, 0, -1, None, 1.0, -0.0]), max_size=5)
_coord = st.integers(-50, 50) | st.floats(-50, 50, allow_nan=False)
_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from(["", " ", "x", "report", "Edema"]),
    st.lists(st.integers(-2, 60), max_size=5),
    st.dictionaries(st.sampled_from(["Edema", "a", "box"]), st.integers(-1, 2), max_size=2),
)


@st.composite
def boxes(draw: st.DrawFn) -> dict[str, Any]:
    x1, y1 = draw(_coord), draw(_coord)
    box: dict[str, Any] = {"box": [x1, y1, x1 + draw(st.integers(1, 40)), y1 + 5]}
    if draw(st.booleans()):
        box["phrase"] = draw(st.one_of(st.none(), _text))
    if draw(st.booleans()):
        box["anatomy"] = draw(st.one_of(st.none(), st.sampled_from(["left lung", "heart"])))
    return box


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    task = draw(st.sampled_from(TASKS))
    rec: dict[str, Any] = {
        "id": draw(_name.filter(str.strip)),
        "image": draw(st.sampled_from(["a.png", "img/b.jpg", "x y.png"])),
        "source": draw(st.sampled_from(["mimic-cxr", "phantom-a", "own"])),
        "task": task,
        "split": draw(st.sampled_from(["train", "validate", "test"])),
        "text": draw(_text.filter(str.strip)) if task == "report" else draw(_text),
    }
    optional = {
        "prompt": st.one_of(st.none(), _text),
        "answer": st.one_of(st.none(), _text),
        "labels": st.one_of(st.none(), _labels),
        "boxes": st.one_of(st.none(), st.lists(boxes(), max_size=3)),
        "laterality_sensitive": st.one_of(st.none(), st.booleans()),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            rec[name] = draw(strategy)
    if rec.get("answer") is not None and draw(st.booleans()):
        rec["rationale"] = draw(_text)
    if draw(st.booleans()):
        rec["hard_id"] = draw(st.one_of(st.none(), _name.filter(str.strip)))
    keys = list(rec)
    order = draw(st.permutations(keys))
    return {k: rec[k] for k in order}


@st.composite
def broken(draw: st.DrawFn, rec: dict[str, Any]) -> dict[str, Any]:
    """``rec`` with one breakage (or none)."""
    rec = json.loads(json.dumps(rec))
    kinds = ["none", "delete", "set", "unknown", "numeric id", "box", "label", "rationale"]
    kind = draw(st.sampled_from([*kinds, "hard_id"]))
    if kind == "delete":
        rec.pop(draw(st.sampled_from(REQUIRED)), None)
    elif kind == "set":
        field = draw(st.sampled_from(list(_core.MANIFEST_FIELDS)))
        rec[field] = draw(_junk)
    elif kind == "unknown":
        rec[draw(st.sampled_from(["lables", "extra", "Text"]))] = draw(_junk)
    elif kind == "numeric id":
        rec["id"] = draw(st.integers(0, 99) | st.floats(0, 99, allow_nan=False))
    elif kind == "box":
        box: dict[str, Any] = {"box": [1, 2, 30, 40]}
        how = draw(st.sampled_from(["coords", "coord", "key", "phrase", "anatomy", "whole"]))
        if how == "coords":
            box["box"] = draw(_junk)
        elif how == "coord":
            box["box"][draw(st.integers(0, 3))] = draw(_junk)
        elif how == "key":
            box[draw(st.sampled_from(["score", "label"]))] = 1
        elif how == "whole":
            box = draw(_junk)
        else:
            box[how] = draw(_junk)
        rec["boxes"] = [*(rec.get("boxes") or []), box]
    elif kind == "label":
        labels = dict(rec.get("labels") or {})
        labels[draw(st.sampled_from(["Edema", "zeta", "", " "]))] = draw(_junk)
        rec["labels"] = labels
    elif kind == "rationale":
        rec.pop("answer", None)
        rec["rationale"] = draw(st.sampled_from(["", "because"]))
    elif kind == "hard_id":
        rec["hard_id"] = rec.get("id") if draw(st.booleans()) else draw(st.sampled_from(["", " "]))
    return rec


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    rec = draw(valid_records())
    for _ in range(draw(st.integers(0, 2))):
        rec = draw(broken(rec))
    return rec


# -- tests -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_the_readers_agree(tmp_path_factory: pytest.TempPathFactory, record: dict) -> None:
    outcome, parquet = check_agreement(record, tmp_path_factory.mktemp("agree"))
    event(f"{outcome[0]}, parquet {'read' if parquet else 'n/a'}")
    event(f"packed columns {'read' if packed_row(record) is not None else 'n/a'}")
    if outcome[0] == "error":
        field, reason = outcome[1]
        event(f"refused: {field.split('[')[0].split('.')[0] if field else 'record'}")
        assert reason and reason.strip()


BASE = {"id": "r1", "image": "img/b.jpg", "source": "own", "task": "phrase_grounding",
        "split": "train", "text": "Left effusion."}  # fmt: skip

# (changes to BASE, None to delete a field), the field refused (None: accepted), reason fragment
CASES: list[tuple[dict[str, Any], str | None, str]] = [
    ({}, None, ""),
    (
        {"labels": {"zeta": 1, "Edema": 0, "No Finding": None}, "laterality_sensitive": False},
        None,
        "",
    ),
    ({"boxes": [{"anatomy": "heart", "box": [1, 2, 30, 40], "phrase": None}]}, None, ""),
    ({"task": "vqa", "text": "", "answer": "yes", "rationale": "blunted angle"}, None, ""),
    ({"task": "vqa", "answer": "yes", "hard_id": "r2"}, None, ""),
    ({"hard_id": "r1"}, "hard_id", "names the record itself"),
    ({"hard_id": 5}, "hard_id", "must be a string or null, got a number"),
    ({"source": None}, "source", "must be a string, got null"),
    ({"split": "  "}, "split", "must not be empty"),
    ({"text": 3}, "text", "must be a string, got a number"),
    ({"id": 7}, "id", "must be a string, got a number"),
    ({"task": "report", "text": ""}, "text", "non-empty report text"),
    ({"task": "caption"}, "task", 'unknown task "caption"'),
    ({"lables": {"Edema": 1}}, "lables", "unknown field"),
    ({"labels": {"Edema": 2}}, "labels.Edema", "must be 1, 0, -1 or null, got 2"),
    ({"labels": {"Edema": True}}, "labels.Edema", "got a boolean"),
    ({"labels": [1, 2]}, "labels", "expected an object"),
    ({"boxes": [{"box": [30, 2, 1, 40]}]}, "boxes[0].box", "needs x1 < x2 and y1 < y2"),
    ({"boxes": [{"box": [1, 2, 3]}]}, "boxes[0].box", "[x1, y1, x2, y2]"),
    ({"boxes": [{"box": [1, 2, 30, 40], "score": 1}]}, "boxes[0].score", "unknown field"),
    ({"boxes": [{"anatomy": " ", "box": [1, 2, 30, 40]}]}, "boxes[0].anatomy", "non-empty"),
    ({"rationale": "why"}, "rationale", "a rationale needs an answer"),
    ({"laterality_sensitive": 1}, "laterality_sensitive", "true or false"),
]
CASES += [({name: None, "_delete": name}, name, "missing (a required field)") for name in REQUIRED]


@pytest.mark.parametrize(("change", "field", "fragment"), CASES)
def test_the_parquet_leg_applies(
    tmp_path: Path, change: dict[str, Any], field: str | None, fragment: str
) -> None:
    """Typical records, valid and broken: all three readers, Parquet included, agree, and the
    outcome is the expected one (hand-written)."""
    record = {**BASE, **{k: v for k, v in change.items() if k != "_delete"}}
    if "_delete" in change:
        del record[change["_delete"]]
    outcome, parquet = check_agreement(record, tmp_path)
    assert parquet, "pyarrow should be able to store this record"
    if field is None:
        assert outcome[0] == "ok"
        out = json.loads(outcome[1])
        assert list(out)[:6] == list(REQUIRED)
    else:
        assert outcome[0] == "error" and outcome[1][0] == field
        assert fragment in outcome[1][1]


def test_normalised_content_is_the_schemas(tmp_path: Path) -> None:
    """The accepted content, checked by hand: defaults filled, labels CheXpert-first as ints,
    boxes as floats, a null phrase as "", answer/rationale only when set."""
    record = {**BASE, "labels": {"zeta": 1.0, "Pleural Effusion": -1, "Edema": None},
              "boxes": [{"box": [1, 2, 30, 40], "phrase": None}]}  # fmt: skip
    outcome, _ = check_agreement(record, tmp_path)
    assert json.loads(outcome[1]) == {
        **BASE,
        "prompt": None,
        "labels": {"Edema": None, "Pleural Effusion": -1, "zeta": 1},
        "boxes": [{"box": [1.0, 2.0, 30.0, 40.0], "phrase": "", "anatomy": None}],
        "laterality_sensitive": True,
    }
    assert outcome[1].index('"Edema"') < outcome[1].index('"Pleural Effusion"')
    assert '"zeta": 1,' in outcome[1] or '"zeta": 1}' in outcome[1]
    assert "answer" not in outcome[1] and "rationale" not in outcome[1]
    assert "hard_id" not in outcome[1]


def test_values_json_cannot_hold_are_refused_where_they_stand() -> None:
    for bad, field in [
        ({"boxes": [{"box": [0, 0, float("inf"), 9]}]}, "boxes[0].box[2]"),
        ({"labels": {"Edema": float("nan")}}, "labels.Edema"),
        ({"prompt": b"bytes"}, "prompt"),
        ({"labels": {1: 1}}, "labels"),
    ]:
        with pytest.raises(ManifestError) as info:
            validate_record({**BASE, **bad})
        assert info.value.field == field


# Breakages the packed schema's types can hold, so that only the packed reader's own checks can
# refuse them: (changes to BASE, field refused, reason fragment).
COLUMN_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"id": " "}, "id", "must not be empty"),
    ({"split": ""}, "split", "must not be empty"),
    ({"task": "caption"}, "task", 'unknown task "caption"'),
    ({"task": "report", "text": " "}, "text", "non-empty report text"),
    ({"rationale": "why"}, "rationale", "a rationale needs an answer"),
    ({"hard_id": "r1"}, "hard_id", "names the record itself"),
    ({"hard_id": " "}, "hard_id", "non-empty"),
    ({"labels": {"Edema": 2}}, "labels.Edema", "must be 1, 0, -1 or null, got 2"),
    ({"labels": {" ": 1}}, "labels", "label names must not be empty"),
    ({"boxes": [{"box": [1, 2, 30, 40]}, {"box": [30, 2, 1, 40]}]}, "boxes[1].box", "x1 < x2"),
    ({"boxes": [{"box": [1, 2, 30, 40], "anatomy": ""}]}, "boxes[0].anatomy", "non-empty"),
]


@pytest.mark.parametrize(("change", "field", "fragment"), COLUMN_CASES)
def test_the_packed_reader_refuses_what_the_validator_refuses(
    tmp_path: Path, change: dict[str, Any], field: str, fragment: str
) -> None:
    record = {**BASE, **change}
    assert packed_row(record) is not None
    outcome, _ = check_agreement(record, tmp_path)
    assert outcome[0] == "error" and outcome[1][0] == field and fragment in outcome[1][1]


def test_packed_columns_refuse_a_duplicate_id_and_a_nan_coordinate(tmp_path: Path) -> None:
    """What JSON lines cannot hold or one record cannot show: named by row and field."""
    rows = [packed_row({**BASE, "id": i}) for i in ("a", "b", "a")]
    nan = packed_row({**BASE, "id": "c", "boxes": [{"box": [1, 2, 3, 4]}]})
    assert nan is not None and None not in rows
    nan["boxes"][0]["x2"] = float("nan")
    for table, (row, field, fragment) in [
        (rows, (3, "id", 'duplicate id "a" (first on row 1)')),
        ([nan], (1, "boxes[0].box", "coordinates must be finite numbers")),
    ]:
        path = tmp_path / "m.arrow"
        with pa.ipc.new_file(path, PACKED) as w:
            w.write_table(pa.Table.from_pylist(table, schema=PACKED))
        with pytest.raises(ManifestError) as info:
            ga.ManifestDataset(path, image_size=(8, 8))
        e = info.value
        assert (e.path, e.row, e.row_kind, e.field) == (str(path), row, "row", field)
        assert fragment in e.reason
