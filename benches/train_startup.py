"""Training start-up at MIMIC scale: the time and private memory from ``train()``'s start to its
first optimizer step, for three sources selected from one manifest, JSON lines and packed, with
the earlier start-up (every record read into Python dicts, per source, and copied for the
data set) run beside it as the baseline.

Data: ``manifest_scale.py``'s phantom-style records (about 1 KB of JSON each, as MIMIC-CXR's,
pointing at 16 real phantom JPEGs), packed once into an Arrow file. The run: a tiny LLaVA saved
as a checkpoint folder (``[model] path``, as a real model is given: ``pretrain_tiny`` at 0 steps,
its tokenizer trained on 2,000 records), three ``[[data.sources]]`` selecting ``phantom-a``,
``phantom-b`` and ``phantom-c`` (``select``) of the ``train`` split from the one manifest, batch
4, one step. One more run shows a tiny model *without* a checkpoint (``[model] name``), whose
byte-level BPE ``gradatim train`` trains on every training record's texts before step 1: that
part grows with the records and is the tokenizer's, not the data's.

Each start-up runs as two ranks at once (``--ranks``; two processes joined by ``gloo`` through
the environment ``torchrun`` sets: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` ...), each after
importing torch, transformers, peft and gradatim, as any training script does first. Every rank
reports the seconds to step 1 (and how many of them built the model: ``build_model``) and its
memory from ``/proc/self/smaps_rollup``, sampled every 20 ms: *private* (Private_Clean +
Private_Dirty: pages no other process maps, what the rank alone costs the machine) and
*anonymous* (memory no other process can share), each as the peak and at step 1, less the
rank's own after its imports (the libraries' private memory is the same in any run). A packed
manifest's pages are the page cache's: mapped by one process they count as its private, mapped
by every rank on the node they are shared, so one process alone would overstate what a rank
costs; the table shows the slowest rank and the largest memory of any rank.

    python benches/train_startup.py                 # 377,110 records; baseline at 100,000
    python benches/train_startup.py --quick         # 40,000 records, baseline at the same size
    python benches/train_startup.py --forms packed --baseline-n 0 --no-tokenizer  # the goal's run

Goal (at 377,110 packed records): start-up to step 1 < 5 s and < 300 MB private memory per rank
(added by start-up, at its peak).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from manifest_scale import MIMIC_RECORDS, make_manifest  # noqa: E402

RESULTS = HERE / "results" / "train_startup.json"
SOURCES = ("phantom-a", "phantom-b", "phantom-c")


def memory_mb() -> tuple[float, float]:
    """This process's private resident memory (MB: pages no other process maps now, including a
    memory-mapped file's pages until a second process maps them) and its anonymous part (memory
    no other process *can* share: what each rank pays for itself)."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024, fields["Anonymous"] / 1024


def tiny_base(folder: Path) -> Path:
    """A tiny LLaVA checkpoint folder (randomly initialised, tokenizer trained on 2,000
    records); reused when present."""
    from gradatim.train.pretrain import PretrainSettings, pretrain_tiny

    out = folder / "tiny-base"
    if not (out / "config.json").exists():
        settings = PretrainSettings(image_size=32, hidden=64, vocab_size=400, grounding_steps=0,
                                    steps=0)  # fmt: skip
        pretrain_tiny([make_manifest(folder, 2_000)], out, settings)
    return out


