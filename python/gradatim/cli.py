"""The ``gradatim`` command line (``python -m gradatim`` is the same program).

Each subcommand lives beside the code it drives and is listed in :data:`COMMANDS` (its name, its
module, a one-line help and the pip extra it needs beyond the base install). Its module has an
``add_parser(subparsers)`` function that registers the command and sets ``func`` on its parser;
``func(args)`` returns the exit code. Only the module of the command being run is imported
(``gradatim --help`` imports none), so the base install (numpy alone) runs the commands that need
no more: ``manifest``, ``phantom``, ``cache build``. A command whose extra is missing prints one
line naming what to install, ``gradatim CMD: needs torch: pip install 'gradatim[train]'``, with
exit status 2 (:func:`needs_extra`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gradatim import __version__, cli_paths

__all__ = ["COMMANDS", "Command", "build_parser", "main", "needs_extra"]


@dataclass(frozen=True)
class Command:
    """One subcommand: ``module`` has its ``add_parser(subparsers)``; ``help`` is its line in
    ``gradatim --help`` (the one its ``add_parser`` gives); ``extra`` the extra of
    pyproject.toml that installs what it imports beyond numpy (``None``: none fits, the missing
    package is named); ``requires`` the modules it cannot start without, checked before it is
    imported."""

    name: str
    module: str
    help: str
    extra: str | None = None
    requires: tuple[str, ...] = ()


COMMANDS: tuple[Command, ...] = (
    Command(
        "bench",
        "gradatim.bench.cli",
        "throughput of gradatim vs a torch DataLoader baseline on your own manifest",
        requires=("torch",),
    ),
    Command(
        "demo",
        "gradatim.demo",
        "the loader on phantom data, the image pipeline on a radiograph",
        extra="train",
    ),
    Command("plot", "gradatim.plot", "plot curricula before training", extra="difficulty"),
    Command(
        "cache", "gradatim.data.cache", "pre-decode a manifest's images into a memory-mapped cache"
    ),
    Command(
        "manifest",
        "gradatim.manifest.cli",
        "convert datasets to gradatim manifests; validate them",
    ),
    Command(
        "phantom",
        "gradatim.datasets.phantom",
        "write synthetic phantom chest X-ray studies + a manifest",
    ),
    Command(
        "difficulty",
        "gradatim.difficulty.cli",
        "per-sample and per-class learning difficulty (RRGCL: VNS-Gap, ITAS)",
        extra="difficulty",
        requires=("torch",),
    ),
    Command(
        "evaluate",
        "gradatim.evaluate.report",
        "grounding IoU, BLEU-4, ROUGE-L and hallucination of generated text",
        extra="evaluate",
    ),
    Command(
        "predict",
        "gradatim.train.predict",
        "generate with a trained checkpoint on a manifest split (evaluate's input)",
        extra="train",
        requires=("torch", "transformers", "peft"),
    ),
    Command(
        "pretrain",
        "gradatim.train.pretrain",
        "pre-train a tiny base model on a manifest's training split (a local checkpoint)",
        extra="train",
        requires=("torch", "transformers"),
    ),
    Command(
        "experiment",
        "gradatim.train.experiment",
        "the curricula's effect: arms x seeds, table and plots",
        extra="train",
        requires=("torch", "transformers", "peft"),
    ),
    Command(
        "train",
        "gradatim.train.cli",
        "LoRA training of a vision-language model on gradatim's loader",
        extra="train",
        requires=("torch", "transformers", "peft"),
    ),
)
"""Every subcommand, in ``gradatim --help`` order."""

#: The modules each extra of pyproject.toml's ``[project.optional-dependencies]`` installs (import
#: names; keep in step with pyproject.toml).
EXTRAS: dict[str, frozenset[str]] = {
    "difficulty": frozenset(
        ("torch", "faiss", "safetensors", "transformers", "tokenizers", "tqdm", "pyarrow")
        + ("matplotlib",)
    ),
    "train": frozenset(
        ("torch", "transformers", "tokenizers", "peft", "safetensors", "tensorboard", "tqdm")
        + ("sacrebleu", "rouge_score", "pyarrow", "scipy")
    ),
    "evaluate": frozenset(("sacrebleu", "rouge_score")),
}

#: Optional third-party modules gradatim imports, with the package that installs each: a command
#: that stops on one of these missing says what to install instead of showing a traceback.
OPTIONAL_MODULES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "peft": "peft",
    "safetensors": "safetensors",
    "tensorboard": "tensorboard",
    "tqdm": "tqdm",
    "faiss": "faiss-cpu",
    "pyarrow": "pyarrow",
    "matplotlib": "matplotlib",
    "sacrebleu": "sacrebleu",
    "rouge_score": "rouge-score",
    "scipy": "scipy",
    "accelerate": "accelerate",
    "cv2": "opencv-python-headless",
    "pydicom": "pydicom",
}

_BY_NAME = {c.name: c for c in COMMANDS}


def _words(names: Sequence[str]) -> str:
    """``torch``, ``torch and peft``, ``torch, transformers and peft``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def needs_extra(command: str, missing: Sequence[str]) -> int:
    """Print ``gradatim COMMAND: needs MODULES: pip install ...`` (the command's extra when it
    installs them, else the packages) on stderr; return the exit status, 2."""
    cmd = _BY_NAME.get(command.split()[0]) if command else None
    extra = cmd.extra if cmd is not None else None
    if extra is not None and set(missing) <= EXTRAS[extra]:
        install = f"'gradatim[{extra}]'"
    else:
        install = " ".join(OPTIONAL_MODULES.get(m, m) for m in missing)
    print(f"gradatim {command}: needs {_words(missing)}: pip install {install}", file=sys.stderr)
    return cli_paths.EXIT_ERROR


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec (a stand-in): there all the same
        return True


