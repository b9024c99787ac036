"""Hostile manifests, caches and configurations (third round), each attack built here: Parquet
files that decode to gigabytes from a few kilobytes, corrupt Parquet files, and manifests, caches
and configurations that are not regular files (a FIFO, ``/dev/zero``). Every attack runs in a
child process under an address-space cap of 2 GiB beyond what its imports mapped (``RLIMIT_AS``:
an abort or an out-of-memory is a failure) with a deadline, and must give the documented one-line
error within 5 s."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradatim.manifest.common import PARQUET_MAX_BYTES, read_manifest, write_manifest

CAP = 2 << 30
RECORD = {"id": "a", "image": "x.png", "source": "s", "task": "report", "split": "train",
          "text": "Normal chest."}  # fmt: skip


def _child(code: str, timeout: float = 120) -> list[str]:
    """Run ``code`` in a child whose address space is capped; its stdout lines. The code calls
    ``cap_beyond()`` after its imports: the cap is then 2 GiB more than the imports mapped (torch
    alone maps 3 GB of address space as it loads, so an absolute cap would fail its import)."""
    capped = textwrap.dedent(f"""
        import resource
        def cap_beyond():
            mapped = [int(line.split()[1]) * 1024 for line in open("/proc/self/status")
                      if line.startswith("VmSize")][0]
            resource.setrlimit(resource.RLIMIT_AS, (mapped + {CAP}, mapped + {CAP}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", capped + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def _table(n: int) -> pa.Table:
    """``n`` valid manifest rows in the Parquet manifest's schema."""
    from gradatim.manifest.common import _parquet_schema

    rows = [
        {**RECORD, "id": f"r{i}", "prompt": None, "answer": None, "rationale": None,
         "hard_id": None, "labels": [], "boxes": [], "laterality_sensitive": True}
        for i in range(n)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=_parquet_schema())


def _write_bomb(table: pa.Table, path: Path) -> int:
    # store_schema=False: the file says "string", as any writer's would; the dictionary is
    # written once, and zstd makes its megabytes of one letter a few bytes
    pq.write_table(
        table, path, compression="zstd", compression_level=19, store_schema=False,
        dictionary_pagesize_limit=1 << 30,
    )  # fmt: skip
    return path.stat().st_size


def _text_bomb(path: Path, rows: int = 1024, size: int = 4 << 20) -> int:
    """One dictionary-encoded ``size``-byte ``text`` used by every one of ``rows`` rows."""
    table = _table(rows)
    text = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, np.int32)), pa.array(["a" * size])
    )
    return _write_bomb(table.set_column(table.schema.get_field_index("text"), "text", text), path)


def _phrase_bomb(path: Path, boxes: int = 640, size: int = 4 << 20) -> int:
    """One row whose ``boxes`` repeat one dictionary-encoded ``size``-byte phrase."""
    table = _table(1)
    phrase = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(boxes, np.int32)), pa.array(["p" * size])
    )
    coords = pa.array([[0.1, 0.1, 0.2, 0.2]] * boxes, pa.list_(pa.float64()))
    struct = pa.StructArray.from_arrays(
        [coords, phrase, pa.nulls(boxes, pa.string())], names=["box", "phrase", "anatomy"]
    )
    column = pa.ListArray.from_arrays(pa.array([0, boxes], pa.int32()), struct)
    return _write_bomb(
        table.set_column(table.schema.get_field_index("boxes"), "boxes", column), path
    )


