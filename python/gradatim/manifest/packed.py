"""Packed manifests: a manifest's records as Arrow columns in one uncompressed Arrow IPC file
(docs/manifest.md, "Packed manifests").

A JSON-lines manifest is parsed into objects by every process that opens it; at MIMIC-CXR's
377k records that is seconds and most of a gigabyte per rank. A packed manifest is validated
once, when it is written; opening it memory-maps the file (the pages are shared by every process
on the machine), checks each record with the same rules, and builds a record only when a sample
needs it. ``ManifestDataset("train.arrow")`` opens one; the batches are those of the manifest it
was packed from.
"""

from __future__ import annotations

import os
from pathlib import Path

from gradatim import _core
from gradatim.errors import InvalidArgumentError
from gradatim.manifest.common import _is_parquet, is_packed, jsonl_text, parquet_rows

__all__ = ["is_packed", "pack_manifest"]


def pack_manifest(
    manifest: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    parquet: bool | None = None,
) -> int:
    """Validate a JSONL or Parquet manifest and write it packed to ``out`` (an ``.arrow`` file,
    replaced atomically); returns the record count. Image paths are kept as written: relative
    ones resolve against the packed file's folder (or the ``root`` given when it is opened), so
    write it next to the manifest it comes from."""
    name = os.fspath(manifest)
    target = Path(out)
    if not is_packed(target):
        raise InvalidArgumentError(
            f"{os.fspath(out)}: a packed manifest's name ends in .arrow (got {target.name!r})"
        )
    if _is_parquet(name, parquet):
        count: int = _core.pack_manifest(parquet_rows(name), name, "row", target)
    else:
        count = _core.pack_manifest(jsonl_text(name), name, "line", target)
    return count
