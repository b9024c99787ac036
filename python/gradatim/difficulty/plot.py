"""``gradatim plot difficulty``: per-class difficulty histograms and the class ordering (PNG).

Left: the classes in RRGCL's order, easiest first, as bars of ``difC(n)`` (min-max scaled mean
``dif``; the raw mean and the class size are written beside each bar). Right: one histogram of the
per-sample ``dif`` (Eq. 10) per class, in the same order and on a shared axis, so the spread inside
each class, which decides which samples a class contributes early, is visible next to its rank.

Reads the file ``gradatim difficulty`` wrote (Parquet or safetensors). Uses matplotlib's Agg
canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from gradatim import cli_paths
from gradatim.difficulty.class_difficulty import class_difficulty
from gradatim.difficulty.io import read_difficulty_table

__all__ = ["plot_difficulty", "add_plot_parser"]


def plot_difficulty(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    bins: int = 40,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Draw the class ordering and per-class ``dif`` histograms of a difficulty file; write a PNG.

    Returns the path written."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = read_difficulty_table(path)
    dif, classes = table["dif"], table["classes"]
    cd = class_difficulty(dif, classes)
    order = cd.ordering()
    members: dict[str, list[int]] = {c: [] for c in order}
    for i, cs in enumerate(classes):
        for c in dict.fromkeys(cs or ["unlabeled"]):
            members[c].append(i)
    edges = np.histogram_bin_edges(dif, bins=bins)
    cmap = colormaps["viridis"]
    rows = len(order)
    fig = Figure(figsize=(11, max(3.0, 0.55 * rows + 1.4)))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, 2, width_ratios=[1, 1.4], hspace=0.15, wspace=0.45)
    bar_ax = fig.add_subplot(grid[:, 0])
    ys = np.arange(rows)[::-1]
    values = [cd[c] for c in order]
    bar_ax.barh(ys, values, color=[cmap(v) for v in values])
    bar_ax.set_yticks(ys, order)
    bar_ax.set_xlim(0, 1.45)
    bar_ax.set_xlabel("class difficulty difC (min-max scaled mean dif)")
    bar_ax.set_title("class ordering (easiest first, top)")
    for y, c in zip(ys, order, strict=True):
        bar_ax.text(
            cd[c] + 0.02, y, f"mean {cd.raw[c]:+.2f}, n={cd.sizes[c]}", va="center", fontsize=8
        )
    hist_axes: list[Any] = []
    for r, c in enumerate(order):
        ax = fig.add_subplot(grid[r, 1], sharex=hist_axes[0] if hist_axes else None)
        ax.hist(dif[members[c]], bins=edges, color=cmap(cd[c]), edgecolor="none")
        ax.set_yticks([])
        ax.set_ylabel(c, rotation=0, ha="right", va="center", fontsize=8)
        if r < rows - 1:
            ax.tick_params(labelbottom=False)
        hist_axes.append(ax)
    hist_axes[0].set_title("per-sample difficulty dif (Eq. 10) per class")
    hist_axes[-1].set_xlabel("dif")
    fig.suptitle(title or f"{Path(path).name}: N = {len(dif)}, {rows} classes")
    out_path = Path(out)
    fig.savefig(out_path, dpi=dpi, bbox_inches="tight")
    return out_path


def _run(args: argparse.Namespace) -> int:
    out = plot_difficulty(args.difficulty_file, args.output, bins=args.bins, title=args.title)
    print(f"wrote {out}")
    return 0


def add_plot_parser(plot_sub: Any) -> None:
    """Register ``difficulty`` under the ``gradatim plot`` subcommand group."""
    p = plot_sub.add_parser(
        "difficulty",
        help="per-class difficulty histograms and the class ordering",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("difficulty_file", help="output of gradatim difficulty (.parquet/.safetensors)")
    p.add_argument("--output", "-o", required=True, help="PNG file to write")
    p.add_argument("--bins", type=int, default=40)
    p.add_argument("--title", default=None)
    p.set_defaults(func=_run)
    cli_paths.declare(p, inputs=["difficulty_file"], outputs=["output"])
