"""Where the numbers were measured and how busy the machine was: CPU, memory, library
versions, and the CPU time other processes took (Linux ``/proc``; ``None`` elsewhere)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import time
from typing import Any

import numpy as np

__all__ = [
    "cpu_busy",
    "cpu_seconds",
    "library_version",
    "machine_info",
    "others_share",
    "wait_until_quiet",
]


def cpu_seconds() -> tuple[float, float, float] | None:
    """(all CPUs' capacity, busy time, this process's + reaped children's CPU) in seconds."""
    try:
        import resource

        with open("/proc/stat", encoding="utf-8") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (ImportError, OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        own += ru.ru_utime + ru.ru_stime
    return sum(vals) / hz, (sum(vals) - idle) / hz, own


def others_share(before: tuple[float, float, float] | None) -> float | None:
    """Share of the machine's CPU capacity used by *other* processes since ``before``."""
    after = cpu_seconds()
    if before is None or after is None or after[0] <= before[0]:
        return None
    capacity, busy, own = (a - b for a, b in zip(after, before, strict=True))
    return max(0.0, busy - own) / capacity


def library_version(module: str) -> str | None:
    """``module.__version__`` (``?`` when it has none), or None when it is not installed."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = __import__(module)
    except Exception:  # pragma: no cover - a broken installation
        return None
    return str(getattr(mod, "__version__", "?"))


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, memory, load, library versions."""
    from gradatim import __version__

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="utf-8") as f:
        mem_gb = round(int(f.readline().split()[1]) / 1024**2, 1)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        usable = os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gb": mem_gb,
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "versions": {
            "gradatim": __version__,
            "torch": library_version("torch"),
            "numpy": np.__version__,
            "opencv": library_version("cv2"),
        },
    }


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next ``seconds`` (None off Linux)."""
    before = cpu_seconds()
    time.sleep(seconds)
    after = cpu_seconds()
    if before is None or after is None or after[0] <= before[0]:
        return None
    return (after[1] - before[1]) / (after[0] - before[0])


def wait_until_quiet(max_busy: float, timeout: float) -> float | None:
    """Wait (up to ``timeout`` s) until the CPUs are less than ``max_busy`` busy over a second;
    returns the last busy fraction seen."""
    end = time.monotonic() + timeout
    busy = cpu_busy()
    while busy is not None and busy >= max_busy and time.monotonic() < end:
        busy = cpu_busy()
    return busy
