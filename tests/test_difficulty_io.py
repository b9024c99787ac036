"""Result files (Parquet / safetensors), embedding files, id tables: round trips, no pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gradatim.difficulty import load_embeddings, read_difficulty, save_embeddings, write_difficulty
from gradatim.difficulty.io import read_difficulty_table, read_id_table
from gradatim.errors import InvalidArgumentError

IDS = ["s0", "s1", "s2", "s3"]
CLASSES = [["Edema"], ["Edema", "Cardiomegaly"], ["No Finding"], ["unlabeled"]]


def _write(path: Path) -> None:
    d1, d2 = np.array([1.0, 2.0, 3.0, 4.5]), np.array([0.1, -0.2, 0.3, 0.0])
    write_difficulty(path, IDS, d1, d2, d1 - d2, CLASSES)


@pytest.mark.parametrize("ext", [".parquet", ".safetensors"])
def test_result_round_trip(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"dif{ext}"
    _write(p)
    ids, dif, classes = read_difficulty(p)
    assert ids == IDS and classes == CLASSES
    np.testing.assert_array_equal(dif, [0.9, 2.2, 2.7, 4.5])
    table = read_difficulty_table(p)
    np.testing.assert_array_equal(table["dif1"], [1.0, 2.0, 3.0, 4.5])


def test_parquet_schema_and_scheduler_reads_it(tmp_path: Path) -> None:
    p = tmp_path / "dif.parquet"
    _write(p)
    schema = pq.read_schema(p)
    assert [f.name for f in schema] == ["id", "dif1", "dif2", "dif", "classes"]
    assert str(schema.field("classes").type) == "list<element: string>"
    from gradatim.curriculum import rrgcl

    sched = rrgcl.RRGCLScheduler.from_file(p, epochs=5)
    assert sorted(sched.class_names) == ["Cardiomegaly", "Edema", "No Finding", "unlabeled"]


@pytest.mark.parametrize("ext", [".npy", ".safetensors"])
def test_embeddings_round_trip(tmp_path: Path, ext: str) -> None:
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    p = save_embeddings(tmp_path / f"e{ext}", x)
    np.testing.assert_array_equal(load_embeddings(p), x)


def test_safetensors_key_selection(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    p = tmp_path / "both.safetensors"
    save_file({"visual": np.ones((2, 3), np.float32), "text": np.zeros((2, 4), np.float32)}, str(p))
    with pytest.raises(InvalidArgumentError, match="say which"):
        load_embeddings(p)
    assert load_embeddings(p, "text").shape == (2, 4)
    with pytest.raises(InvalidArgumentError, match="no tensor 'image'"):
        load_embeddings(p, "image")


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidArgumentError, match="never loaded"):
        load_embeddings(p)


def test_id_tables(tmp_path: Path) -> None:
    txt = tmp_path / "ids.txt"
    txt.write_text("a\nb\n\nc\n")
    assert read_id_table(txt) == (["a", "b", "c"], None)
    jl = tmp_path / "ids.jsonl"
    rows = [
        {"id": "a", "labels": {"Edema": 1, "Support Devices": 1}},
        {"id": "b", "labels": {"No Finding": 1}},
        {"id": "c", "labels": {"Support Devices": 1, "Edema": -1}},
    ]
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_id_table(jl) == (["a", "b", "c"], [["Edema"], ["No Finding"], ["unlabeled"]])
    jl.write_text('{"id": "a"}\n{"id": "a"}\n')
    with pytest.raises(InvalidArgumentError, match="duplicate ids"):
        read_id_table(jl)
    jl.write_text('{"name": "a"}\n')
    with pytest.raises(InvalidArgumentError, match="row 1: field 'id'"):
        read_id_table(jl)


def test_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=".parquet or .safetensors"):
        write_difficulty(tmp_path / "x.csv", ["a"], [1.0], [1.0], [1.0], [["c"]])
    with pytest.raises(InvalidArgumentError, match=".npy or .safetensors"):
        load_embeddings(tmp_path / "x.pt")
