"""``gradatim plot schedule``: draw the curriculum before training.

Writes a PNG of RRGCL's per-class pacing curves ``lambda_n(t)`` (Eq. 11) over ``t = 0..T``, like
Figure 3 of the RRGCL paper, optionally with the baseline pacing functions (linear, root,
geometric, baby step, one pass) for comparison. Class difficulties come from the command line
(``--class-difficulty``) or from a difficulty file (Parquet / JSONL with a class-list column and a
per-sample difficulty column, as written by ``gradatim difficulty``).

Uses matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gradatim import cli_paths
from gradatim.curriculum.pacing import PACING_NAMES, pacing
from gradatim.curriculum.rrgcl import RRGCLScheduler, rrgcl_rates
from gradatim.errors import InvalidArgumentError

__all__ = ["plot_schedule", "add_parser"]


def plot_schedule(
    out: str | os.PathLike[str],
    *,
    class_difficulty: ArrayLike | None = None,
    class_names: Sequence[Hashable] | None = None,
    scheduler: RRGCLScheduler | None = None,
    epochs: int = 100,
    c: float | None = None,
    baselines: Sequence[str] = (),
    c0: float = 0.01,
    p: float = 2.0,
    buckets: int = 5,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Plot ``lambda_n(t)`` per class for ``t`` in ``[0, T]`` and write a PNG.

    Give either ``class_difficulty`` (raw per-class means; scaled as in RRGCL) with
    ``epochs`` / ``c``, or a built :class:`RRGCLScheduler` (its ``T`` and ``c`` are used).
    ``baselines`` adds dashed curves of :func:`gradatim.curriculum.pacing` for those names.
    Returns the path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if (scheduler is None) == (class_difficulty is None):
        raise InvalidArgumentError("plot_schedule: give exactly one of class_difficulty, scheduler")
    if scheduler is not None:
        raw = np.asarray(scheduler.raw_class_difficulty)
        names = list(scheduler.class_names)
        T = float(scheduler.epochs)
        c_used = scheduler.c
    else:
        raw = np.asarray(class_difficulty, dtype=np.float64)
        if raw.ndim != 1 or raw.size == 0:
            raise InvalidArgumentError("class_difficulty: expected a non-empty 1-D sequence")
        names = (
            list(class_names)
            if class_names is not None
            else [f"class {i}" for i in range(raw.size)]
        )
        if len(names) != raw.size:
            raise InvalidArgumentError(
                f"class_names: {len(names)} names for {raw.size} class difficulties"
            )
        T = float(epochs)
        c_used = float(raw.size) if c is None else float(c)
    for b in baselines:
        if b not in PACING_NAMES:
            raise InvalidArgumentError(f"baselines: unknown pacing {b!r}; expected {PACING_NAMES}")

    ts = np.linspace(0.0, T, max(int(T) * 4, 200) + 1)
    curves = np.stack([rrgcl_rates(raw, float(t), T, c_used) for t in ts])
    lam0 = curves[0]
    scaled = (
        (raw - raw.min()) / (raw.max() - raw.min()) if np.ptp(raw) > 0 else np.full(raw.size, 0.5)
    )
    gamma = 1.0 + (1.0 - scaled) * c_used

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    order = np.argsort(-gamma, kind="stable")  # easiest (most aggressive) class first in the legend
    for k in order:
        ax.plot(
            ts,
            curves[:, k],
            lw=1.6,
            label=f"{names[k]} ($\\gamma$={gamma[k]:.2f}, $\\lambda_0$={lam0[k]:.3f})",
        )
    styles = ["--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
    for i, b in enumerate(baselines):
        ys = [pacing(b, float(t), T, c0, p, buckets=buckets) for t in ts]
        ax.plot(ts, ys, ls=styles[i % len(styles)], lw=1.2, color="0.3", label=f"baseline: {b}")
    ax.set_xlim(0, T)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch t")
    ax.set_ylabel(r"scheduling rate $\lambda_n(t)$")
    ax.set_title(title or f"RRGCL class-level schedule (T = {T:g}, c = {c_used:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2 if len(names) + len(baselines) > 8 else 1)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def _run_schedule(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {
        "epochs": args.epochs,
        "c": args.c,
        "baselines": args.baseline or (),
        "c0": args.c0,
        "p": args.p,
        "buckets": args.buckets,
        "title": args.title,
    }
    if args.difficulty_file is not None:
        sched = RRGCLScheduler.from_file(
            args.difficulty_file,
            args.epochs,
            classes_column=args.classes_column,
            difficulty_column=args.difficulty_column,
            c=args.c,
        )
        kwargs.pop("epochs")
        kwargs.pop("c")
        path = plot_schedule(args.output, scheduler=sched, **kwargs)
    elif args.class_difficulty is not None:
        path = plot_schedule(
            args.output, class_difficulty=args.class_difficulty, class_names=args.names, **kwargs
        )
    else:
        raise cli_paths.CliError("give --class-difficulty or --difficulty-file")
    print(f"wrote {path}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``gradatim plot`` (with its ``schedule`` subcommand) on the CLI."""
    plot = subparsers.add_parser("plot", help="plot curricula before training")
    sub = plot.add_subparsers(dest="plot_command", required=True, metavar="WHAT")
    s = sub.add_parser(
        "schedule",
        help="RRGCL per-class pacing curves lambda_n(t) (like Fig. 3 of the RRGCL paper)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--class-difficulty",
        type=float,
        nargs="+",
        metavar="D",
        help="per-class mean difficulty (min-max scaled as in RRGCL)",
    )
    src.add_argument(
        "--difficulty-file",
        metavar="FILE",
        help="Parquet / JSONL with per-sample classes and difficulty",
    )
    s.add_argument("--names", nargs="+", metavar="NAME", help="class names for --class-difficulty")
    s.add_argument("--classes-column", default="classes")
    s.add_argument("--difficulty-column", default="dif")
    s.add_argument("--epochs", "-T", type=int, default=100, help="T (default 100, as in Fig. 3)")
    s.add_argument("--c", type=float, default=None, help="Eq. 12's c (default: number of classes)")
    s.add_argument(
        "--baseline",
        action="append",
        choices=PACING_NAMES,
        help="also draw a baseline pacing function (repeatable)",
    )
    s.add_argument("--c0", type=float, default=0.01)
    s.add_argument("--p", type=float, default=2.0)
    s.add_argument("--buckets", type=int, default=5)
    s.add_argument("--title", default=None)
    s.add_argument("--output", "-o", required=True, help="PNG file to write")
    s.set_defaults(func=_run_schedule)
    cli_paths.declare(s, inputs=["difficulty_file"], outputs=["output"])
    from gradatim.difficulty.plot import add_plot_parser

    add_plot_parser(sub)  # gradatim plot difficulty
