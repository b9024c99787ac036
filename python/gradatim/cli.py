"""The ``gradatim`` command line (``python -m gradatim`` is the same program).

Each subcommand lives beside the code it drives and registers itself here with an
``add_parser(subparsers)`` function that sets ``func`` on its parser; ``func(args)`` returns the
exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gradatim import __version__, cli_paths


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="gradatim",
        description="Rust-accelerated data loading and curricula for medical VLM training.",
    )
    parser.add_argument("--version", action="version", version=f"gradatim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from gradatim import bench, demo, plot

    bench.add_parser(sub)
    demo.add_parser(sub)
    plot.add_parser(sub)
    from gradatim.data import cache
    from gradatim.datasets import phantom
    from gradatim.difficulty import cli as difficulty_cli
    from gradatim.evaluate import report as evaluate_cli
    from gradatim.manifest import cli as manifest_cli

    cache.add_parser(sub)
    manifest_cli.add_parser(sub)
    phantom.add_parser(sub)
    difficulty_cli.add_parser(sub)
    evaluate_cli.add_parser(sub)
    from gradatim.train import cli as train_cli

    train_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code. Declared input and output paths are
    checked before the subcommand starts; path, I/O and gradatim errors print as one line
    (``gradatim CMD: error: ...``) with exit status 2 (``cli_paths``)."""
    args = build_parser().parse_args(argv)
    try:
        cli_paths.check(args)
        return int(args.func(args) or 0)
    except cli_paths.REPORTED as error:
        return cli_paths.report(cli_paths.command_name(args), error)


if __name__ == "__main__":
    raise SystemExit(main())