def test_parquet_bombs_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A few kilobytes that decode to 4 GiB (1024 rows sharing a 4 MiB text) or 2.7 GB (one row
    of 640 boxes sharing a 4 MiB phrase): ManifestError from read_manifest, ManifestDataset and
    `gradatim manifest validate` (exit 2, one line), each within 5 s under a 2 GiB cap."""
    text, phrase = tmp_path / "text.parquet", tmp_path / "phrase.parquet"
    assert _text_bomb(text) < 16_000 and _phrase_bomb(phrase) < 16_000
    lines = _child(f"""
        import contextlib, io, time
        import gradatim as ga
        import gradatim.data.dataset, pyarrow.parquet
        from gradatim.cli import main
        from gradatim.manifest.common import read_manifest
        cap_beyond()
        for path in ({str(text)!r}, {str(phrase)!r}):
            for name, call in (("read", read_manifest),
                               ("dataset", lambda p: ga.ManifestDataset(p, image_size=(8, 8)))):
                start = time.perf_counter()
                try:
                    call(path)
                    print(name, "read", path)
                except Exception as e:
                    print(name, type(e).__name__, f"{{time.perf_counter() - start:.2f}}", "|", e)
            err = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(err):
                rc = main(["manifest", "validate", path])
            print("cli", rc, f"{{time.perf_counter() - start:.2f}}", "|", repr(err.getvalue()))
    """)
    assert len(lines) == 6, lines
    for line in lines:
        kind, outcome, seconds, message = line.split(" ", 3)
        assert float(seconds) < 5.0, line
        if kind == "cli":
            assert outcome == "2", line
            err = ast.literal_eval(message.removeprefix("| "))
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert err.startswith("gradatim manifest validate: error: ") and ".parquet" in err
            assert f"more than the {PARQUET_MAX_BYTES} bytes" in err
        else:
            assert outcome == "ManifestError", line
            assert ".parquet" in message and f"more than the {PARQUET_MAX_BYTES}" in message


def test_the_limit_is_on_what_the_rows_expand_to(tmp_path: Path) -> None:
    """The same file is read under a larger limit, and refused under a smaller one: the count
    is the expanded size (each use of a dictionary value), not the file's."""
    from gradatim.manifest.common import parquet_rows

    path = tmp_path / "small.parquet"
    _text_bomb(path, rows=20, size=10_000)
    assert len(parquet_rows(path, max_bytes=1 << 20)) == 20
    with pytest.raises(Exception, match=r"expand to \d+ bytes, more than the 100000 bytes"):
        parquet_rows(path, max_bytes=100_000)
    # an honest manifest reads as before, dictionary-encoded or not
    box = {"box": [1, 2, 3, 4], "phrase": "p", "anatomy": None}
    records = [
        {**RECORD, "id": f"r{i}", "boxes": [box] * (i % 3), "labels": {"Edema": 1}}
        for i in range(3000)
    ]
    written = write_manifest(records, tmp_path / "honest.parquet")
    again = write_manifest(records, tmp_path / "honest.jsonl")
    assert read_manifest(written) == read_manifest(again)


