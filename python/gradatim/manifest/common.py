"""Manifest records: the builder, the schema check, and the JSONL / Parquet writer and reader.

One record per image-text sample (docs/manifest.md, "Record schema")::

    {"id": "mimic-cxr/02aa804e-...", "image": "files/p10/p10000032/s50414267/02aa804e-....jpg",
     "source": "mimic-cxr", "task": "report", "split": "train",
     "text": "<findings> <impression>", "prompt": null,
     "labels": {"No Finding": 1, "Cardiomegaly": 0, ...},
     "boxes": [{"box": [x1, y1, x2, y2], "phrase": "...", "anatomy": "right lung" | null}],
     "laterality_sensitive": true}

Boxes are in the source image's pixels, ``x1 < x2`` and ``y1 < y2``. :func:`validate_record` is
the schema check that the converters, the phantom generator and the tests share; it calls the
core's manifest validator (``rust/core/src/data/manifest.rs``), the same one the loader reads
manifests with, so a record is accepted or refused alike everywhere. Its errors
(:class:`gradatim.errors.ManifestError`) name the file, the line or row, the field and the
reason, and never quote report text. Unknown fields are refused so that a misspelt field name is
an error rather than a silently missing value.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from gradatim import _core
from gradatim.errors import ManifestError

__all__ = [
    "TASKS",
    "FIELDS",
    "Where",
    "Conversion",
    "make_box",
    "make_record",
    "validate_record",
    "join_report",
    "join_image",
    "write_manifest",
    "read_manifest",
    "parquet_rows",
    "PARQUET_MAX_BYTES",
    "PARQUET_BATCH_ROWS",
    "not_regular",
    "open_text",
    "iter_csv",
    "parse_float",
    "SPLITS",
    "hash_split",
    "splitter",
    "normalize_split",
]

TASKS: tuple[str, ...] = tuple(_core.TASKS)
"""The task names a record may carry (CURE's templates plus report generation and VQA), in the
core's order (defined once, in the core)."""

VQA_FIELDS: tuple[str, ...] = ("answer", "rationale", "hard_id")
"""Optional fields of MedCLM's VQA records, written only when present. With an ``answer``, the
target is ``Reasoning: {rationale}\n\nAnswer: {answer}`` in the Easy and Medium stages and
``Answer: {answer}`` in the Hard stage; ``hard_id`` names another record (same data set, same
domain) whose image, prompt and answer the Hard stage uses instead of the record's own (MedCLM's
released ``image_path3``, ``question3``, ``answer3``; docs/manifest.md)."""

FIELDS: tuple[str, ...] = tuple(f for f in _core.MANIFEST_FIELDS if f not in VQA_FIELDS)
"""Record fields in the order they are written (the schema's field list is defined once, in the
core's manifest reader)."""


class Where(NamedTuple):
    """Where a record comes from, for error messages: a file and a 1-based line, row or entry."""

    path: str | None = None
    row: int | None = None
    row_kind: str = "line"

    def error(self, field: str | None, reason: str) -> ManifestError:
        """A :class:`ManifestError` at this place about ``field``."""
        return ManifestError(reason, self.path, self.row, field, self.row_kind)


def _where(where: Where | str | os.PathLike[str] | None) -> Where:
    if isinstance(where, Where):
        return where
    return Where(None if where is None else os.fspath(where))


def make_box(box: Sequence[float], phrase: str = "", anatomy: str | None = None) -> dict[str, Any]:
    """One ``boxes`` entry: ``[x1, y1, x2, y2]`` in source-image pixels, its phrase and anatomy."""
    return {"box": [float(v) for v in box], "phrase": phrase, "anatomy": anatomy}


def make_record(
    *,
    id: str,
    image: str,
    source: str,
    task: str,
    split: str,
    text: str,
    prompt: str | None = None,
    labels: Mapping[str, int | None] | None = None,
    boxes: Iterable[Mapping[str, Any]] = (),
    laterality_sensitive: bool = True,
) -> dict[str, Any]:
    """Build a record with every field, in :data:`FIELDS` order (not validated; see
    :func:`validate_record`)."""
    return {
        "id": id,
        "image": image,
        "source": source,
        "task": task,
        "split": split,
        "text": text,
        "prompt": prompt,
        "labels": dict(labels or {}),
        "boxes": [dict(b) for b in boxes],
        "laterality_sensitive": laterality_sensitive,
    }


def validate_record(
    record: Mapping[str, Any], where: Where | str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Check one record against the manifest schema (docs/manifest.md); return it normalised.

    The check is the core's (the loader's reader uses the same one). Normalised: fields in
    :data:`FIELDS` order, the optional ones filled with their defaults (``prompt`` None,
    ``labels`` {}, ``boxes`` [], ``laterality_sensitive`` True; ``answer``, ``rationale`` and
    ``hard_id`` only when set), label values as ``int`` (CheXpert labels first, in
    :data:`~gradatim.manifest.classes.CHEXPERT_LABELS` order, then the others as given), box
    coordinates as ``float``. ``where`` (a :class:`Where`, or just a path) places errors:
    :class:`gradatim.errors.ManifestError` names the file, the line/row, the field and the reason.
    """
    w = _where(where)
    out: dict[str, Any] = _core.validate_record(record, w.path, w.row, w.row_kind)
    return out


_SPACE = re.compile(r"\s+")


def join_report(*sections: str | None) -> str:
    """Join report sections (findings, impression) into one text: whitespace runs collapsed to
    one space, empty sections dropped, sections separated by one space."""
    parts = [_SPACE.sub(" ", s).strip() for s in sections if s]
    return " ".join(p for p in parts if p)


def join_image(prefix: str | os.PathLike[str] | None, name: str) -> str:
    """The manifest ``image`` of file ``name`` under ``prefix`` (POSIX separators)."""
    if not prefix:
        return name
    return f"{os.fspath(prefix).replace(os.sep, '/').rstrip('/')}/{name}"


@dataclass
class Conversion:
    """What a converter produced: the records, and how many inputs it skipped for which reason.

    ``inputs`` counts the units the converter read (reports, images, annotation rows, ...);
    ``notes`` counts events that did not drop a record (a study without labels, ...).
    """

    source: str
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    inputs: int = 0
    on_error: str = "raise"
    notes: Counter[str] = field(default_factory=Counter)

    def reject(self, err: ManifestError) -> None:
        """Raise ``err`` (``on_error="raise"``) or count it as skipped (``"skip"``)."""
        if self.on_error != "skip":
            raise err
        self.skipped[f"invalid {err.field or 'record'}"] += 1

    def summary(self) -> str:
        """One line of counts (never any text or identifier), for logs."""
        line = f"{self.source}: {len(self.records)} records from {self.inputs} inputs"
        if self.skipped:
            line += "; skipped " + ", ".join(
                f"{n} ({why})" for why, n in sorted(self.skipped.items())
            )
        if self.notes:
            line += "; " + ", ".join(f"{n} {what}" for what, n in sorted(self.notes.items()))
        return line


def study_labels(
    labels: Mapping[str, Mapping[str, int | None]] | None, study: str | None, conv: Conversion
) -> dict[str, int | None]:
    """The CheXpert labels of ``study`` from a label table (a copy), counting studies it lacks."""
    if labels is None or study is None:
        return {}
    found = labels.get(study)
    if found is None:
        conv.notes["study without CheXpert labels"] += 1
        return {}
    return dict(found)


def _check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def _parquet_schema() -> Any:
    import pyarrow as pa

    box = pa.struct(
        [
            pa.field("box", pa.list_(pa.float64()), nullable=False),
            pa.field("phrase", pa.string(), nullable=False),
            pa.field("anatomy", pa.string()),
        ]
    )
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("image", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("task", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("text", pa.string(), nullable=False),
            pa.field("prompt", pa.string()),
            pa.field("answer", pa.string()),
            pa.field("rationale", pa.string()),
            pa.field("hard_id", pa.string()),
            pa.field("labels", pa.map_(pa.string(), pa.int8()), nullable=False),
            pa.field("boxes", pa.list_(box), nullable=False),
            pa.field("laterality_sensitive", pa.bool_(), nullable=False),
        ]
    )


def is_packed(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a packed manifest (``.arrow``, written by :func:`pack_manifest`
    or ``gradatim manifest pack``)."""
    return os.fspath(path).lower().endswith(".arrow")


def _is_parquet(path: str | os.PathLike[str], parquet: bool | None) -> bool:
    if parquet is not None:
        return parquet
    return os.fspath(path).lower().endswith((".parquet", ".pq"))


PARQUET_MAX_BYTES: int = _core.DEFAULT_MAX_BYTES
"""The most a Parquet manifest may decode to (1 GiB: the strings, numbers and nesting offsets of
all its rows, a dictionary-encoded value counted once per row that uses it): the same limit as an
image's decoded bytes (``max_bytes``), and within 16 MiB the largest JSONL or Parquet manifest read
from an object store. Checked from the footer's declared sizes before anything is decoded, then
batch by batch as the dictionary-encoded columns are read, before any value is expanded."""

PARQUET_BATCH_ROWS: int = 1024
"""Rows decoded at a time from a Parquet manifest."""


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """Why the local file ``path`` is not read (``"a directory; ..."``, ``"not a regular file
    (a FIFO, socket or device); ..."``), or None for a regular file: the images' rule, applied
    to manifests, caches, configurations and prediction files before they are opened (a FIFO
    would block the open forever, ``/dev/zero`` would be read until memory runs out). Symbolic
    links are followed; a missing file raises :class:`FileNotFoundError`."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
    return f"{kind}; only regular files are read"


def _check_regular(location: str) -> None:
    problem = not_regular(location)
    if problem is not None:
        raise ManifestError(problem, location)


def manifest_bytes(path: str | os.PathLike[str]) -> bytes:
    """A manifest file's bytes: a local path, or a URL of an object store (``s3://``,
    ``gs://``, ``az://``, ``http(s)://``, ``file://``) read by the core's storage client. A local
    file must be a regular file (:func:`not_regular`; else :class:`ManifestError`)."""
    location = os.fspath(path)
    if _core.is_remote(location) or location.startswith("file://"):
        return _core.read_bytes(location)
    _check_regular(location)
    return Path(location).read_bytes()


def manifest_root(path: str | os.PathLike[str]) -> str:
    """The folder a manifest's relative image paths are resolved against: the manifest's own
    folder (its URL up to the last ``/`` for a manifest in an object store)."""
    location = os.fspath(path)
    if _core.is_remote(location):
        return location.rsplit("/", 1)[0]
    if location.startswith("file://"):
        location = location[len("file://") :]
    return os.fspath(Path(location).resolve().parent)


def write_manifest(
    records: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    parquet: bool | None = None,
) -> Path:
    """Validate ``records`` and write them as JSONL (default) or Parquet (``parquet=True``, or a
    ``.parquet`` suffix). Ids must be unique. The file is written to a temporary name and moved
    into place, so a failed conversion never leaves a half-written manifest. Returns the path.
    """
    out = Path(path)
    clean: list[dict[str, Any]] = _core.read_manifest_rows(list(records), str(out), "record")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        if _is_parquet(out, parquet):
            import pyarrow as pa
            import pyarrow.parquet as pq

            os.close(fd)
            rows = [
                {**dict.fromkeys(VQA_FIELDS), **r, "labels": list(r["labels"].items())}
                for r in clean
            ]
            pq.write_table(pa.Table.from_pylist(rows, schema=_parquet_schema()), tmp)
        else:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                for r in clean:
                    f.write(json.dumps(r, ensure_ascii=False, allow_nan=False))
                    f.write("\n")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def read_manifest(
    path: str | os.PathLike[str], *, parquet: bool | None = None
) -> list[dict[str, Any]]:
    """Read and validate a JSONL, Parquet or packed (``.arrow``) manifest with the core's
    validator (the loader's).

    Blank JSONL lines are skipped; ids must be unique. Errors name the file, the line (JSONL) or
    row (Parquet, packed; 1-based), the field and the reason. Records come back normalised, as
    :func:`validate_record` returns them (Parquet's null ``answer``/``rationale``/``hard_id``
    mean absent).
    """
    name = os.fspath(path)
    if parquet is None and is_packed(name):
        out: list[dict[str, Any]] = _core.read_manifest_packed(name)
    elif _is_parquet(name, parquet):
        out = _core.read_manifest_rows(parquet_rows(name), name, "row")
    else:
        out = _core.read_manifest_jsonl(jsonl_text(name), name)
    return out


def jsonl_text(path: str | os.PathLike[str]) -> str:
    """A JSONL manifest's text: UTF-8, a leading byte-order mark dropped (as spreadsheet tools
    write one). Bytes that are not UTF-8 raise :class:`ManifestError` naming the file, the line
    and the column."""
    data = manifest_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ManifestError(
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); manifests are UTF-8",
            os.fspath(path),
            line,
        ) from None


def parquet_rows(
    path: str | os.PathLike[str], *, max_bytes: int = PARQUET_MAX_BYTES
) -> list[dict[str, Any]]:
    """The rows of a Parquet manifest as plain dicts, for the core's validator: pyarrow's map
    columns (``labels``, a list of pairs) become dicts, and null ``answer``/``rationale``/
    ``hard_id`` cells, which only mean "absent", are dropped.

    The file is untrusted: its footer's declared sizes are checked against ``max_bytes``
    (:data:`PARQUET_MAX_BYTES`) before anything is decoded; it is then read
    :data:`PARQUET_BATCH_ROWS` rows at a time with every string column kept dictionary-encoded,
    and the size the rows expand to (each dictionary value counted once per row that uses it) is
    added up and checked before any value is expanded. A file over the limit, a corrupt file and
    text that is not UTF-8 raise :class:`ManifestError` naming the file (and the row, where it is
    known); a local file must be a regular file."""
    import pyarrow as pa

    location = os.fspath(path)
    remote = _core.is_remote(location) or location.startswith("file://")
    if not remote:
        _check_regular(location)
    source = pa.BufferReader(manifest_bytes(location)) if remote else location
    try:
        batches, schema = _parquet_batches(source, location, max_bytes)
        rows: list[dict[str, Any]] = []
        plain = pa.schema([pa.field(f.name, _plain_type(f.type), f.nullable) for f in schema])
        for batch in batches:
            start = len(rows)
            try:
                try:  # dictionary columns expanded by Arrow first: faster than value by value
                    batch = batch.cast(plain)
                except pa.ArrowException:
                    pass
                rows.extend(batch.to_pylist())
            except UnicodeDecodeError:
                raise ManifestError(
                    "a string value is not UTF-8 text; manifests are UTF-8",
                    location,
                    start + 1,
                    None,
                    "row",
                ) from None
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, MemoryError) as e:
        if isinstance(e, ManifestError):
            raise
        if isinstance(e, OSError) and not isinstance(e, pa.ArrowException) and e.filename:
            raise  # the file itself could not be read (missing, no permission)
        raise ManifestError(
            f"not a readable Parquet manifest ({_one_line(e)})", location, None, None, "row"
        ) from None
    labels_is_map = "labels" in schema.names and pa.types.is_map(schema.field("labels").type)
    for row in rows:
        if labels_is_map and row["labels"] is not None:
            row["labels"] = dict(row["labels"])
        for name in VQA_FIELDS:
            if name in row and row[name] is None:
                del row[name]
    return rows


def _plain_type(kind: Any) -> Any:
    """``kind`` with every dictionary type (at any depth) replaced by its value type."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        return kind.value_type
    if pa.types.is_map(kind):
        return pa.map_(_plain_type(kind.key_type), _plain_type(kind.item_type))
    if pa.types.is_list(kind):
        field = kind.value_field
        return pa.list_(pa.field(field.name, _plain_type(field.type), field.nullable))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _plain_type(f.type), f.nullable) for f in kind])
    return kind


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    name = type(error).__name__
    return f"{name}: {text[:300]}" if text else name