def write_config(folder: Path, manifest: Path, tag: str, model: Path | None) -> Path:
    """A one-step tiny-LLaVA run over three sources selected from ``manifest``: the checkpoint
    folder ``model``, or (``None``) a tiny model whose tokenizer the run trains."""
    out = folder / f"run-{tag}"
    head = f"path = {json.dumps(str(model))}" if model else 'name = "tiny-llava"\nvocab_size = 400'
    lines = [
        f"[model]\n{head}\n",
        "[train]",
        f"steps = 10\nbatch_size = 4\ncheckpoint_every = 1000\nout = {json.dumps(str(out))}",
        "",
    ]
    for k, source in enumerate(SOURCES):
        lines += ["[[data.sources]]", f'name = "{source.upper()}"']
        lines += [f"manifest = {json.dumps(str(manifest))}", f'select = "{source}"']
        lines += ['split = "train"', f"weight = {(0.5, 0.3, 0.2)[k]}", ""]
    config = folder / f"run-{tag}.toml"
    config.write_text("\n".join(lines))
    return config


def baseline_source_records(cfg: Any, split: str | None = None, **_: Any) -> list[dict[str, Any]]:
    """The earlier start-up's training records: per source, the manifest validated through a
    data set of its own, then read again into Python dicts, filtered by split and source, the
    image made absolute (each manifest parsed twice per source)."""
    from gradatim.data import ManifestDataset
    from gradatim.manifest import read_manifest

    records: list[dict[str, Any]] = []
    for s in cfg.data.sources:
        path = Path(s.manifest)
        ManifestDataset(path, image_size=(8, 8))
        want = split if split is not None else s.split
        for r in read_manifest(path):
            if want is not None and r["split"] != want:
                continue
            if s.select is not None and r.get("source") != s.select:
                continue
            r["source"] = s.name
            image = Path(r["image"])
            r["image"] = str(image if image.is_absolute() else (path.parent / image).resolve())
            records.append(r)
    return records


