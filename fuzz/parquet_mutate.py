"""Mutation fuzzer of the Parquet manifest reader (``gradatim.manifest.common.read_manifest``).

The Parquet reader is pyarrow, driven from Python, so it is fuzzed here rather than by cargo-fuzz:
seed manifests written by ``write_manifest`` (records with boxes, labels, VQA fields, long text,
several row groups and compressions) are mutated with a seeded random generator (bit flips,
random and "interesting" bytes and varints, inserts, deletions, truncations, splices of another
seed, copies of a block) and each mutant is read by ``read_manifest`` in a child process whose
address space is capped (``RLIMIT_AS``, 2 GiB) and whose time per input is capped (10 s). The
reader's contract is :class:`~gradatim.errors.ManifestError` (or the rows) for any bytes; every
other outcome is a finding: another exception, a signal or abort (the child dies), a time-out.
Findings are saved, with what happened, in ``fuzz/artifacts/parquet/`` (one file per distinct
outcome); each becomes a regression test.

    python fuzz/parquet_mutate.py --seconds 600          # make fuzz runs this after cargo's
    python fuzz/parquet_mutate.py --seconds 60 --seed 7  # another mutation stream

Exit status 1 when there are findings, else 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts" / "parquet"

# The child: reads mutant paths from stdin, one per line, and answers one JSON line each.
CHILD = r"""
import json, resource, sys, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from gradatim.errors import ManifestError
from gradatim.manifest.common import read_manifest
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    path = line.rstrip("\n")
    try:
        rows = read_manifest(path, parquet=True)
        out = {"ok": len(rows)}
    except ManifestError as e:
        text = str(e)
        out = {"manifest_error": len(text.splitlines()) == 1 and path in text}
    except BaseException as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "?"
        out = {"exception": type(e).__name__, "where": where,
               "message": str(e)[:500], "traceback": traceback.format_exc()[-4000:]}
    print(json.dumps(out), flush=True)