def _parquet_batches(source: Any, location: str, max_bytes: int) -> tuple[list[Any], Any]:
    """The record batches of a Parquet manifest, string columns dictionary-encoded, and their
    Arrow schema, after the footer's declared sizes and the rows' expanded size are checked
    against ``max_bytes``."""
    import pyarrow.parquet as pq

    def too_large(what: str, row: int | None = None) -> ManifestError:
        return ManifestError(
            f"{what}, more than the {max_bytes} bytes a Parquet manifest may decode to "
            "(gradatim.manifest.common.PARQUET_MAX_BYTES)",
            location,
            row,
            None,
            "row",
        )

    meta = pq.ParquetFile(source).metadata
    # The row groups' declared uncompressed sizes (the footer's, before any page is read). Column
    # chunk metadata is not looked at from Python: pyarrow aborts the process (an uncaught C++
    # exception) on some malformed column chunk metadata when Python asks for it, where its
    # reader, below, returns an error.
    declared = sum(max(meta.row_group(g).total_byte_size, 0) for g in range(meta.num_row_groups))
    if declared > max_bytes:
        raise too_large(f"its row groups declare {declared} uncompressed bytes")
    schema = meta.schema
    strings = [
        schema.column(i).path
        for i in range(len(schema))
        if schema.column(i).physical_type == "BYTE_ARRAY"
        and schema.column(i).logical_type.type in ("STRING", "NONE")
    ]
    reader = pq.ParquetFile(source, read_dictionary=strings, metadata=meta)
    batches = []
    total = rows = 0
    for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False):
        total += sum(_expanded_bytes(column) for column in batch.columns)
        if total > max_bytes:
            raise too_large(f"rows 1 to {rows + batch.num_rows} expand to {total} bytes")
        rows += batch.num_rows
        batches.append(batch)
    return batches, reader.schema_arrow


