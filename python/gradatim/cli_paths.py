"""The command line's one rule for paths and errors: every subcommand declares which of its
arguments are inputs and which are outputs (:func:`declare`), and ``gradatim`` checks them all
before the subcommand starts any long computation: an input must exist, an output's folder must
be a writable folder (or be creatable). Any error then prints as one line,
``gradatim CMD: error: <path>: <problem>``, with exit status 2 (:func:`report`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradatim.errors import GradatimError

__all__ = ["CliError", "declare", "check", "report", "EXIT_ERROR"]

EXIT_ERROR = 2


class CliError(Exception):
    """A problem with the command line's inputs or outputs; its message is one line."""


def declare(
    parser: argparse.ArgumentParser,
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    output_dirs: Iterable[str] = (),
) -> None:
    """Record which argument destinations are input paths (files or folders that must exist),
    output files and output folders."""
    parser.set_defaults(
        _paths={"inputs": tuple(inputs), "outputs": tuple(outputs), "dirs": tuple(output_dirs)}
    )


def _values(args: argparse.Namespace, dest: str) -> list[str]:
    value = getattr(args, dest, None)
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    return [os.fspath(v) for v in items if v is not None]


def _writable_folder(folder: Path, what: str) -> None:
    """``folder`` exists and is writable, or its nearest existing ancestor is a writable folder."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise CliError(f"{what} {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CliError(f"{what} {folder}: {probe} is not writable")
    if probe != folder:  # a folder we would create: do it now, so a refusal shows up here
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"{what} {folder}: cannot create it ({e.strerror})") from None


def check(args: argparse.Namespace) -> None:
    """Check the declared paths of ``args``; raise :class:`CliError` naming the first bad one."""
    paths: dict[str, tuple[str, ...]] | None = getattr(args, "_paths", None)
    if not paths:
        return
    for dest in paths["inputs"]:
        for value in _values(args, dest):
            if "://" in value:  # an object store URL: checked by the read itself
                continue
            if not Path(value).exists():
                raise CliError(f"{value}: no such file or folder")
    for dest in paths["outputs"]:
        for value in _values(args, dest):
            if "://" in value:  # an object store URL: checked by the write itself
                continue
            p = Path(value)
            if p.is_dir():
                raise CliError(f"output {p}: is a folder, expected a file path")
            _writable_folder(p.parent if str(p.parent) else Path("."), "output")
    for dest in paths["dirs"]:
        for value in _values(args, dest):
            if "://" in value:  # an object store URL (a prefix): checked by the write itself
                continue
            p = Path(value)
            if p.exists() and not p.is_dir():
                raise CliError(f"output folder {p}: is a file")
            _writable_folder(p, "output folder")


def report(command: str, error: BaseException) -> int:
    """Print ``error`` as the one-line message of ``gradatim COMMAND``; return the exit status."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
        message = f"{error.filename}: {error.strerror or message}"
    prefix = f"gradatim {command}: "
    while message.startswith(prefix):  # never "gradatim x: gradatim x: ..."
        message = message[len(prefix) :]
    print(f"{prefix}error: {message}", file=sys.stderr)
    return EXIT_ERROR


#: What the command line reports as one line instead of a traceback: path problems, I/O errors,
#: gradatim's own errors (bad files, manifests, arguments) and configuration errors.
REPORTED: tuple[type[BaseException], ...] = (CliError, OSError, GradatimError)


def command_name(args: Any) -> str:
    """``manifest from-vindr``, ``plot schedule``, ``train`` ..."""
    parts = [args.command]
    for dest in ("manifest_command", "plot_command", "cache_command"):
        if getattr(args, dest, None):
            parts.append(getattr(args, dest))
    return " ".join(str(p) for p in parts)
