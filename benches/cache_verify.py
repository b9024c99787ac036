"""What the pre-decoded cache's checksum costs per cached sample: the same cache read with the
pixels' CRC-32 checked (the default) and unchecked (``verify=False``, for this measurement only),
in one run, on one thread, interleaved.

Data: the loader benchmark's images and work (``benches/loader_throughput.py``): N 2048 x 2048 q90
grey JPEG variations of a real chest radiograph, cached at the loader's decode size (512 x 512 grey,
decoded at 1/4: 256 KiB per image); per sample CLAHE, a random affine with the box, a 512 x 512
float32 output; and the same reads with no augmentation (the pixels only normalised into the batch),
where the checksum's share is largest. Each timing is ``--passes`` passes over every image, built in
batches of 16 by ``Dataset.batch`` (the core's batch builder on the calling thread, GIL released)
after one warm pass (the shard in the page cache); each batch is built checked and unchecked back to
back (the order alternating), and the ratio is the median of the ``--repeats`` per-repeat ratios.
Writes ``benches/results/cache_verify.json`` and prints the per-sample times, the checksum's cost
per sample and the ratio.

    python benches/cache_verify.py               # 64 files, 3 passes, 7 repeats
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from loader_throughput import AUGMENT, make_dataset  # noqa: E402

from gradatim.bench.machine import machine_info  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "cache_verify.json"
BATCH = 16


def _time(checked: Any, unchecked: Any, n: int, passes: int, epoch: int) -> tuple[float, float]:
    """Seconds per sample, checked and unchecked, over ``passes`` passes of every image: each
    batch is built both ways back to back (the order alternating), so that a load change on the
    machine falls on both."""
    spent = [0.0, 0.0]
    for p in range(passes):
        for b, k in enumerate(range(0, n, BATCH)):
            indices = list(range(k, min(k + BATCH, n)))
            for which in (0, 1) if (b + p) % 2 == 0 else (1, 0):
                core = checked if which == 0 else unchecked
                start = time.perf_counter()
                core.batch(indices, epoch + p, 0)
                spent[which] += time.perf_counter() - start
    return spent[0] / (passes * n), spent[1] / (passes * n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import gradatim as ga
    from gradatim.data.augment import Augment
    from gradatim.data.cache import build_cache

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = make_dataset(folder / "images", args.files)
        ds = ga.ManifestDataset(manifest, image_size=(512, 512), augment=Augment.from_dict(AUGMENT))
        report = build_cache(ds, folder / "cache", threads=2, progress=False)
        assert not report["failed"], report["failed"]
        n = len(ds)
        per_image = report["bytes"] / n
        # the same cache (its decode size is the same) read with the loader benchmark's work and
        # with none (the pixels only normalised into the batch: the checksum's largest share)
        plain = ga.ManifestDataset(manifest, image_size=(512, 512), augment=Augment.none())
        rows: dict[str, Any] = {}
        for label, data in (("clahe+affine", ds), ("no augmentation", plain)):
            checked = data._core.with_cache(str(folder / "cache"), True, True)
            unchecked = data._core.with_cache(str(folder / "cache"), True, False)
            _time(checked, unchecked, n, 1, 0)  # warm: the shard in the page cache
            on: list[float] = []
            off: list[float] = []
            for r in range(args.repeats):
                a, b = _time(checked, unchecked, n, args.passes, 100 * (r + 1))
                on.append(a)
                off.append(b)
            assert checked.cache_read_failures == (0, None)
            ratios = [a / b for a, b in zip(on, off, strict=True)]
            rows[label] = {
                "checked_ms_per_sample": statistics.median(on) * 1e3,
                "unchecked_ms_per_sample": statistics.median(off) * 1e3,
                "checksum_us_per_sample": (statistics.median(on) - statistics.median(off)) * 1e6,
                "ratio_checked_to_unchecked": statistics.median(ratios),
                "ratios": ratios,
            }
    result = {
        "schema": "gradatim.bench.cache_verify/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "files": args.files,
        "passes": args.passes,
        "repeats": args.repeats,
        "bytes_per_image": per_image,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    print(f"cache read, one thread, {per_image / 1024:.0f} KiB per image; {m.get('cpu')}, "
          f"{m.get('cpu_count')} CPUs, load {m.get('load_avg_1m', 0):.1f}")  # fmt: skip
    for label, row in rows.items():
        print(
            f"  {label}: checked {row['checked_ms_per_sample']:.3f} ms per sample, unchecked "
            f"{row['unchecked_ms_per_sample']:.3f} ms; the checksum "
            f"{row['checksum_us_per_sample']:.1f} us per sample; ratio checked / unchecked "
            f"{row['ratio_checked_to_unchecked']:.3f} (per repeat "
            f"{min(row['ratios']):.3f}-{max(row['ratios']):.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