def _expanded_bytes(array: Any) -> int:
    """The bytes ``array`` takes once its dictionary-encoded values are expanded (each value
    once per use), without expanding them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        n = len(array)
        if n == 0:
            return 0
        lengths = pc.binary_length(array.dictionary)
        used = pc.sum(pc.take(lengths, array.indices)).as_py() or 0
        return int(used) + 8 * n
    if pa.types.is_map(kind):  # keys and items are the whole children: cut to this slice
        offsets = array.offsets
        lo, hi = offsets[0].as_py(), offsets[-1].as_py()
        keys, items = array.keys.slice(lo, hi - lo), array.items.slice(lo, hi - lo)
        return 8 * len(array) + _expanded_bytes(keys) + _expanded_bytes(items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return 8 * len(array) + _expanded_bytes(array.flatten())
    if pa.types.is_struct(kind):
        return len(array) + sum(_expanded_bytes(child) for child in array.flatten())
    return int(array.nbytes)


def open_text(path: str | os.PathLike[str]) -> TextIO:
    """Open a text file for reading, gunzipping ``*.gz`` transparently (UTF-8, BOM dropped)."""
    p = os.fspath(path)
    if p.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8-sig", newline="")
    return open(p, encoding="utf-8-sig", newline="")


def iter_csv(
    path: str | os.PathLike[str], required: Sequence[str] = ()
) -> Iterator[tuple[Where, dict[str, str]]]:
    """Rows of a CSV file (``.csv`` or ``.csv.gz``) as ``(where, row)``; ``where.row`` is the
    file's line number (the header is line 1). Missing ``required`` columns raise
    :class:`ManifestError` naming the column."""
    p = os.fspath(path)
    with open_text(p) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for col in required:
            if col not in header:
                raise ManifestError(f"missing column (header has {header})", p, 1, col)
        for row in reader:
            yield Where(p, reader.line_num), row


def parse_float(value: str | None, where: Where, field: str) -> float:
    """A finite number from a CSV/JSON cell, or a :class:`ManifestError` naming ``field``."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise where.error(field, f"expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise where.error(field, f"expected a finite number, got {value!r}")
    return x


