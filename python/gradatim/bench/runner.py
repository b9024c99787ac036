"""The parent side: each measurement in a fresh subprocess while a thread watches the process
tree's memory, repeats interleaved and retried when the machine is noisy, median runs and
paired ratios."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradatim.bench.config import GRADATIM
from gradatim.bench.machine import cpu_seconds, others_share, wait_until_quiet
from gradatim.bench.report import format_value

__all__ = ["measure_subprocess", "paired_ratios", "run_bench"]


def _descendants(root: int) -> list[int]:
    """``root`` and its descendant processes (Linux ``/proc``; just ``root`` elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [root]
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _proc_kb(path: str, key: bytes) -> int:
    """A ``kB`` field of a ``/proc`` file (0 when the process is gone)."""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class _TreeMemory:
    """Watches a process tree from a background thread (Linux ``/proc``): once the child marks
    ``timed``, every ``interval`` s each process's RSS peak (``VmHWM``, which also covers the
    current RSS; cheap to read); once it marks ``memory``, also the tree's total PSS."""

    def __init__(self, pid: int, markers: Path, interval: float = 0.1) -> None:
        self.pid, self.markers, self.interval = pid, markers, interval
        self.pss_peak_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.supported = os.path.exists(f"/proc/{pid}/status")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _TreeMemory:
        if self.supported:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.supported:
            self._thread.join()

    @property
    def root_hwm_kb(self) -> int:
        return self.hwm_kb.get(self.pid, 0)

    @property
    def worker_hwm_kb(self) -> list[int]:
        return [kb for pid, kb in self.hwm_kb.items() if pid != self.pid and kb > 0]

    def _loop(self) -> None:
        pids, rescan = [self.pid], 0.0
        while not self._stop.wait(self.interval):
            if not (self.markers / "timed").exists():
                continue
            now = time.monotonic()
            if now >= rescan:  # worker processes come and go rarely
                pids, rescan = _descendants(self.pid), now + 0.5
            alive = []
            for pid in pids:
                hwm = _proc_kb(f"/proc/{pid}/status", b"VmHWM:")
                if not hwm:
                    continue
                alive.append(pid)
                self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), hwm)
                if pid not in self.names:
                    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
                        self.names[pid] = f.read().strip()
            if (self.markers / "memory").exists():
                pss = sum(_proc_kb(f"/proc/{pid}/smaps_rollup", b"Pss:") for pid in alive)
                self.pss_peak_kb = max(self.pss_peak_kb, pss)


def measure_subprocess(
    kind: str,
    config: Mapping[str, Any],
    command: Sequence[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run one measurement in a fresh Python process (``command`` + the request path; default
    ``python -m gradatim.bench --child``) and return its result with the memory figures the
    parent watched (``rss_peak_mb``, ``workers_rss_peak_mb``, ``rss_total_mb``, ``pss_peak_mb``)
    and ``others_cpu_share`` (the CPU share other processes took meanwhile) added. Raises
    ``RuntimeError`` with the child's stderr when it fails."""
    cmd = list(command or [sys.executable, "-m", "gradatim.bench", "--child"])
    with tempfile.TemporaryDirectory(prefix="gradatim-bench-") as tmp:
        req, out = Path(tmp) / "request.json", Path(tmp) / "result.json"
        markers = Path(tmp) / "markers"
        markers.mkdir()
        request = {"kind": kind, "config": dict(config), "out": str(out), "markers": str(markers)}
        req.write_text(json.dumps(request), encoding="utf-8")
        cpu0 = cpu_seconds()
        proc = subprocess.Popen([*cmd, str(req)], stderr=subprocess.PIPE, text=True)
        with _TreeMemory(proc.pid, markers) as mem:
            try:
                _, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                raise RuntimeError(f"{kind}: timed out after {timeout} s") from None
        others = others_share(cpu0)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join((err or "").strip().splitlines()[-15:])
            raise RuntimeError(f"{kind}: measuring process failed (exit {proc.returncode})\n{tail}")
        result = json.loads(out.read_text(encoding="utf-8"))
    result["kind"] = kind
    result["others_cpu_share"] = others
    # ru_maxrss can miss a peak that was freed without the kernel noting its high-water mark
    # (glibc trims with madvise); VmHWM read while it runs covers the RSS at each reading
    own = result.get("rss_peak_mb")
    if mem.root_hwm_kb:
        own = max(own or 0.0, mem.root_hwm_kb / 1024)
        result["rss_peak_mb"] = own
    workers = [kb / 1024 for kb in mem.worker_hwm_kb]
    result["worker_processes"] = len(workers) if mem.root_hwm_kb else None
    result["worker_process_names"] = sorted(
        {mem.names.get(p, "?") for p in mem.hwm_kb if p != proc.pid}
    )
    result["workers_rss_peak_mb"] = max(workers) if workers else None
    result["rss_total_mb"] = own + sum(workers) if own is not None else None
    result["pss_peak_mb"] = mem.pss_peak_kb / 1024 if mem.pss_peak_kb else None
    return result


def paired_ratios(results: Mapping[str, Mapping[str, Any]], reference: str = GRADATIM) -> dict:
    """``reference``'s images/s over each other kind's, per repeat (runs next to each other in
    time, so machine drift cancels), and the median of those: ``{kind: median}``."""
    ref = results[reference]["repeats"]
    out = {}
    for kind, r in results.items():
        if kind != reference and r.get("repeats"):
            out[kind] = float(np.median([a / b for a, b in zip(ref, r["repeats"], strict=True)]))
    return out


def _median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median images/s (all runs' images/s kept in ``repeats``)."""
    ordered = sorted(runs, key=lambda r: r["images_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["repeats"] = [r["images_per_s"] for r in runs]
    chosen["repeats_others_cpu_share"] = [r.get("others_cpu_share") for r in runs]
    return chosen


def run_bench(
    config: Mapping[str, Any],
    kinds: Sequence[str],
    *,
    repeats: int = 1,
    command: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    max_others: float | None = None,
    retries: int = 3,
    quiet_timeout: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Measure each kind ``repeats`` times (interleaved, each in a fresh subprocess) and keep the
    median run of each. With ``max_others``, a run during which other processes took more than
    that share of the CPUs is measured again (after waiting up to ``quiet_timeout`` s for a quiet
    machine), up to ``retries`` times; a run still disturbed is kept with ``noisy: true``."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(repeats):
        for kind in kinds:
            for attempt in range(retries + 1):
                res = measure_subprocess(kind, config, command)
                share = res.get("others_cpu_share")
                res["noisy"] = max_others is not None and share is not None and share > max_others
                log(
                    f"  {kind:<24} run {r + 1}/{repeats}: {res.get('images_per_s', 0):8.1f} "
                    f"images/s (others took {format_value(share, '.0%')} of the CPUs)"
                )
                if not res["noisy"] or attempt == retries:
                    break
                log(f"  {kind:<24} too noisy, measuring again once the machine is quiet")
                wait_until_quiet(max_others or 0.0, quiet_timeout)
            runs[kind].append(res)
    return {k: _median_result(v) for k, v in runs.items()}
