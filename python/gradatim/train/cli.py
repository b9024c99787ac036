"""``gradatim train CONFIG``: a LoRA run from a TOML configuration (``gradatim.train.config``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradatim import cli_paths

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="LoRA training of a vision-language model on gradatim's loader",
        description="Train as a TOML configuration says (see docs/training.md).",
    )
    p.add_argument("config", type=Path, help="the run's TOML configuration")
    p.add_argument(
        "--resume", help="a checkpoint folder, or 'auto' for the newest in the run's out"
    )
    p.add_argument("--max-steps", type=int, help="stop after this step (the schedule is unchanged)")
    p.set_defaults(func=_run)
    cli_paths.declare(p, inputs=["config"])


def _run(args: argparse.Namespace) -> int:
    from gradatim.train.config import ConfigError, load_config
    from gradatim.train.loop import train

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise cli_paths.CliError(str(e)) from None
    run = train(cfg, resume=args.resume, max_steps=args.max_steps)
    last = f"{run.losses[-1]:.4f}" if run.losses else "-"
    print(f"trained to step {run.step} (last loss {last}); checkpoints and logs in {run.out}")
    return 0
