"""Reporting results: the plain-text table and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradatim.bench.config import GRADATIM, LABELS

__all__ = ["format_table", "format_value", "write_json"]


def format_value(v: Any, spec: str) -> str:
    """``v`` formatted with ``spec``, or ``-`` when it is None (a figure not measured)."""
    return "-" if v is None else format(v, spec)


def format_table(
    results: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, str] | None = None,
    reference: str = GRADATIM,
    ratios: Mapping[str, float] | None = None,
) -> str:
    """A plain-text table: images/s, ms/batch, stall, first batch, peak memory (RSS of the main
    process, RSS summed over main + worker processes, PSS of the tree), the CPU share other
    processes took meanwhile (noise), and ``reference``'s images/s divided by each row's (or the
    given ``ratios``)."""
    labels = {**LABELS, **(labels or {})}
    ref = results.get(reference, {}).get("images_per_s")
    head = (
        f"{'loader':<56} {'images/s':>8} {'ms/batch':>8} {'stall s':>7} {'1st s':>6} "
        f"{'RSS MB main/all':>15} {'PSS MB':>6} {'others':>6} {'gradatim x':>10}"
    )
    lines = [head, "-" * len(head)]
    f = format_value
    for kind, r in results.items():
        ips = r.get("images_per_s")
        rss = f"{f(r.get('rss_peak_mb'), '.0f')}/{f(r.get('rss_total_mb'), '.0f')}"
        ratio = ref / ips if ref and ips else None
        if ratios is not None and kind in ratios:
            ratio = ratios[kind]
        lines.append(
            f"{labels.get(kind, kind)[:56]:<56} {f(ips, '8.1f')} "
            f"{f(r.get('ms_per_batch'), '8.1f')} {f(r.get('stall_s'), '7.2f')} "
            f"{f(r.get('first_batch_s'), '6.2f')} {rss:>15} "
            f"{f(r.get('pss_peak_mb'), '6.0f')} {f(r.get('others_cpu_share'), '6.0%')} "
            f"{f(ratio, '10.2f')}"
        )
    return "\n".join(lines)


def write_json(path: str, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` (its folder created), or to stdout for
    ``-``."""
    if path == "-":
        print(json.dumps(payload, indent=2))
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {out}")