def child(config: str, impl: str) -> None:
    """One start-up in this process; prints its measurements as one JSON line."""
    start = time.perf_counter()
    import peft  # noqa: F401 - as are the model libraries
    import torch  # noqa: F401 - imported before the clock starts, as any training script does
    import transformers  # noqa: F401
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: F401

    import gradatim  # noqa: F401
    from gradatim.train import loop
    from gradatim.train.config import load_config

    imported_s = time.perf_counter() - start
    base = memory_mb()
    peak = list(base)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            now = memory_mb()
            peak[:] = [max(a, b) for a, b in zip(peak, now, strict=True)]

    if impl == "baseline":
        loop.source_records = baseline_source_records  # type: ignore[assignment]
    build = loop.build_model
    tokenizer_s = [0.0]

    def timed_build(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return build(*args, **kwargs)
        finally:
            tokenizer_s[0] += time.perf_counter() - t

    loop.build_model = timed_build  # type: ignore[assignment]
    cfg = load_config(config)
    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    run = loop.train(cfg, max_steps=1)
    startup_s = time.perf_counter() - t0
    done.set()
    watcher.join()
    end = memory_mb()  # at step 1 (the other ranks still hold their maps: train() ends together)
    assert run.step == 1
    print(json.dumps({"rank": int(os.environ.get("RANK", "0")), "import_s": imported_s,
                      "startup_s": startup_s, "model_s": tokenizer_s[0],
                      "private_after_import_mb": base[0], "private_peak_mb": peak[0],
                      "private_added_mb": peak[0] - base[0],
                      "private_step1_added_mb": end[0] - base[0],
                      "anonymous_added_mb": peak[1] - base[1],
                      "anonymous_step1_added_mb": end[1] - base[1]}))  # fmt: skip


def free_port() -> int:
    """A TCP port free on this machine now, for the ranks' rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_child(config: Path, impl: str, ranks: int) -> dict[str, Any]:
    """One start-up as ``ranks`` processes at once (the environment ``torchrun`` gives each);
    the slowest rank's seconds and the largest memory of any rank, and every rank's numbers."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    port = str(free_port())
    procs = []
    for rank in range(ranks):
        world = {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(ranks),
            "LOCAL_WORLD_SIZE": str(ranks),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--child", str(config), "--impl", impl],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, **world},
        ))  # fmt: skip
    per_rank = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"rank failed ({p.returncode}): {err[-2000:]}")
        per_rank.append(dict(json.loads(out.strip().splitlines()[-1])))
    row: dict[str, Any] = {"ranks": ranks}
    for key in per_rank[0]:
        if key != "rank":
            row[key] = max(r[key] for r in per_rank)
    row["per_rank"] = per_rank
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=MIMIC_RECORDS, help="records")
    ap.add_argument("--baseline-n", type=int, default=100_000,
                    help="records of the baseline's runs (0: no baseline)")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="40,000 records, baseline the same")
    ap.add_argument("--dir", type=Path, help="data folder (default: a temporary one)")
    ap.add_argument("--ranks", type=int, default=2, help="processes per start-up, at once")
    ap.add_argument("--forms", default="jsonl,packed", help="manifest forms to run")
    ap.add_argument("--no-tokenizer", action="store_true",
                    help="leave out the run whose tiny model trains its tokenizer")  # fmt: skip
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="now", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.impl)
        return 0
    from gradatim.bench import machine_info
    from gradatim.manifest import pack_manifest

    n, baseline_n = (40_000, 40_000) if args.quick else (args.n, args.baseline_n)
    folder = args.dir or Path(tempfile.gettempdir()) / "gradatim-manifest-scale"
    folder.mkdir(parents=True, exist_ok=True)
    base = tiny_base(folder)
    rows: list[dict[str, Any]] = []
    for impl, count in (("now", n), ("baseline", baseline_n)):
        if count <= 0:
            continue
        jsonl = make_manifest(folder, count)
        arrow = jsonl.with_suffix(".arrow")
        if not arrow.exists():
            pack_manifest(jsonl, arrow)
        forms = args.forms.split(",")
        runs = [(f, p, base) for f, p in (("jsonl", jsonl), ("packed", arrow)) if f in forms]
        if impl == "now" and "packed" in forms and not args.no_tokenizer:
            runs.append(("packed", arrow, None))
        for form, path, model in runs:
            tag = f"{impl}-{form}-{count}-{'base' if model else 'tokenizer'}"
            r = run_child(write_config(folder, path, tag, model), impl, args.ranks)
            what = "checkpoint" if model else "tiny, tokenizer trained"
            rows.append({"impl": impl, "form": form, "records": count, "model": what, **r})
    print(f"{args.ranks} ranks at once; per rank: the slowest's seconds, the largest memory "
          "(MB added by start-up: peak / at step 1)")  # fmt: skip
    print(f"{'start-up':<9} {'form':<7} {'records':>8} {'model':<24} {'to step 1 s':>12} "
          f"{'model s':>8} {'+private MB':>14} {'+anon MB':>12}")  # fmt: skip
    for r in rows:
        private = f"{r['private_added_mb']:.0f} / {r['private_step1_added_mb']:.0f}"
        anon = f"{r['anonymous_added_mb']:.0f} / {r['anonymous_step1_added_mb']:.0f}"
        print(f"{r['impl']:<9} {r['form']:<7} {r['records']:>8,} {r['model']:<24} "
              f"{r['startup_s']:>12.2f} {r['model_s']:>8.2f} {private:>14} {anon:>12}")  # fmt: skip
    goal = next(
        (r for r in rows
         if r["impl"] == "now" and r["form"] == "packed" and r["model"] == "checkpoint"),
        None,
    )  # fmt: skip
    met = None
    if goal is not None:
        met = goal["startup_s"] < 5 and goal["private_added_mb"] < 300
        print(f"goal at {goal['records']:,} packed records, {args.ranks} ranks: < 5 s and < 300 "
              f"MB private per rank: {goal['startup_s']:.2f} s, +{goal['private_added_mb']:.0f} "
              f"MB private at the peak (+{goal['anonymous_added_mb']:.0f} MB anonymous): "
              f"{'met' if met else 'not met'}")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    result = {"machine": machine_info(), "ranks": args.ranks, "runs": rows, "goal_met": met}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
