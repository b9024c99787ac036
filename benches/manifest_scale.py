"""Opening a MIMIC-scale manifest: JSON lines against the packed Arrow form, in one run.

Data: 377,110 phantom-style records (a report, the 14 CheXpert labels, a few boxes with phrases
and anatomy; about 1 KB of JSON each, as MIMIC-CXR's), drawn from 4,000 phantom studies and
repeated under new ids, pointing at 16 real phantom JPEGs so that batches can be built. The JSONL
manifest is packed once with ``gradatim manifest pack`` (timed) into an Arrow IPC file.

Each form is opened in a fresh process (``ManifestDataset``, after ``import torch, gradatim``),
which reports the time to open, what opening added to the process's memory (resident, and its
anonymous part: memory no other process can share), and the time to the first shuffled batch of
a ``gradatim.DataLoader`` (16 samples, 2 threads). The first batch's ids and pixels are compared
between the forms. Then two processes open the Arrow manifest at once, as two ranks on one node
do, and report the pages they share.

Goal (at 377,110 records): open in < 2 s and < 300 MB of private memory per process.

    python benches/manifest_scale.py            # 377,110 records
    python benches/manifest_scale.py --quick    # 40,000 records
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "manifest_scale.json"
MIMIC_RECORDS = 377_110
STUDIES = 4_000
IMAGES = 16


def make_manifest(folder: Path, n: int) -> Path:
    """Write ``n`` records to ``folder/manifest.jsonl`` (and the images they use); reused when
    present."""
    from gradatim.datasets import phantom

    manifest = folder / f"manifest-{n}.jsonl"
    if manifest.exists():
        return manifest
    images = phantom.generate(folder, IMAGES)
    paths = [json.loads(line)["image"] for line in images.read_text().splitlines()]
    paths = list(dict.fromkeys(paths))
    sources = list(phantom.SOURCES)
    base: list[dict[str, Any]] = []
    for i in range(STUDIES):
        study = phantom.make_study(i, source=sources[i % len(sources)])
        base += phantom.study_records(study, paths[i % len(paths)])
    tmp = manifest.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for k in range(n):
            r = dict(base[k % len(base)])
            r["id"] = f"{r['id']}/{k // len(base)}"
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.rename(manifest)
    return manifest


def memory() -> dict[str, int]:
    """This process's resident memory from /proc (kB): total, anonymous, private, shared."""
    out: dict[str, int] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0])
    return {
        "rss": out["Rss"],
        "anonymous": out["Anonymous"],
        "private": out["Private_Clean"] + out["Private_Dirty"],
        "shared": out["Shared_Clean"] + out["Shared_Dirty"],
    }


def mapped(path: str) -> dict[str, float]:
    """This process's resident pages of the file ``path`` maps (MB): all, shared, private."""
    real = os.path.realpath(path)
    out = {"rss_mb": 0.0, "shared_mb": 0.0, "private_mb": 0.0}
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            inside = head[-1] == real
        elif inside and head[0] in ("Rss:", "Shared_Clean:", "Shared_Dirty:"):
            key = "rss_mb" if head[0] == "Rss:" else "shared_mb"
            out[key] += int(head[1]) / 1024
        elif inside and head[0] in ("Private_Clean:", "Private_Dirty:"):
            out["private_mb"] += int(head[1]) / 1024
    return out