def _optional_missing(error: ModuleNotFoundError) -> str | None:
    """The optional module whose absence raised ``error``; ``None`` for any other module, or
    when that module is installed (then something else is wrong: the traceback says what)."""
    top = (error.name or "").partition(".")[0]
    return top if top in OPTIONAL_MODULES and not _installed(top) else None


def _command_named(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is not an option (``gradatim`` itself
    has only ``--help`` and ``--version``, which take no value)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser with every subcommand of :data:`COMMANDS` listed. The subcommands in
    ``commands`` (default: all, which imports every one and so needs every extra) are registered
    in full by their module's ``add_parser``; the others get only their name and help line, and
    their modules are not imported."""
    full = {c.name for c in COMMANDS} if commands is None else set(commands)
    parser = argparse.ArgumentParser(
        prog="gradatim",
        description="Rust-accelerated data loading and curricula for medical VLM training.",
    )
    parser.add_argument("--version", action="version", version=f"gradatim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        if cmd.name in full:
            importlib.import_module(cmd.module).add_parser(sub)
        else:
            sub.add_parser(cmd.name, help=cmd.help)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code. Declared input and output paths are
    checked before the subcommand starts; path, I/O and gradatim errors print as one line
    (``gradatim CMD: error: ...``) with exit status 2 (``cli_paths``), and so does a missing
    optional dependency (:func:`needs_extra`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = _BY_NAME.get(_command_named(argv) or "")
    if cmd is not None:
        missing = [m for m in cmd.requires if not _installed(m)]
        if missing:
            return needs_extra(cmd.name, missing)
    try:
        parser = build_parser([cmd.name] if cmd is not None else [])
    except ModuleNotFoundError as error:
        module = _optional_missing(error)
        if cmd is None or module is None:
            raise
        return needs_extra(cmd.name, [module])
    args = parser.parse_args(argv)
    try:
        cli_paths.check(args)
        return int(args.func(args) or 0)
    except cli_paths.REPORTED as error:
        return cli_paths.report(cli_paths.command_name(args), error)
    except ModuleNotFoundError as error:
        module = _optional_missing(error)
        if module is None:
            raise
        return needs_extra(cli_paths.command_name(args), [module])


if __name__ == "__main__":
    raise SystemExit(main())
