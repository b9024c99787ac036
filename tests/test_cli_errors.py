"""Every subcommand, tried as a new user would: a missing input and an unwritable output each give
one line ``gradatim CMD: error: ...`` naming the path, exit status 2, and no traceback, before
any long computation starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gradatim.cli import build_parser, main
from gradatim.manifest.cli import CONVERTERS

MISSING = "/nonexistent/gradatim-input"


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [" ".join(prefix)]
    return [leaf for name, p in subs[0].choices.items() for leaf in _leaves(p, (*prefix, name))]


def _cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per leaf command: argv with a missing input, argv with an unwritable output (a path under
    a regular file: unwritable even for root)."""
    blocked = tmp / "a-file"
    blocked.write_text("x")
    bad_out = str(blocked / "out")
    real = tmp / "real.jsonl"
    real.write_text("")
    cases = {
        "bench": ([MISSING], [str(real), "--json", bad_out + "/b.json"]),
        "demo": (["--image", MISSING], ["--out", bad_out + "/r.png", "--phantom", "0"]),
        "plot schedule": (
            ["--difficulty-file", MISSING, "-o", str(tmp / "s.png")],
            ["--class-difficulty", "0.1", "0.2", "-o", bad_out + "/s.png"],
        ),
        "plot difficulty": ([MISSING, "-o", str(tmp / "d.png")], [str(real), "-o", bad_out]),
        "manifest validate": ([MISSING], None),
        "manifest pack": (
            [MISSING, "-o", str(tmp / "m.arrow")],
            [str(real), "-o", bad_out + "/m.arrow"],
        ),
        "phantom": (None, [bad_out, "--n", "1"]),
        "difficulty": (
            ["--manifest", MISSING, "--out", str(tmp / "d.parquet")],
            ["--manifest", str(real), "--out", bad_out + "/d.parquet"],
        ),
        "evaluate": ([MISSING, "--out", str(tmp / "m.json")], [str(real), "--out", bad_out]),
        "train": ([MISSING], None),
        "predict": (
            [MISSING, "--manifest", str(real), "--split", "validate", "-o", str(tmp / "p.jsonl")],
            [str(tmp), "--manifest", str(real), "--split", "validate", "-o", bad_out + "/p.jsonl"],
        ),
        "pretrain": ([MISSING, "-o", str(tmp / "base")], [str(real), "-o", bad_out + "/base"]),
        "experiment": ([MISSING], None),
        "cache build": (
            [MISSING, "-o", str(tmp / "c"), "--size", "64"],
            [str(real), "-o", bad_out, "--size", "64"],
        ),
    }
    for conv in CONVERTERS:
        n = sum(o.positional for o in conv.opts)
        cases[f"manifest {conv.command}"] = (
            [MISSING, *[str(real)] * (n - 1), "-o", str(tmp / "m.jsonl")],
            [*[str(real)] * n, "-o", bad_out],
        )
    return cases


def test_every_subcommand_is_covered(tmp_path: Path) -> None:
    assert set(_leaves(build_parser())) == set(_cases(tmp_path))


@pytest.mark.parametrize("kind", ["missing input", "unwritable output"])
def test_path_errors_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    for leaf, (missing, unwritable) in _cases(tmp_path).items():
        args = missing if kind == "missing input" else unwritable
        if args is None:
            continue
        rc = main([*leaf.split(), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, (leaf, err)
        assert len(err) == 1 and err[0].startswith(f"gradatim {leaf}: error: "), (leaf, err)
        path = MISSING if kind == "missing input" else str(tmp_path / "a-file")
        assert path in err[0], (leaf, err)
        assert "Traceback" not in err[0]
