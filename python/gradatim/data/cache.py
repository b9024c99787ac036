"""The pre-decoded cache: every image of a manifest decoded once, at the size the loader decodes
it, into memory-mappable shards of raw pixels (``gradatim cache build``); a
:class:`~gradatim.ManifestDataset` made with ``cache=DIR`` reads pixels from it instead of
decoding, and gives the same batches for the same seed. The cache may lie in an object store
(``-o s3://bucket/prefix``: built in a local staging folder, then uploaded; read with one ranged
request per image). The format and the rules are in docs/cache.md; the build, the upload and the
reads are in the Rust core (``data/cache.rs``, ``data/cache_remote.rs``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from gradatim import _core, cli_paths

__all__ = ["build_cache", "add_parser"]


def build_cache(
    dataset: Any, out_dir: str | os.PathLike[str], *, threads: int | None = None,
    progress: bool = True, staging: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Decode every record of ``dataset`` (a :class:`~gradatim.ManifestDataset`: its manifest,
    image size, smallest crop and channels decide the decode) once into a cache in ``out_dir``,
    on ``threads`` threads (default: every CPU). ``out_dir`` may be an object store URL
    (``s3://bucket/prefix``, ...): the cache is built in ``staging`` (default: a folder in the
    system's temporary folder, removed after the upload) and uploaded, ``cache.json`` last.
    Resumes an interrupted build or upload of the same settings; a finished cache of the same
    settings is left as is. Returns the build report: ``records``, ``decoded`` (by this run),
    ``failed`` (``[index, reason]`` of images that could not be decoded; the loader decodes them,
    or raises, as ``cache_fallback`` says), ``bytes``, ``seconds``, and for a store ``upload``
    (``uploaded`` and ``kept`` objects, ``bytes`` uploaded, ``staging``, ``staging_removed``)."""
    threads = threads or os.cpu_count() or 1
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(dataset), desc="cache", unit="img")
        except ImportError:  # pragma: no cover - tqdm is optional
            bar = None

    def report(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        result: dict[str, Any] = _core.cache_build(
            dataset._core, os.fspath(out_dir), int(threads), report,
            os.fspath(staging) if staging is not None else None,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return result


def _main(args: argparse.Namespace) -> int:
    from gradatim.data.augment import Augment
    from gradatim.data.dataset import ManifestDataset

    augment = Augment.none() if args.augment == "none" else getattr(Augment, args.augment)()
    width, height = args.size
    dataset = ManifestDataset(
        args.manifest, root=args.root, image_size=(width, height), augment=augment,
        channels=args.channels, allow_outside_root=args.allow_outside_root,
    )  # fmt: skip
    start = time.perf_counter()
    result = build_cache(dataset, args.out, threads=args.threads, progress=not args.quiet,
                         staging=args.staging)  # fmt: skip
    seconds = time.perf_counter() - start
    n = max(result["records"] - len(result["failed"]), 1)
    print(
        f"cache {args.out}: {result['records']} records ({result['decoded']} decoded now, "
        f"{len(result['failed'])} failed), {result['bytes'] / n / 1024:.0f} KiB per image, "
        f"{seconds / max(result['decoded'], 1) * 1e3:.1f} ms per decoded image",
        file=sys.stderr,
    )
    upload = result.get("upload")
    if upload is not None:
        print(
            f"uploaded {upload['uploaded']} objects ({upload['bytes'] / 2**20:.1f} MiB), kept "
            f"{upload['kept']} of an interrupted upload",
            file=sys.stderr,
        )
    for index, why in result["failed"][:10]:
        print(f"  record {index}: {why}", file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    try:
        return int(w), int(h or w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected S or WxH, got {text!r}") from None


def add_parser(sub: Any) -> None:
    """Register ``gradatim cache build MANIFEST -o DIR --size S``."""
    p = sub.add_parser("cache", help="pre-decode a manifest's images into a memory-mapped cache")
    verbs = p.add_subparsers(dest="cache_command", required=True, metavar="VERB")
    b = verbs.add_parser(
        "build",
        help="decode every image once, at the size the loader decodes it",
        description="Decode every image of MANIFEST once into DIR, at the size a "
        "ManifestDataset with these --size / --augment / --channels decodes it; resumable. DIR "
        "may be an object store URL (s3://bucket/prefix, ...): the cache is built in --staging "
        "and uploaded.",
    )
    b.add_argument("manifest", help="the manifest (.jsonl / .parquet, a path or a URL)")
    b.add_argument(
        "-o", "--out", required=True,
        help="the cache folder, or an object store URL (s3://bucket/prefix, gs://, az://)",
    )  # fmt: skip
    b.add_argument(
        "--staging", type=Path, default=None,
        help="for a cache in an object store: the local folder it is built in before the upload "
        "(kept; default: a temporary folder, removed after the upload)",
    )  # fmt: skip
    b.add_argument("--size", required=True, type=_size, help="the output image size: S or WxH")
    b.add_argument(
        "--augment", default="none", choices=("none", "cure_train", "fast_train"),
        help="the augmentation the loader will use (its smallest crop sets the decode size; "
        "cure_train decodes at full resolution)",
    )  # fmt: skip
    b.add_argument("--channels", type=int, default=1, choices=(1, 3))
    b.add_argument("--root", default=None, help="folder or URL relative images resolve under")
    b.add_argument("--allow-outside-root", action="store_true")
    b.add_argument("--threads", type=int, default=None, help="default: every CPU")
    b.add_argument("--report", type=Path, default=None, help="write the build report (JSON)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_main)
    cli_paths.declare(b, inputs=["manifest"], output_dirs=["out", "staging"], outputs=["report"])