"""


def seeds(folder: Path) -> list[bytes]:
    """Seed Parquet manifests written by ``write_manifest`` (and the same table under other
    compressions and row-group sizes, written by pyarrow as ``write_manifest`` does)."""
    import pyarrow.parquet as pq

    from gradatim.manifest.common import write_manifest

    box = {"box": [10.0, 20.0, 30.5, 40.25], "phrase": "left lower lobe opacity",
           "anatomy": "left lung"}  # fmt: skip
    base = {"image": "img/a.png", "source": "vindr", "split": "train",
            "laterality_sensitive": True}  # fmt: skip
    records = [
        {**base, "id": "r0", "task": "report", "text": "Heart size normal. Lungs clear.",
         "labels": {"Cardiomegaly": 0, "No Finding": 1, "Edema": None}},
        {**base, "id": "r1", "task": "phrase_grounding", "text": "opacity",
         "boxes": [box, {**box, "anatomy": None, "phrase": "nodule"}]},
        {**base, "id": "r2", "task": "vqa", "text": "", "prompt": "Is there an effusion?",
         "answer": "yes", "rationale": "the angle is blunted", "hard_id": "r0"},
        {**base, "id": "r3", "task": "anatomy_grounded_report", "split": "test",
         "text": "Right lung: clear. " * 40, "boxes": [box] * 3, "laterality_sensitive": False},
    ]  # fmt: skip
    many = [
        {**records[i % 4], "id": f"m{i}", "hard_id": None} if i % 4 == 2 else
        {**records[i % 4], "id": f"m{i}"}
        for i in range(300)
    ]  # fmt: skip
    out = []
    for k, recs in enumerate((records, many, records[:1])):
        path = write_manifest(recs, folder / f"seed{k}.parquet")
        out.append(path.read_bytes())
    table = pq.read_table(folder / "seed1.parquet")
    for k, (compression, group) in enumerate(
        (("zstd", 64), ("gzip", 1000), ("none", 100), ("snappy", 7))
    ):
        path = folder / f"variant{k}.parquet"
        pq.write_table(table, path, compression=compression, row_group_size=group)
        out.append(path.read_bytes())
    return out


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 20, 1 << 31]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def mutate(data: bytes, others: list[bytes], rng: random.Random) -> bytes:
    """One mutant of ``data``: 1 to 4 mutations, half of them in the footer (the file's last
    part: Thrift metadata, where sizes and offsets are declared)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b = bytearray(rng.choice(others))
        n = len(b)
        tail = max(0, n - min(n, 2048))
        at = rng.randrange(tail, n) if rng.random() < 0.5 else rng.randrange(n)
        op = rng.randrange(9)
        if op == 0:
            b[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[at] = rng.randrange(256)
        elif op == 2:
            value = rng.choice(INTERESTING) + rng.choice((-1, 0, 0, 1))
            raw = value.to_bytes(8, "little", signed=value < 0)[: rng.choice((1, 2, 4, 8))]
            b[at : at + len(raw)] = raw
        elif op == 3:
            raw = _varint(max(rng.choice(INTERESTING) + rng.choice((-1, 0, 1)), 0))
            b[at : at + len(raw)] = raw
        elif op == 4:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 5:
            del b[at : at + rng.randint(1, 64)]
        elif op == 6:
            b = b[: rng.randrange(n)] if rng.random() < 0.5 else b[: max(0, n - rng.randint(1, 64))]
        elif op == 7:
            other = rng.choice(others)
            start = rng.randrange(len(other))
            piece = other[start : start + rng.randint(1, 512)]
            b[at : at + len(piece)] = piece
        else:
            start = rng.randrange(n)
            piece = b[start : start + rng.randint(1, 256)]
            b[at:at] = piece
        if rng.random() < 0.7 and len(b) >= 4:  # keep the trailing magic most of the time
            b[-4:] = b"PAR1"
    return bytes(b)


class Child:
    """The reading child process, restarted after a death or a time-out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", ARROW_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self.limit)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, start_new_session=True,
        )  # fmt: skip
        if json.loads(self._line(120.0) or "{}").get("ready") is not True:
            raise RuntimeError("the reading child did not start")

    def _line(self, timeout: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline() if ready else None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def read(self, path: str, timeout: float) -> dict[str, object]:
        if self.proc is None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        start = time.monotonic()
        try:
            self.proc.stdin.write(path + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._line(timeout)
        seconds = time.monotonic() - start
        if line:
            out: dict[str, object] = json.loads(line)
            out["seconds"] = seconds
            return out
        if self.proc.poll() is None:
            self.stop()
            return {"timeout": timeout, "seconds": seconds}
        code = self.proc.returncode
        err = self.proc.stderr.read()[-4000:] if self.proc.stderr is not None else ""
        self.proc = None
        return {"died": code, "stderr": err, "seconds": seconds}


def finding_key(result: dict[str, object]) -> str | None:
    """A name for the kind of finding ``result`` is, or None when it is no finding."""
    if "ok" in result:
        return None
    if "manifest_error" in result:
        return None if result["manifest_error"] else "manifest-error-not-one-line"
    if "exception" in result:
        return f"exception-{result['exception']}-{result['where']}"
    if "timeout" in result:
        return "timeout"
    return f"died-{result.get('died')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    parser.add_argument("--seed", type=int, default=0, help="the mutation stream's seed")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="the child's RLIMIT_AS")
    parser.add_argument("--out", type=Path, default=ARTIFACTS, help="where findings go")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    child = Child(int(args.memory_gb * (1 << 30)))
    found: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    slowest = 0.0
    runs = 0
    with tempfile.TemporaryDirectory(prefix="gradatim-parquet-fuzz-") as tmp:
        corpus = seeds(Path(tmp))
        mutant = Path(tmp) / "mutant.parquet"
        deadline = time.monotonic() + args.seconds
        try:
            while time.monotonic() < deadline:
                parent = rng.choice(corpus)
                data = mutate(parent, corpus, rng)
                mutant.write_bytes(data)
                result = child.read(str(mutant), args.timeout)
                runs += 1
                kind = next(k for k in ("ok", "manifest_error", "exception", "timeout", "died")
                            if k in result)  # fmt: skip
                outcomes[kind] = outcomes.get(kind, 0) + 1
                slowest = max(slowest, float(result.get("seconds", args.timeout)))  # type: ignore[arg-type]
                key = finding_key(result)
                if key is None:
                    if "ok" in result and rng.random() < 0.05 and len(corpus) < 200:
                        corpus.append(data)  # a readable mutant: a new starting point
                    continue
                found[key] = found.get(key, 0) + 1
                if found[key] == 1:
                    args.out.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.sha1(data).hexdigest()[:16]
                    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[:120]
                    (args.out / f"{safe}-{digest}.parquet").write_bytes(data)
                    (args.out / f"{safe}-{digest}.json").write_text(json.dumps(result, indent=2))
                    print(f"finding: {key} ({digest})", flush=True)
        finally:
            child.stop()
    print(
        f"parquet_mutate: {runs} inputs in {args.seconds:.0f} s ({runs / args.seconds:.1f}/s), "
        f"outcomes {outcomes}, slowest {slowest:.2f} s, "
        f"{sum(found.values())} findings of {len(found)} kinds"
        + (f" in {args.out}" if found else "")
    )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