def child(path: str, hold: bool) -> None:
    """Open ``path`` and print what it cost as one JSON line (``hold``: then wait for stdin)."""
    import numpy as np
    import torch

    import gradatim as ga

    before = memory()
    start = time.perf_counter()
    ds = ga.ManifestDataset(path, image_size=(512, 512))
    opened = time.perf_counter() - start
    after_open = memory()
    loader = ga.DataLoader(ds, batch_size=16, shuffle=True, num_workers=2,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    start = time.perf_counter()
    batch = next(iter(loader))
    first = time.perf_counter() - start
    digest = hashlib.sha256(np.ascontiguousarray(batch["pixel_values"].numpy())).hexdigest()
    mb = lambda a, b, k: (a[k] - b[k]) / 1024  # noqa: E731
    report = {
        "records": len(ds),
        "open_s": opened,
        "first_batch_s": first,
        "open_rss_mb": mb(after_open, before, "rss"),
        "open_anonymous_mb": mb(after_open, before, "anonymous"),
        "open_private_mb": mb(after_open, before, "private"),
        "ids": list(batch["id"]),
        "pixels": digest,
        "pid": os.getpid(),
    }
    print(json.dumps(report), flush=True)
    if hold:  # measure when asked, then stay until told to go (the other rank measures too)
        sys.stdin.readline()
        print(json.dumps(mapped(path)), flush=True)
        sys.stdin.readline()


def run_child(path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True,
                         capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.splitlines()[-1])


def two_ranks(path: Path) -> list[dict[str, Any]]:
    """Two processes holding the manifest open at once: the pages of the file each one maps,
    resident, shared with the other, private."""
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", str(path), "--hold"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    for p in procs:  # both have opened and built a batch before either reports its pages
        assert p.stdout is not None
        p.stdout.readline()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    out = [json.loads(p.stdout.readline()) for p in procs if p.stdout is not None]
    for p in procs:
        p.communicate("\n")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=MIMIC_RECORDS, help="records")
    ap.add_argument("--quick", action="store_true", help="40,000 records")
    ap.add_argument("--dir", type=Path, help="data folder (default: a temporary one)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.hold)
        return 0
    from gradatim.bench import machine_info
    from gradatim.manifest import pack_manifest

    n = 40_000 if args.quick else args.n
    folder = args.dir or Path(tempfile.gettempdir()) / "gradatim-manifest-scale"
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = make_manifest(folder, n)
    arrow = jsonl.with_suffix(".arrow")
    start = time.perf_counter()
    pack_manifest(jsonl, arrow)
    pack_s = time.perf_counter() - start
    sizes = {"jsonl_mb": jsonl.stat().st_size / 2**20, "arrow_mb": arrow.stat().st_size / 2**20}
    print(f"{n:,} records: JSONL {sizes['jsonl_mb']:.0f} MB, Arrow {sizes['arrow_mb']:.0f} MB "
          f"(packed in {pack_s:.1f} s)")  # fmt: skip
    rows = {"jsonl": run_child(jsonl), "arrow": run_child(arrow)}
    print(f"{'form':<6} {'open s':>7} {'+RSS MB':>8} {'+anon MB':>9} {'first batch s':>14}")
    for kind, r in rows.items():
        print(f"{kind:<6} {r['open_s']:>7.2f} {r['open_rss_mb']:>8.0f} "
              f"{r['open_anonymous_mb']:>9.0f} {r['first_batch_s']:>14.2f}")  # fmt: skip
    same = rows["jsonl"]["ids"] == rows["arrow"]["ids"] and (
        rows["jsonl"]["pixels"] == rows["arrow"]["pixels"]
    )
    print(f"same first batch (ids and pixels): {same}")
    ranks = two_ranks(arrow)
    for i, r in enumerate(ranks):
        print(f"arrow, rank {i} of 2: the file's resident pages {r['rss_mb']:.0f} MB, of which "
              f"shared {r['shared_mb']:.0f} MB, private {r['private_mb']:.0f} MB")  # fmt: skip
    ratio = rows["jsonl"]["open_s"] / rows["arrow"]["open_s"]
    arrow_row = rows["arrow"]
    print(f"open: {ratio:.1f}x faster packed; goal < 2 s and < 300 MB private: "
          f"{arrow_row['open_s']:.2f} s, {arrow_row['open_anonymous_mb']:.0f} MB")  # fmt: skip
    for r in rows.values():
        del r["ids"], r["pixels"], r["pid"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine_info(), "records": n, "pack_s": pack_s,
                                   **sizes, "forms": rows, "two_ranks": ranks,
                                   "same_first_batch": same}, indent=2) + "\n")  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
