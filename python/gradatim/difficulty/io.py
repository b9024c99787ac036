"""Reading and writing for the difficulty tool: embeddings, id tables, manifests, results.

Formats (docs/design.md, "Decisions that hold everywhere": no pickle anywhere):

- Embeddings: ``.npy`` (``np.load(..., allow_pickle=False)``, memory-mapped) or ``.safetensors``
  (one tensor, or the one named by ``key``).
- Results: Parquet with columns ``id`` (string), ``dif1``, ``dif2``, ``dif`` (float64) and
  ``classes`` (``list<string>``), which ``RRGCLScheduler.from_file`` reads; or safetensors with
  tensors ``dif1``, ``dif2``, ``dif`` (float64), the classes as CSR ``class_offsets`` /
  ``class_ids`` (int64) and the ids and class names as JSON in the header metadata.
- Summary: a JSON file beside the result (:func:`summary_path`).

The result file holds no timings or host names, so the same inputs give the same bytes (what the
``torchrun`` test compares); run-specific facts go to the JSON summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gradatim.errors import InvalidArgumentError

__all__ = [
    "load_embeddings",
    "save_embeddings",
    "read_id_table",
    "read_manifest_samples",
    "write_difficulty",
    "read_difficulty",
    "read_difficulty_table",
    "write_summary",
    "summary_path",
    "ManifestSamples",
]

_FORMAT = "gradatim.difficulty/1"


def _suffix(path: str | os.PathLike[str]) -> str:
    return Path(path).suffix.lower()


def load_embeddings(path: str | os.PathLike[str], key: str | None = None) -> np.ndarray:
    """A 2-D embedding matrix from ``.npy`` (memory-mapped) or ``.safetensors``.

    ``key`` selects a tensor of a safetensors file holding several (required then)."""
    p = Path(path)
    ext = _suffix(p)
    if ext == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # object arrays: would need pickle, never loaded
            raise InvalidArgumentError(f"{p}: {exc} (pickled arrays are never loaded)") from None
    elif ext == ".safetensors":
        from safetensors import safe_open

        with safe_open(os.fspath(p), framework="numpy") as f:
            keys = list(f.keys())
            if key is None:
                if len(keys) != 1:
                    raise InvalidArgumentError(
                        f"{p}: holds tensors {keys}; say which with a key (--visual-key/--text-key)"
                    )
                key = keys[0]
            if key not in keys:
                raise InvalidArgumentError(f"{p}: no tensor {key!r} (it has {keys})")
            arr = f.get_tensor(key)
    else:
        raise InvalidArgumentError(f"{p}: embeddings must be .npy or .safetensors")
    if arr.ndim != 2:
        raise InvalidArgumentError(
            f"{p}: expected a 2-D (samples, features) array, got {arr.shape}"
        )
    return arr


def save_embeddings(
    path: str | os.PathLike[str], array: ArrayLike, key: str = "embeddings"
) -> Path:
    """Write a 2-D embedding matrix as ``.npy`` or ``.safetensors`` (tensor ``key``)."""
    p = Path(path)
    arr = np.ascontiguousarray(array)
    if _suffix(p) == ".npy":
        np.save(p, arr, allow_pickle=False)
    elif _suffix(p) == ".safetensors":
        from safetensors.numpy import save_file

        save_file({key: arr}, os.fspath(p), metadata={"format": _FORMAT})
    else:
        raise InvalidArgumentError(f"{p}: embeddings must be written as .npy or .safetensors")
    return p


def _labels_dict(labels: Any) -> Mapping[str, Any] | None:
    if labels is None:
        return None
    if isinstance(labels, list):  # a pyarrow map<string, _> column: [(key, value), ...]
        return dict(labels)
    return labels  # type: ignore[no-any-return]


def _classes_of(row: Mapping[str, Any], where: str) -> list[str] | None:
    from gradatim.manifest.classes import sample_classes

    if row.get("classes") is not None:
        cs = row["classes"]
        if isinstance(cs, str) or not isinstance(cs, Sequence):
            raise InvalidArgumentError(f"{where}: 'classes' must be a list of class names")
        return [str(c) for c in cs]
    if "labels" in row:
        return sample_classes(_labels_dict(row["labels"]))
    return None


def read_id_table(path: str | os.PathLike[str]) -> tuple[list[str], list[list[str]] | None]:
    """Sample ids (and classes, when present) for pre-computed embeddings, in row order.

    ``.txt``: one id per line. ``.jsonl`` / ``.parquet``: an ``id`` column, and optionally
    ``classes`` (list of names) or CheXpert-style ``labels`` (turned into classes with
    :func:`gradatim.manifest.sample_classes`); a manifest works as such a table."""
    p = Path(path)
    ext = _suffix(p)
    rows: list[dict[str, Any]]
    if ext == ".txt":
        ids = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        return ids, None
    if ext == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(p).to_pylist()
    elif ext in (".jsonl", ".json"):
        rows = []
        with open(p, encoding="utf-8") as f:
            for i, line in enumerate(f, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InvalidArgumentError(
                            f"{p}: line {i}: invalid JSON ({exc.msg})"
                        ) from None
    else:
        raise InvalidArgumentError(f"{p}: id table must be .txt, .jsonl or .parquet")
    ids: list[str] = []
    classes: list[list[str]] = []
    have_classes = True
    for i, row in enumerate(rows, start=1):
        where = f"{p}: row {i}"
        if not isinstance(row, Mapping) or "id" not in row or row["id"] in (None, ""):
            raise InvalidArgumentError(f"{where}: field 'id': missing")
        ids.append(str(row["id"]))
        cs = _classes_of(row, where)
        if cs is None:
            have_classes = False
        else:
            classes.append(cs)
    if len(set(ids)) != len(ids):
        raise InvalidArgumentError(f"{p}: duplicate ids")
    return ids, (classes if have_classes else None)


class ManifestSamples:
    """What the difficulty tool needs from a manifest: ids, resolved image paths, report texts
    and RRGCL classes, in manifest order."""

    def __init__(
        self, ids: list[str], images: list[Path], texts: list[str], classes: list[list[str]]
    ) -> None:
        self.ids, self.images, self.texts, self.classes = ids, images, texts, classes

    def __len__(self) -> int:
        return len(self.ids)


def read_manifest_samples(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    allow_outside_root: bool = False,
    limit: int | None = None,
) -> ManifestSamples:
    """Read a JSONL/Parquet manifest with :func:`gradatim.manifest.read_manifest` (which
    validates it and names the file, line and field of a bad record).

    Image paths are resolved under ``root`` (default: the manifest's folder); an absolute path or
    one climbing out of the root is an error unless ``allow_outside_root``. Classes per
    :func:`gradatim.manifest.sample_classes`. ``limit`` keeps the first records only."""
    from gradatim.manifest import read_manifest, sample_classes

    p = Path(path)
    records = read_manifest(p)
    if limit is not None:
        records = records[:limit]
    base = Path(root) if root is not None else p.resolve().parent
    base_resolved = base.resolve()
    ids, images, texts, classes = [], [], [], []
    for i, rec in enumerate(records, start=1):
        img = Path(rec["image"])
        full = img if img.is_absolute() else base / img
        if not allow_outside_root:
            inside = not img.is_absolute() and full.resolve().is_relative_to(base_resolved)
            if not inside:
                raise InvalidArgumentError(
                    f"{p}: record {i} (id {rec['id']!r}): field 'image': {rec['image']!r} is "
                    f"outside the manifest root {base} (pass --allow-outside-root to allow it)"
                )
        ids.append(rec["id"])
        images.append(full)
        texts.append(rec.get("text") or "")
        classes.append(sample_classes(rec.get("labels")))
    return ManifestSamples(ids, images, texts, classes)


def _columns(
    ids: Sequence[str],
    dif1: ArrayLike,
    dif2: ArrayLike,
    dif: ArrayLike,
    classes: Sequence[Sequence[str]],
) -> tuple[
    list[str], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], list[list[str]]
]:
    cols = [np.ascontiguousarray(x, dtype=np.float64) for x in (dif1, dif2, dif)]
    n = len(ids)
    for name, c in zip(("dif1", "dif2", "dif"), cols, strict=True):
        if c.shape != (n,):
            raise InvalidArgumentError(f"write_difficulty: {name} has shape {c.shape}, not ({n},)")
    if len(classes) != n:
        raise InvalidArgumentError(f"write_difficulty: {len(classes)} class lists for {n} ids")
    return (
        [str(i) for i in ids],
        cols[0],
        cols[1],
        cols[2],
        [[str(c) for c in cs] for cs in classes],
    )


def write_difficulty(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    dif1: ArrayLike,
    dif2: ArrayLike,
    dif: ArrayLike,
    classes: Sequence[Sequence[str]],
) -> Path:
    """Write per-sample difficulty as Parquet (``.parquet``) or safetensors (``.safetensors``);
    see the module docstring for the layout."""
    p = Path(path)
    ids_, d1, d2, d, cls = _columns(ids, dif1, dif2, dif, classes)
    if _suffix(p) == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("id", pa.string()),
                ("dif1", pa.float64()),
                ("dif2", pa.float64()),
                ("dif", pa.float64()),
                ("classes", pa.list_(pa.string())),
            ],
            metadata={b"format": _FORMAT.encode()},
        )
        table = pa.table([ids_, d1, d2, d, cls], schema=schema)
        pq.write_table(table, p)
    elif _suffix(p) == ".safetensors":
        from safetensors.numpy import save_file

        names = sorted({c for cs in cls for c in cs})
        index = {c: i for i, c in enumerate(names)}
        offsets = np.zeros(len(cls) + 1, dtype=np.int64)
        np.cumsum([len(cs) for cs in cls], out=offsets[1:])
        class_ids = np.asarray([index[c] for cs in cls for c in cs], dtype=np.int64)
        save_file(
            {"dif1": d1, "dif2": d2, "dif": d, "class_offsets": offsets, "class_ids": class_ids},
            os.fspath(p),
            metadata={
                "format": _FORMAT,
                "ids": json.dumps(ids_),
                "class_names": json.dumps(names),
            },
        )
    else:
        raise InvalidArgumentError(f"{p}: the result must be .parquet or .safetensors")
    return p


def read_difficulty_table(path: str | os.PathLike[str]) -> dict[str, Any]:
    """All columns of a file written by :func:`write_difficulty`: ``ids`` (list of str),
    ``dif1``, ``dif2``, ``dif`` (float64 arrays), ``classes`` (list of lists of str)."""
    p = Path(path)
    if _suffix(p) == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(p)
        missing = [c for c in ("id", "dif", "classes") if c not in t.column_names]
        if missing:
            raise InvalidArgumentError(f"{p}: not a difficulty file (no column {missing[0]!r})")

        def col(name: str) -> NDArray[np.float64]:
            if name not in t.column_names:
                return np.full(t.num_rows, np.nan)
            return t.column(name).to_numpy(zero_copy_only=False).astype(np.float64)

        return {
            "ids": [str(x) for x in t.column("id").to_pylist()],
            "dif1": col("dif1"),
            "dif2": col("dif2"),
            "dif": col("dif"),
            "classes": [list(c or []) for c in t.column("classes").to_pylist()],
        }
    if _suffix(p) == ".safetensors":
        from safetensors import safe_open

        with safe_open(os.fspath(p), framework="numpy") as f:
            meta = f.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise InvalidArgumentError(f"{p}: not a gradatim difficulty file")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        names = json.loads(meta["class_names"])
        off, cid = tensors["class_offsets"], tensors["class_ids"]
        classes = [[names[j] for j in cid[off[i] : off[i + 1]]] for i in range(len(off) - 1)]
        return {
            "ids": json.loads(meta["ids"]),
            "dif1": tensors["dif1"],
            "dif2": tensors["dif2"],
            "dif": tensors["dif"],
            "classes": classes,
        }
    raise InvalidArgumentError(f"{p}: expected a .parquet or .safetensors difficulty file")


def read_difficulty(
    path: str | os.PathLike[str],
) -> tuple[list[str], NDArray[np.float64], list[list[str]]]:
    """``(ids, dif, classes)`` from a file written by ``gradatim difficulty`` (Parquet or
    safetensors): what the RRGCL scheduler needs (``RRGCLScheduler.from_file``)."""
    t = read_difficulty_table(path)
    return t["ids"], t["dif"], t["classes"]


def summary_path(out: str | os.PathLike[str]) -> Path:
    """Default summary path of a result file: ``dif.parquet`` -> ``dif.json``."""
    return Path(out).with_suffix(".json")


def write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> Path:
    """Write the run summary as indented JSON (keys in insertion order)."""
    p = Path(path)
    p.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return p