SPLITS: tuple[str, ...] = ("train", "validate", "test")
"""The split names converters write (MIMIC-CXR's spelling; datasets that say "val" or
"validation" are mapped to "validate")."""

_SPLIT_ALIASES = {
    "val": "validate",
    "valid": "validate",
    "validation": "validate",
    "dev": "validate",
}


def normalize_split(name: str) -> str:
    """A dataset's split name in the manifest's spelling (``"val"`` -> ``"validate"``)."""
    low = name.strip().lower()
    return _SPLIT_ALIASES.get(low, low)


def hash_split(key: str, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> str:
    """A deterministic train/validate/test assignment of ``key`` (SHA-256 of the key, so the
    same key always lands in the same split, whatever else is converted). Use a patient or study
    key so that one patient's images never straddle splits."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions!r}")
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    total = float(sum(fractions))
    acc = 0.0
    for name, f in zip(SPLITS, fractions, strict=True):
        acc += f / total
        if u < acc:
            return name
    return SPLITS[-1]


def splitter(spec: str) -> Callable[[str], str]:
    """Turn a ``--split`` value into ``key -> split``: a fixed name (``"train"``) or
    ``"hash:0.7,0.1,0.2"`` (:func:`hash_split` with those train/validate/test fractions)."""
    if spec.startswith("hash"):
        rest = spec[4:].lstrip(":")
        try:
            fractions = tuple(float(x) for x in rest.split(",")) if rest else (0.7, 0.1, 0.2)
            hash_split("probe", fractions)
        except ValueError:
            raise ValueError(
                f"split spec {spec!r}: expected 'hash:TRAIN,VALIDATE,TEST' fractions"
            ) from None
        return lambda key: hash_split(key, fractions)
    if not spec.strip():
        raise ValueError("split name must not be empty")
    name = normalize_split(spec)
    return lambda key: name