def _fuzzer() -> object:
    spec = importlib.util.spec_from_file_location(
        "parquet_mutate", Path(__file__).parents[1] / "fuzz" / "parquet_mutate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corrupt_parquet_is_one_manifest_error(tmp_path: Path) -> None:
    """Mutants of manifests written by write_manifest (the fuzzer's mutations, a fixed seed),
    truncated files and a string that is not UTF-8: each reads, or raises ManifestError in one
    line naming the file; never ArrowInvalid, OSError, UnicodeDecodeError or an abort."""
    import random

    fuzz = _fuzzer()
    seeds = fuzz.seeds(tmp_path)  # type: ignore[attr-defined]
    rng = random.Random(22)
    paths = []
    for k in range(300):
        path = tmp_path / f"mutant{k}.parquet"
        path.write_bytes(fuzz.mutate(rng.choice(seeds), seeds, rng))  # type: ignore[attr-defined]
        paths.append(path)
    for k, cut in enumerate((0, 4, 12, len(seeds[0]) // 2, len(seeds[0]) - 9)):
        path = tmp_path / f"cut{k}.parquet"
        path.write_bytes(seeds[0][:cut])
        paths.append(path)
    plain = tmp_path / "plain.parquet"
    pq.write_table(_table(3), plain, compression="none")
    data = plain.read_bytes()
    assert data.count(b"Normal chest.") >= 1
    latin = tmp_path / "latin.parquet"
    latin.write_bytes(data.replace(b"Normal chest.", b"Norm\xe9l chest."))
    paths.append(latin)
    lines = _child(f"""
        import pyarrow.parquet
        from gradatim.errors import ManifestError
        from gradatim.manifest.common import read_manifest
        cap_beyond()
        for path in {[str(p) for p in paths]!r}:
            try:
                read_manifest(path)
                print("ok")
            except ManifestError as e:
                text = str(e)
                one = len(text.splitlines()) == 1 and path in text
                print("error", one, text.replace("\\n", " "))
    """)
    assert len(lines) == len(paths)
    assert all(line.startswith(("ok", "error True")) for line in lines), [
        line for line in lines if not line.startswith(("ok", "error True"))
    ]
    assert sum(line.startswith("error") for line in lines) > 100  # the mutants reach the reader
    assert "not UTF-8" in lines[-1] and "row 1" in lines[-1]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_manifests_caches_and_configs_must_be_regular_files(tmp_path: Path) -> None:
    """A FIFO would block the open forever and /dev/zero would be read until memory runs out:
    manifests (JSONL, Parquet, packed, a file:// URL), a cache's files, a training configuration
    and a prediction file are refused before they are opened, in one line naming the file."""
    fifo_names = ["m.jsonl", "m.parquet", "m.arrow", "config.toml", "preds.jsonl"]
    for name in fifo_names:
        os.mkfifo(tmp_path / name)
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    (tmp_path / "zero.parquet").symlink_to("/dev/zero")
    (tmp_path / "dir.jsonl").mkdir()
    # a cache whose cache.json is a FIFO, of a real manifest
    (tmp_path / "x.png").write_bytes(b"")  # never decoded: the cache open fails first
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({**RECORD, "image": "x.png"}) + "\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / "cache.json")
    manifests = ["m.jsonl", "m.parquet", "m.arrow", "zero.jsonl", "zero.parquet", "dir.jsonl"]
    lines = _child(f"""
        import contextlib, io, time
        import gradatim as ga
        from gradatim.cli import main
        from gradatim.evaluate import read_predictions
        from gradatim.manifest.common import read_manifest
        import gradatim.data.dataset, pyarrow.parquet
        cap_beyond()
        tmp = {str(tmp_path)!r}
        def attempt(name, call):
            start = time.perf_counter()
            try:
                call()
                print(name, "| read")
            except Exception as e:
                seconds = time.perf_counter() - start
                print(name, "|", type(e).__name__, "|", f"{{seconds:.2f}}", "|", e)
        for m in {manifests!r}:
            path = f"{{tmp}}/{{m}}"
            attempt("read " + m, lambda: read_manifest(path))
            attempt("dataset " + m, lambda: ga.ManifestDataset(path, image_size=(8, 8)))
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(["manifest", "validate", path])
            text = err.getvalue()
            print("cli " + m, "|", rc, "|", text.count("\\n"), "|", text.strip())
        attempt("url m.jsonl", lambda: read_manifest(f"file://{{tmp}}/m.jsonl"))
        attempt("predictions", lambda: read_predictions(f"{{tmp}}/preds.jsonl"))
        attempt("cache", lambda: ga.ManifestDataset(f"{{tmp}}/good.jsonl", image_size=(8, 8),
                                                     cache=f"{{tmp}}/cache"))
    """)
    by_name = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines}
    for m in manifests:
        for how in ("read", "dataset"):
            kind, seconds, message = by_name[f"{how} {m}"]
            assert kind == "ManifestError" and float(seconds) < 5.0, (how, m, kind, message)
            assert m in message and "only regular files are read" in message, message
            assert ("a directory" if m.startswith("dir") else "a FIFO, socket or device") in message
        rc, newlines, message = by_name[f"cli {m}"]
        assert (rc, newlines) == ("2", "1"), message
        assert message.startswith("gradatim manifest validate: error: ") and m in message
    kind, _, message = by_name["url m.jsonl"]
    assert kind == "ManifestError" and "m.jsonl" in message and "not a regular file" in message
    kind, _, message = by_name["predictions"]
    assert kind == "InvalidArgumentError" and "preds.jsonl: not a regular file" in message
    kind, _, message = by_name["cache"]
    assert kind == "InvalidArgumentError", message
    assert "cache.json: not a regular file" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_a_training_configuration_must_be_a_regular_file(tmp_path: Path) -> None:
    """A FIFO or /dev/zero as the TOML configuration: ConfigError before it is opened, also as
    `gradatim train`'s one line (exit 2); bytes that are not UTF-8 are a ConfigError too."""
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "zero.toml").symlink_to("/dev/zero")
    (tmp_path / "latin.toml").write_bytes(b'[model]\nname = "caf\xe9"\n')
    lines = _child(f"""
        import contextlib, io
        from gradatim.cli import main
        from gradatim.train.config import load_config
        cap_beyond()
        for name in ("fifo.toml", "zero.toml", "latin.toml"):
            path = {str(tmp_path)!r} + "/" + name
            try:
                load_config(path)
                print(name, "| read")
            except Exception as e:
                print(name, "|", type(e).__name__, "|", e)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(["train", path])
            print(name, "| cli", rc, err.getvalue().count("\\n"), "|", err.getvalue().strip())
    """)
    assert len(lines) == 6, lines
    for name, line, cli in zip(("fifo", "zero", "latin"), lines[::2], lines[1::2], strict=True):
        _, kind, message = line.split(" | ")
        assert kind == "ConfigError" and f"{name}.toml" in message, line
        assert ("not UTF-8" if name == "latin" else "not a regular file") in message
        assert cli.split(" | ")[1] == "cli 2 1", cli
